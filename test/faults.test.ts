// Sessions end like ssh's when things are killed for real (issue 13): the host hangs up a
// channel's process when the client goes, notices a vanished client daemon, survives long
// commands, replaces a connection found dead before anything started, and the clients end on
// TERM/HUP. Each remote command carries a unique marker so pgrep can prove it is gone.

import { execFileSync, spawn as spawnProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import * as nodePty from '@lydell/node-pty';
import { afterAll, describe, expect, it } from 'vitest';
import { BurrowError, ErrorCodes } from '../shared/errors.js';
import { IpcConnection } from '../shared/ipc/client.js';
import type { Frame } from '../shared/ipc/frames.js';
import { exec } from '../shared/lib.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, BURROW_JS, runCli, startDaemon, stopAllDaemons, type RunningDaemon } from './helpers/daemon.js';

afterAll(stopAllDaemons);

/** A host daemon and an agent daemon whose endpoint the host authorizes. */
async function hostAndAgent(hostArgs: string[] = []): Promise<{ host: RunningDaemon; agent: RunningDaemon }> {
  const agent = await startDaemon();
  const agentId = (await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim();
  const host = await startDaemon({ args: ['--host', ...hostArgs] });
  host.authorizeKey(endpointKeyLine(agentId));
  return { host, agent };
}

function freeUdpPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    s.bind(0, '127.0.0.1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

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
  let screen = '';
  term.onData((d) => (screen += d));
  const exited = new Promise((r) => term.onExit(r));
  term.write('echo READY$((40+2))\r');
  await within(15_000, 'shell prompt', () => screen.includes('READY42'));
  return { term, screen: () => screen, exited };
}

describe('remote shells do not outlive their client', () => {
  it('~. in a PTY shell running sleep: the sleep is gone and session_end is logged', async () => {
    const { host, agent } = await hostAndAgent();
    const { term, exited } = await ptyShell(agent, host.ticket);
    const marker = 'sleep 1000.101';
    term.write(`${marker}\r`);
    await within(10_000, 'remote sleep started', running(marker));
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
    const { host, agent } = await hostAndAgent();
    const { term, exited } = await ptyShell(agent, host.ticket);
    const marker = 'sleep 1000.102';
    term.write(`${marker}\r`);
    await within(10_000, 'remote sleep started', running(marker));
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
    const { host, agent } = await hostAndAgent();
    const marker = 'sleep 1000.103';
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
    const { host, agent } = await hostAndAgent(['--keepalive-interval', '1', '--keepalive-count', '1']);
    expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo one'])).stdout).toBe('one\n');
    await new Promise((r) => setTimeout(r, 8000)); // host pings every 1 s of silence, agent every 3 s
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
    const r = await runCli(agent.cliEnv, ['exec', host.ticket, '--', ':', 'y'.repeat(40_000), '; cat | tr a-z A-Z'], { input: 'hello from stdin\n' });
    expect(r.stdout).toBe('HELLO FROM STDIN\n');
    await host.stop();
    await agent.stop();
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
      const marker = client === 'native' ? 'sleep 100.201' : 'sleep 100.202';
      const argv = client === 'native' ? [BURROW] : [process.execPath, BURROW_JS];
      const t0 = Date.now();
      const p = spawnProcess('timeout', ['5', ...argv, 'exec', host.ticket, '--', marker], { env: { ...process.env, ...agent.cliEnv }, stdio: 'ignore' });
      const code = await new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
      const ms = Date.now() - t0;
      expect(code).toBe(124); // timeout's own status: the command ended on its TERM
      expect(ms).toBeLessThan(8000);
      const goneMs = await within(5000, 'remote sleep gone after the client ended', gone(marker));
      console.log(`[faults] timeout 5 (${client}): client ended in ${ms} ms, remote sleep gone ${goneMs} ms later`);
      await host.stop();
      await agent.stop();
    }, 60_000);
  }

  it('burrow ssh with a PTY ends on SIGTERM and the remote shell is hung up', async () => {
    const { host, agent } = await hostAndAgent();
    const { term, exited } = await ptyShell(agent, host.ticket);
    const marker = 'sleep 1000.104';
    term.write(`${marker}\r`);
    await within(10_000, 'remote sleep started', running(marker));
    term.kill('SIGTERM');
    await Promise.race([exited, new Promise((_, rej) => setTimeout(() => rej(new Error('burrow ssh ignored SIGTERM')), 5000))]);
    await within(5000, 'remote sleep gone after SIGTERM', gone(marker));
    await host.stop();
    await agent.stop();
  }, 60_000);
});
