// Sessions end like ssh's when things are killed for real (issue 13): the host hangs up a
// channel's process when the client goes, notices a vanished client daemon, survives long
// commands, replaces a connection found dead before anything started, and the clients end on
// TERM/HUP. Each remote command carries a unique marker so pgrep can prove it is gone.

import { execFileSync, spawn as spawnProcess } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as nodePty from '@lydell/node-pty';
import ssh2, { type ClientChannel } from 'ssh2';
import { longExecSupport, spareChannelSupport, openChannel } from '../daemon/ssh/channels.js';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { identityFromSeed } from '../daemon/identity.js';
import { HOST_SOFTWARE, shellCommand } from '../daemon/host/session.js';
import { LONG_EXEC_SUBSYSTEM } from '../daemon/ssh/subsystems.js';
import { connectSsh } from '../daemon/ssh/client.js';
import { bindLoopback } from './helpers/iroh.js';
import { BurrowError, ErrorCodes } from '../shared/errors.js';
import { IpcConnection } from '../shared/ipc/client.js';
import type { Frame } from '../shared/ipc/frames.js';
import { exec } from '../shared/lib.js';
import { BURROW, BURROW_JS, runCli, startDaemon, stopAllDaemons, type RunningDaemon, freeUdpPort, hostAndAgent } from './helpers/daemon.js';

afterAll(stopAllDaemons);

/** `burrow ssh` clients in a PTY: killed after each test, even one that failed. */
const terms = new Set<nodePty.IPty>();
afterEach(() => {
  for (const t of terms) {
    try {
      t.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  terms.clear();
});

/**
 * A remote command unique to this run: other workers on this machine run the same tests, and
 * pgrep must find only ours.
 */
const uniqueSleep = (seconds: number): string => `sleep ${seconds}.${randomInt(1e8, 1e9)}`;

/** Pids whose whole command line is exactly `cmd` (the remote process, not a local client naming it). */
function pids(cmd: string): number[] {
  try {
    const out = execFileSync('pgrep', ['-f', `^${cmd.replace(/\./g, '\\.')}$`], { encoding: 'utf8' });
    return out.split('\n').filter((l) => l !== '').map(Number);
  } catch {
    return []; // pgrep exits 1 when nothing matches
  }
}

/** Poll until `pred` holds; resolves with the ms it took, rejects after `ms`. */
async function within(ms: number, what: string, pred: () => boolean): Promise<number> {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return Date.now() - t0;
}

const gone = (cmd: string) => () => pids(cmd).length === 0;
const running = (cmd: string) => () => pids(cmd).length > 0;

/** burrow ssh in a real PTY, with a shell prompt ready. */
async function ptyShell(agent: RunningDaemon, ticket: string): Promise<{ term: nodePty.IPty; screen: () => string; exited: Promise<unknown> }> {
  const term = nodePty.spawn(BURROW, ['ssh', ticket], { name: 'xterm', cols: 80, rows: 24, env: { ...process.env, ...agent.cliEnv } as Record<string, string> });
  terms.add(term);
  let screen = '';
  term.onData((d) => (screen += d));
  const exited = new Promise((r) => term.onExit(r));
  term.write('echo READY$((40+2))\r');
  await within(15_000, 'shell prompt', () => screen.includes('READY42'));
  return { term, screen: () => screen, exited };
}

/** A host and an agent, burrow ssh between them in a PTY, and a unique remote sleep running in that shell. */
async function sleepInPtyShell(): Promise<{ host: RunningDaemon; agent: RunningDaemon; term: nodePty.IPty; exited: Promise<unknown>; marker: string }> {
  const { host, agent } = await hostAndAgent();
  const { term, exited } = await ptyShell(agent, host.ticket);
  const marker = uniqueSleep(1000);
  term.write(`${marker}\r`);
  await within(10_000, 'remote sleep started', running(marker));
  return { host, agent, term, exited, marker };
}

describe('remote shells do not outlive their client', () => {
  it('~. in a PTY shell running sleep: the sleep is gone and session_end is logged', async () => {
    const { host, agent, term, exited, marker } = await sleepInPtyShell();
    const t0 = Date.now();
    term.write('\r~.');
    await exited;
    const ms = await within(5000, 'remote sleep gone after ~.', gone(marker));
    const end = await host.waitLog((l) => l.event === 'session_end' && l['kind'] === 'shell', 5000);
    expect(end['kind']).toBe('shell');
    console.log(`[faults] ~.: remote sleep gone ${Date.now() - t0} ms after ~. (polled ${ms} ms after the client exited)`);
    await host.stop();
    await agent.stop();
  }, 60_000);

  it('the terminal closing (PTY master gone, SIGHUP to burrow) ends the remote shell and its sleep', async () => {
    const { host, agent, term, exited, marker } = await sleepInPtyShell();
    const t0 = Date.now();
    // What a terminal emulator's window closing does: the master side goes away.
    (term as nodePty.IPty & { destroy(): void }).destroy();
    await exited;
    await within(5000, 'remote sleep gone after the terminal closed', gone(marker));
    await host.waitLog((l) => l.event === 'session_end' && l['kind'] === 'shell', 5000);
    console.log(`[faults] terminal closed: remote sleep gone in ${Date.now() - t0} ms`);
    await host.stop();
    await agent.stop();
  }, 60_000);

  it('client daemon SIGKILLed during exec -- sleep: the host notices and the sleep is gone within 20 s', async () => {
    const { host, agent } = await hostAndAgent(['--keepalive-interval', '2', '--keepalive-count', '1']);
    const marker = uniqueSleep(1000);
    const cli = runCli(agent.cliEnv, ['exec', host.ticket, '--', marker], { timeoutMs: 40_000 });
    await within(15_000, 'remote sleep started', running(marker));
    const t0 = Date.now();
    await agent.stop('SIGKILL');
    const ms = await within(20_000, 'remote sleep gone after the client daemon died', gone(marker));
    expect((await cli).code).toBe(255);
    const timeout = await host.waitLog((l) => l.event === 'keepalive_timeout' || l.event === 'connection_closed', 5000);
    console.log(`[faults] client daemon SIGKILL: remote sleep gone in ${ms} ms (host saw ${timeout.event} ${Date.now() - t0} ms after)`);
    await host.stop();
  }, 60_000);
});

describe('keepalive', () => {
  it('an idle pooled connection outlives several keepalive rounds on both roles', async () => {
    const k = ['--keepalive-interval', '2', '--keepalive-count', '2'];
    const { host, agent } = await hostAndAgent(k, k);
    expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo one'])).stdout).toBe('one\n');
    await new Promise((r) => setTimeout(r, 9000)); // both roles ping after 2 s of silence: several rounds
    expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo two'])).stdout).toBe('two\n');
    expect(agent.logs.filter((l) => l.event === 'connected')).toHaveLength(1);
    expect(host.logs.filter((l) => l.event === 'keepalive_timeout')).toHaveLength(0);
    await host.stop();
    await agent.stop();
  }, 60_000);
});

describe('long commands', () => {
  it('a 36,000-byte and a 200 KiB command run; 2 MiB and 300 KiB are refused as BadArgument; the connection serves the next command', async () => {
    const { host, agent } = await hostAndAgent();
    expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo warm'])).stdout).toBe('warm\n');
    // Linux takes at most 128 KiB in one argv string: the long command is several words, as typed.
    const words = (n: number, bytes: number): string[] => Array.from({ length: n }, (_, i) => `${String.fromCharCode(97 + i)}`.repeat(bytes));
    const t36 = Date.now();
    const r36 = await runCli(agent.cliEnv, ['exec', host.ticket, '--', ':', ...words(1, 36_000), '; echo long-36k'], { timeoutMs: 30_000 });
    expect(r36.stderr).toBe('');
    expect(r36.stdout).toBe('long-36k\n');
    const ms36 = Date.now() - t36;
    const t200 = Date.now();
    const r200 = await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'printf %s', ...words(2, 100 * 1024), '| wc -c'], { timeoutMs: 30_000 });
    expect(r200.stderr).toBe('');
    expect(r200.stdout.trim()).toBe(String(200 * 1024)); // the shell saw every byte
    console.log(`[faults] 36,000-byte command ${ms36} ms, 200 KiB command ${Date.now() - t200} ms`);
    // The native client hands an over-long command to the Node CLI, which refuses it.
    const r300 = await runCli(agent.cliEnv, ['exec', host.ticket, '--', ':', ...words(3, 100 * 1024)]);
    expect(r300.code).toBe(2);
    expect(r300.stderr).toMatch(/^burrow: BadArgument: the command is \d+ bytes/);
    const huge = await exec(host.ticket, `: ${'x'.repeat(2 * 1024 * 1024)}`, { socket: agent.socket }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(huge).toBeInstanceOf(BurrowError);
    expect((huge as BurrowError).code).toBe(ErrorCodes.BadArgument);
    // The daemon refuses it too, to a client that sends its own frames: nothing reaches the host.
    const raw = await IpcConnection.connect({ socket: agent.socket });
    const answer = await new Promise<Frame>((resolve) => {
      raw.once('frame', resolve);
      raw.send({ t: 'exec', target: host.ticket, command: `: ${'z'.repeat(300 * 1024)}` });
    });
    raw.close();
    expect(answer).toMatchObject({ t: 'error', code: ErrorCodes.BadArgument });
    expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo next'])).stdout).toBe('next\n');
    const st = JSON.parse((await runCli(agent.cliEnv, ['status', '--json'])).stdout) as { connections: unknown[] };
    expect(st.connections).toHaveLength(1); // still the one connection
    expect(agent.logs.filter((l) => l.event === 'connected')).toHaveLength(1);
    await host.stop();
    await agent.stop();
  }, 90_000);

  it('a long command with stdin and a PTY: the command comes first, stdin follows untouched', async () => {
    const { host, agent } = await hostAndAgent();
    // -t: a PTY though stdin is a pipe; the line goes through the terminal (echoed), read by head.
    const r = await runCli(agent.cliEnv, ['ssh', '-t', host.ticket, ':', 'y'.repeat(40_000), '; tty >/dev/null && echo on-a-tty; head -n 1 | tr a-z A-Z'], { input: 'hello from stdin\n', timeoutMs: 30_000 });
    expect(r.stdout).toContain('on-a-tty');
    expect(r.stdout).toContain('HELLO FROM STDIN');
    expect(r.code).toBe(0);
    await host.stop();
    await agent.stop();
  }, 60_000);
});

/** An ssh2 client of this process's own, authorized on `host` and connected over iroh: for what the agent would not send. */
async function ownClient(host: RunningDaemon, name: string): Promise<{ transport: Awaited<ReturnType<typeof bindLoopback>>; client: ssh2.Client }> {
  const seed = randomBytes(32);
  const id = identityFromSeed(seed, name);
  host.authorizeKey(id.publicKeyLine);
  const transport = await bindLoopback(seed);
  const conn = await transport.dial(host.ticket, 10_000);
  const client = await connectSsh({ stream: await conn.openStream(), username: 'me', auth: [{ kind: 'key', privateKey: id.privateKeyOpenSSH, label: 'key' }], hostKey: { kind: 'endpoint', endpointId: conn.remoteId } });
  return { transport, client };
}

describe('the long command as the host reads and runs it', () => {
  it('sent in 8,192 writes of 64 bytes: it runs, and another session answers meanwhile', async () => {
    const { host, agent } = await hostAndAgent();
    expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo warm'])).stdout).toBe('warm\n');
    const { transport, client } = await ownClient(host, 'slow-sender');
    try {
      const ch = await new Promise<ClientChannel>((resolve, reject) => client.subsys(LONG_EXEC_SUBSYSTEM, (err, c) => (err ? reject(err) : resolve(c))));
      let out = '';
      ch.on('data', (d: Buffer) => (out += d.toString()));
      const closed = new Promise<void>((r) => ch.once('close', () => r()));
      const command = Buffer.from(`: ${'q'.repeat(512 * 1024 - 20)}; echo long-done`);
      const whole = Buffer.concat([Buffer.alloc(4), command]);
      whole.writeUInt32BE(command.length, 0);
      let sending = true;
      const send = (async () => {
        for (let off = 0, n = 0; off < whole.length; off += 64, n++) {
          if (!ch.write(whole.subarray(off, off + 64))) await new Promise((r) => ch.once('drain', r));
          // A pause every 2 KiB: the packets reach the host one by one, over about 3 s.
          if (n % 32 === 31) await new Promise((r) => setTimeout(r, 10));
        }
        ch.end();
        sending = false;
      })();
      // A bystander on the agent's own connection, while the bytes trickle in.
      let worstMs = 0;
      let rounds = 0;
      while (sending && rounds < 20) {
        const r = await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo bystander']);
        expect(r.stdout).toBe('bystander\n');
        worstMs = Math.max(worstMs, r.ms);
        rounds++;
      }
      await send;
      await Promise.race([closed, new Promise((_, rej) => setTimeout(() => rej(new Error('long command did not finish within 30 s')), 30_000))]);
      expect(out).toBe('long-done\n');
      expect(worstMs).toBeLessThan(5000);
      console.log(`[faults] 512 KiB command in 64-byte writes: ${rounds} bystander execs meanwhile, slowest ${worstMs} ms`);
      client.end();
    } finally {
      await transport.close();
      await host.stop();
      await agent.stop();
    }
  }, 90_000);

  it('the pinned ssh2: the hook on its protocol turns a long exec into exec@burrow, and leaves an ordinary exec alone', async () => {
    // A real ssh2 server in this process records the requests as they arrive.
    const seen: string[] = [];
    let firstBytes: Promise<Buffer> | undefined;
    const server = new ssh2.Server({ hostKeys: [identityFromSeed(randomBytes(32)).privateKeyOpenSSH] }, (conn) => {
      conn.on('authentication', (ctx) => ctx.accept());
      conn.on('ready', () =>
        conn.on('session', (accept) => {
          const session = accept();
          session.on('subsystem', (acc, _rej, info) => {
            seen.push(`subsystem ${info.name}`);
            const ch = acc();
            firstBytes = new Promise((r) => ch.once('data', (d: Buffer) => r(d)));
          });
          session.on('exec', (acc, _rej, info) => {
            seen.push(`exec ${info.command}`);
            const ch = acc();
            ch.exit(0);
            ch.end();
          });
        }),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const client = new ssh2.Client();
    try {
      await new Promise<void>((resolve, reject) => {
        client.once('ready', () => resolve()).once('error', reject);
        client.connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, username: 'test' });
      });
      const command = 'w'.repeat(40_000);
      await openChannel(client, { command }, 'stdin');
      await within(5000, 'subsystem request', () => seen.length > 0);
      const head = await firstBytes!;
      expect(head.readUInt32BE(0)).toBe(command.length);
      const plain = await openChannel(client, { command: 'echo plain' });
      plain.channel.resume(); // read to its end, or the channel never closes
      await plain.closed;
      expect(seen).toEqual([`subsystem ${LONG_EXEC_SUBSYSTEM}`, 'exec echo plain']);
    } finally {
      client.end();
      await new Promise((r) => server.close(r));
    }
  });

  it('the host names its software burrow_0.3: an older burrow host (0.1, no exec@burrow) is told apart for a clear error, and only 0.3 on gets spare channels', () => {
    expect(HOST_SOFTWARE).toBe('burrow_0.3');
    expect(longExecSupport(HOST_SOFTWARE)).toBe('yes');
    expect(longExecSupport('burrow_0.2')).toBe('yes');
    expect(longExecSupport('burrow_0.1')).toBe('old-burrow');
    expect(longExecSupport('burrow_1.0')).toBe('yes');
    expect(longExecSupport('OpenSSH_9.6p1')).toBe('no');
    expect(spareChannelSupport(HOST_SOFTWARE)).toBe(true);
    expect(spareChannelSupport('burrow_1.0')).toBe(true);
    for (const old of ['burrow_0.2', 'burrow_0.1', 'OpenSSH_9.6p1', '']) expect(spareChannelSupport(old)).toBe(false);
  });

  it('over 64 KiB: a POSIX shell joins the pieces ($0 still the user shell, helper variable gone); another shell gets it whole', () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-test-'));
    try {
      const big = 'z'.repeat(100 * 1024);
      // Prints what a command sees: its own length, $0, the helper variable.
      const cmd = `x='${big}'; printf '%s|%s|%s|' "\${#x}" "$0" "\${__burrow_cmd-unset}"\n\n`;
      const run = (shell: string): string => {
        const r = shellCommand(shell, cmd);
        return execFileSync(r.file, r.args, { encoding: 'utf8', maxBuffer: 1 << 20 });
      };
      expect(run('/bin/bash')).toBe(`${big.length}|/bin/bash|unset|`);
      expect(shellCommand('/bin/bash', cmd).file).toBe('/bin/bash');
      // A shell that is not sh (a stand-in that says so, then runs sh): /bin/sh joins and hands it on.
      const fish = join(dir, 'fish');
      writeFileSync(fish, '#!/bin/sh\nprintf "fish:%s:" "$1"\nexec /bin/sh "$@"\n', { mode: 0o755 });
      expect(shellCommand(fish, cmd).file).toBe('/bin/sh');
      expect(run(fish)).toBe(`fish:-c:${big.length}|/bin/sh|unset|`); // $0 of the stand-in's own sh
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a hostile client on a started channel (an attack of its own)', () => {
  it('a second exec, shell, subsystem or sftp request on a channel already started is refused; the host keeps serving', async () => {
    const { host, agent } = await hostAndAgent();
    const { transport, client } = await ownClient(host, 'second-request');
    try {
      const ch = await new Promise<ClientChannel>((resolve, reject) => client.exec('sleep 5', (err, c) => (err ? reject(err) : resolve(c))));
      // What ssh2's client will not send: more requests on the same channel, straight on the wire.
      const raw = ch as unknown as { outgoing: { id: number }; _client: { _protocol: { exec(c: number, cmd: string, r: boolean): void; shell(c: number, r: boolean): void; subsystem(c: number, n: string, r: boolean): void } } };
      const proto = raw._client._protocol;
      proto.exec(raw.outgoing.id, 'echo second', false);
      proto.shell(raw.outgoing.id, false);
      proto.subsystem(raw.outgoing.id, 'sftp', false);
      proto.subsystem(raw.outgoing.id, 'burrow-info@burrow', false);
      proto.exec(raw.outgoing.id, 'echo third', true);
      // The host is still up and serving: this client's own next channel, and the agent's.
      const again = await openChannel(client, { command: 'echo alive' });
      let out = '';
      again.channel.on('data', (d: Buffer) => (out += d.toString()));
      await again.closed;
      expect(out).toBe('alive\n');
      expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo', 'others'])).stdout).toBe('others\n');
      expect(host.proc.exitCode).toBeNull();
      client.end();
    } finally {
      await transport.close();
    }
  }, 60_000);
});

describe('an unnoticed host restart', () => {
  it('host SIGKILLed and restarted on the same port: the very next exec succeeds', async () => {
    const port = await freeUdpPort();
    const first = await hostAndAgent(['--bind', `127.0.0.1:${port}`]);
    const { agent } = first;
    const ticket = first.host.ticket;
    expect((await runCli(agent.cliEnv, ['exec', ticket, '--', 'echo before'])).stdout).toBe('before\n');
    await first.host.stop('SIGKILL', { keepDir: true });
    const host = await startDaemon({ args: ['--host', '--bind', `127.0.0.1:${port}`], dir: first.host.dir });
    const r = await runCli(agent.cliEnv, ['exec', ticket, '--', 'echo after'], { timeoutMs: 40_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('after\n');
    expect(r.code).toBe(0);
    console.log(`[faults] first exec after an unnoticed host restart: ${r.ms} ms`);
    await host.stop();
    await agent.stop();
  }, 90_000);
});

describe('signals to the client', () => {
  for (const client of ['native', 'node'] as const) {
    it(`timeout 5 burrow exec -- sleep ends in about 5 s and the remote sleep is gone soon after (${client})`, async () => {
      const { host, agent } = await hostAndAgent();
      // A warm connection, so the remote sleep runs well before timeout's TERM (checked below).
      expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo warm'])).stdout).toBe('warm\n');
      const marker = uniqueSleep(100);
      const argv = client === 'native' ? [BURROW] : [process.execPath, BURROW_JS];
      const t0 = Date.now();
      const p = spawnProcess('timeout', ['5', ...argv, 'exec', host.ticket, '--', marker], { env: { ...process.env, ...agent.cliEnv }, stdio: 'ignore' });
      const exited = new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
      const startedMs = await within(4500, 'remote sleep running before the timeout fires', running(marker));
      const code = await exited;
      const ms = Date.now() - t0;
      expect(code).toBe(124); // timeout's own status: the command ended on its TERM
      expect(ms).toBeLessThan(8000);
      const goneMs = await within(5000, 'remote sleep gone after the client ended', gone(marker));
      console.log(`[faults] timeout 5 (${client}): remote sleep running after ${startedMs} ms, client ended in ${ms} ms, remote sleep gone ${goneMs} ms later`);
      await host.stop();
      await agent.stop();
    }, 60_000);
  }

  // bin/burrow without a native client beside it: the sh launcher, then the Node CLI.
  function shLauncher(): { path: string; dir: string } {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-test-'));
    mkdirSync(join(dir, 'bin'));
    mkdirSync(join(dir, 'dist', 'cli'), { recursive: true });
    copyFileSync(BURROW, join(dir, 'bin', 'burrow'));
    symlinkSync(join(BURROW_JS, '..', '..', 'dist', 'cli', 'burrow.mjs'), join(dir, 'dist', 'cli', 'burrow.mjs'));
    return { path: join(dir, 'bin', 'burrow'), dir };
  }

  for (const client of ['native', 'node'] as const) {
    it(`started with SIGHUP ignored (nohup), burrow exec stays on SIGHUP and so does the remote command; TERM still ends it (${client})`, async () => {
      const { host, agent } = await hostAndAgent();
      const launcher = client === 'node' ? shLauncher() : undefined;
      try {
        const marker = uniqueSleep(1000);
        const p = spawnProcess('sh', ['-c', 'trap "" HUP; exec "$0" "$@"', launcher?.path ?? BURROW, 'exec', host.ticket, '--', marker], {
          env: { ...process.env, ...agent.cliEnv },
          stdio: 'ignore',
        });
        // Ending on TERM: the native client dies of it, the Node CLI exits 128+15.
        const exited = new Promise<string>((r) => p.once('exit', (c, sig) => r(String(sig ?? c))));
        await within(20_000, 'remote sleep started', running(marker));
        p.kill('SIGHUP');
        await new Promise((r) => setTimeout(r, 1500));
        expect(p.exitCode).toBeNull();
        expect(p.signalCode).toBeNull();
        expect(running(marker)()).toBe(true);
        p.kill('SIGTERM');
        expect(['SIGTERM', '143']).toContain(await exited);
        await within(5000, 'remote sleep gone after TERM', gone(marker));
      } finally {
        if (launcher) rmSync(launcher.dir, { recursive: true, force: true });
        await host.stop();
        await agent.stop();
      }
    }, 60_000);
  }

  it('burrow ssh with a PTY ends on SIGTERM and the remote shell is hung up', async () => {
    const { host, agent, term, exited, marker } = await sleepInPtyShell();
    term.kill('SIGTERM');
    await Promise.race([exited, new Promise((_, rej) => setTimeout(() => rej(new Error('burrow ssh ignored SIGTERM')), 5000))]);
    await within(5000, 'remote sleep gone after SIGTERM', gone(marker));
    await host.stop();
    await agent.stop();
  }, 60_000);
});
