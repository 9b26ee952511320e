// Spare channels: the agent opens a session channel ahead of the next command on a burrow host, so
// an exec costs one round trip instead of two. What goes over the wire is checked against a real
// ssh2 server in this process; what the host counts, and that an idle spare holds no graceful
// stop, against real daemons.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { identityFromSeed } from '../daemon/identity.js';
import { openChannel, SpareChannel } from '../daemon/ssh/channels.js';
import { IpcConnection } from '../shared/ipc/client.js';
import { spawn } from '../shared/lib.js';
import { parseTicket, ticketOf } from '../daemon/transport/iroh.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { hostAndAgent, runCli, startDaemon, stopAllDaemons } from './helpers/daemon.js';
import { udpDelayIntoNamespace } from './helpers/delay.js';

// The link-loss case puts the host in a network namespace of its own (root, or user namespaces).
const canUnshare = spawnSync('unshare', ['-n', 'true'], { timeout: 5000 }).status === 0;
if (!canUnshare) console.log('[spare-channel] skipping the link-loss case: unshare -n is refused here (it needs root or user namespaces)');

afterAll(() => stopAllDaemons());

interface Seen {
  opens: number;
  requests: string[];
}

/** A real ssh2 server recording each session open and request, and running `echo` as an echo. */
async function recordingServer(): Promise<{ seen: Seen; port: number; close: () => Promise<void> }> {
  const seen: Seen = { opens: 0, requests: [] };
  const server = new ssh2.Server({ hostKeys: [identityFromSeed(randomBytes(32)).privateKeyOpenSSH] }, (conn) => {
    conn.on('authentication', (ctx) => ctx.accept());
    conn.on('ready', () =>
      conn.on('session', (accept) => {
        const n = ++seen.opens;
        const session = accept();
        // `acc` is undefined when no reply was asked: a reply would run the spare's one callback early.
        session.on('env', (acc, _rej, info) => {
          seen.requests.push(`${n} env ${info.key}=${info.val}${(acc as (() => void) | undefined) ? ' (reply asked)' : ''}`);
          acc?.();
        });
        session.on('pty', (acc, _rej, info) => {
          seen.requests.push(`${n} pty ${(info as { term?: string }).term} ${info.cols}x${info.rows}${(acc as (() => void) | undefined) ? ' (reply asked)' : ''}`);
          acc?.();
        });
        session.on('shell', (acc) => {
          seen.requests.push(`${n} shell`);
          const ch = acc();
          ch.write('shell-up\n');
          ch.exit(0);
          ch.end();
        });
        session.on('subsystem', (acc, _rej, info) => {
          seen.requests.push(`${n} subsystem ${info.name}`);
          const ch = acc();
          ch.end('sub-up\n');
        });
        session.on('exec', (acc, _rej, info) => {
          seen.requests.push(`${n} exec ${info.command}`);
          const ch = acc();
          ch.write(info.command.replace(/^echo /, '') + '\n');
          ch.exit(0);
          ch.end();
        });
      }),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { seen, port: (server.address() as { port: number }).port, close: () => new Promise((r) => server.close(() => r())) };
}

async function connect(port: number): Promise<ssh2.Client> {
  const client = new ssh2.Client();
  await new Promise<void>((resolve, reject) => {
    client.once('ready', () => resolve()).once('error', reject);
    client.connect({ host: '127.0.0.1', port, username: 'test' });
  });
  return client;
}

async function waitFor(what: string, pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`${what} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('spare channel (ssh2 wire)', () => {
  it('opens a session channel with no request, then sends env and exec under it; output, exit and close arrive', async () => {
    const { seen, port, close } = await recordingServer();
    const client = await connect(port);
    try {
      const spare = new SpareChannel(client);
      expect(spare.pending).toBe(true);
      await waitFor('spare ready', () => spare.ready);
      expect(seen.opens).toBe(1);
      expect(seen.requests).toEqual([]); // the marker never left this process
      const opened = await spare.startSession({ command: 'echo spare-run', env: { LANG: 'C.UTF-8' } });
      expect(spare.ready).toBe(false);
      let out = '';
      opened.channel.on('data', (d: Buffer) => (out += d.toString()));
      await opened.closed;
      expect(out).toBe('spare-run\n');
      expect(opened.exit()).toEqual({ code: 0 });
      expect(seen.opens).toBe(1);
      expect(seen.requests).toEqual(['1 env LANG=C.UTF-8', '1 exec echo spare-run']); // the env asked no reply
      // Taken once only.
      await expect(spare.startSession({ command: 'echo again' })).rejects.toThrow(/not ready/);
      // An ordinary exec on the same client is untouched by the hook.
      const plain = await openChannel(client, { command: 'echo plain' });
      plain.channel.resume();
      await plain.closed;
      expect(seen.requests.at(-1)).toBe('2 exec echo plain');
    } finally {
      client.end();
      await close();
    }
  });

  it('a shell with a PTY, and a subsystem, start on spares too: pty-req before the shell, no reply asked', async () => {
    const { seen, port, close } = await recordingServer();
    const client = await connect(port);
    try {
      const first = new SpareChannel(client);
      const second = new SpareChannel(client);
      await waitFor('spares ready', () => first.ready && second.ready);
      const shell = await first.startSession({ pty: { term: 'xterm-256color', cols: 100, rows: 30 } });
      let out = '';
      shell.channel.on('data', (d: Buffer) => (out += d.toString()));
      await shell.closed;
      expect(out).toBe('shell-up\n');
      const sub = await second.startSubsystem('demo@burrow');
      let subOut = '';
      sub.channel.on('data', (d: Buffer) => (subOut += d.toString()));
      await sub.closed;
      expect(subOut).toBe('sub-up\n');
      expect(seen.opens).toBe(2);
      expect(seen.requests).toEqual(['1 pty xterm-256color 100x30', '1 shell', '2 subsystem demo@burrow']);
    } finally {
      client.end();
      await close();
    }
  });

  it('a spare whose connection ends is no longer ready, and start() refuses it', async () => {
    const { port, close } = await recordingServer();
    const client = await connect(port);
    try {
      const spare = new SpareChannel(client);
      await waitFor('spare ready', () => spare.ready);
      client.end();
      await waitFor('spare gone', () => !spare.pending);
      expect(spare.ready).toBe(false);
      await expect(spare.startSession({ command: 'echo late' })).rejects.toThrow(/not ready/);
    } finally {
      await close();
    }
  });
});

describe('spare channel (real daemons)', () => {
  it('execs to a burrow host take the spare (one channel opened ahead), count one session each, and an idle spare holds no graceful stop', async () => {
    const { host, agent } = await hostAndAgent(['--grace', '60']);
    const runs = 5;
    for (let i = 0; i < runs; i++) {
      const r = await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo', `run-${i}`]);
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(`run-${i}\n`);
    }
    // Environment still reaches a command started on a spare.
    const env = await runCli({ ...agent.cliEnv, LC_TIME: 'C.UTF-8' }, ['exec', host.ticket, '--', 'printenv', 'LC_TIME']);
    expect(env.stdout).toBe('C.UTF-8\n');
    // Six sessions, one channel each, and one more open ahead: each exec after the first took the
    // spare its predecessor opened (without spares there would be six channels, not seven).
    await vi.waitFor(() => expect(host.logs.filter((l) => l['event'] === 'channel_opened').length).toBe(runs + 2));
    const hostStatus = await (await IpcConnection.connect({ socket: host.socket })).request({ t: 'status' });
    expect(hostStatus.daemon.sessionsServed).toBe(runs + 1);
    const agentStatus = await (await IpcConnection.connect({ socket: agent.socket })).request({ t: 'status' });
    expect(agentStatus.connections.map((c) => c.channels)).toEqual([0]);
    // With the spare counted as a running session, this stop would wait out its 60 s grace.
    const t0 = Date.now();
    await host.stop('SIGTERM');
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(host.logs.some((l) => l['event'] === 'stop_timeout')).toBe(false);
  }, 90_000);

  it('a host at its session limit: the spare gives its slot back to an open that cannot use it (a long command), instead of starving it', async () => {
    const { host, agent } = await hostAndAgent(['--max-sessions', '2', '--grace', '1']);
    // One long command holds a slot; the spare opened with it holds the other.
    const sleeper = runCli(agent.cliEnv, ['exec', host.ticket, '--', 'sleep 60; echo slept']);
    await vi.waitFor(() => expect(host.logs.filter((l) => l['event'] === 'channel_opened').length).toBe(2), { timeout: 10_000 });
    // A command over the 34,000 bytes of one SSH packet goes as exec@burrow on a channel of its
    // own, which the host refuses while both slots are held.
    const big = `: ${'x'.repeat(40_000)}; echo long-ran`;
    // Without the spare giving its slot back, this would wait for the sleep to end, past its timeout.
    const r = await runCli(agent.cliEnv, ['exec', host.ticket, '--', big], { timeoutMs: 20_000 });
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('long-ran\n');
    // Commands after it still run (without a spare for a while: the host was at its limit).
    expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo', 'after'])).stdout).toBe('after\n');
    await host.stop();
    expect((await sleeper).code).not.toBe(0); // hung up with the host
  }, 90_000);

  it('a PTY shell and a persistent session attach ride spares against a real host', async () => {
    const { host, agent } = await hostAndAgent();
    expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'true'])).code).toBe(0);
    const list = await runCli(agent.cliEnv, ['session', 'list', host.ticket, '--json']);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout)).toEqual([]);
    // exec, the session subsystem, and one spare open ahead: three channels, not four.
    await vi.waitFor(() => expect(host.logs.filter((l) => l['event'] === 'channel_opened').length).toBe(3));
    const p = await spawn(host.ticket, undefined, { socket: agent.socket, pty: { cols: 90, rows: 33 } });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stdin.write('stty size; exit\n');
    const code = await new Promise((r) => p.once('exit', r));
    expect(code).toBe(0);
    expect(out).toContain('33 90');
  }, 90_000);

  it.runIf(canUnshare)('a link lost after a request went out on a spare: the same start of the host is not asked again, and the command ran once', async () => {
    // The host is reached only through a proxy that can drop what it sends back.
    const ns = await udpDelayIntoNamespace(0);
    try {
      const host = await startDaemon({ args: ['--host'], prefix: ns.prefix });
      const agent = await startDaemon({ args: ['--keepalive-interval', '1', '--keepalive-count', '2'] });
      host.authorizeKey(endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim()));
      ns.target(Number(parseTicket(host.ticket).direct[0]?.split(':').pop()));
      const t = ticketOf({ id: host.endpointId, direct: [`127.0.0.1:${ns.port}`] });
      expect((await runCli(agent.cliEnv, ['exec', t, '--', 'true'])).code).toBe(0);
      await vi.waitFor(() => expect(host.logs.filter((l) => l['event'] === 'channel_opened').length).toBe(2));
      await new Promise((r) => setTimeout(r, 300)); // the spare's confirmation back at the agent
      const marker = join(host.home, 'ran');
      ns.dropReplies(true);
      const run = runCli(agent.cliEnv, ['exec', t, '--', `echo once >> ${marker}`], { timeoutMs: 60_000 });
      // The host got the exec and ran it; its answers are lost until the agent gives the link up.
      await agent.waitLog((l) => l['event'] === 'disconnected', 30_000);
      ns.dropReplies(false);
      const r = await run;
      expect(r.stderr).toMatch(/lost after the session was sent, before the host answered: it may have started, so it is not sent again/);
      expect(r.code).toBe(255);
      expect(readFileSync(marker, 'utf8')).toBe('once\n');
      // The link is back: the next command runs on the new connection.
      expect((await runCli(agent.cliEnv, ['exec', t, '--', 'echo', 'next'])).stdout).toBe('next\n');
    } finally {
      await stopAllDaemons();
      await ns.close();
    }
  }, 90_000);
});
