// Spare channels: the agent opens a session channel ahead of the next command on a burrow host, so
// an exec costs one round trip instead of two. What goes over the wire is checked against a real
// ssh2 server in this process; what the host counts, and that an idle spare holds no graceful
// stop, against real daemons.

import { randomBytes } from 'node:crypto';
import ssh2 from 'ssh2';
import { afterAll, describe, expect, it } from 'vitest';
import { identityFromSeed } from '../daemon/identity.js';
import { openChannel, SpareChannel } from '../daemon/ssh/channels.js';
import { IpcConnection } from '../shared/ipc/client.js';
import { hostAndAgent, runCli, stopAllDaemons } from './helpers/daemon.js';

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
        session.on('env', (acc, _rej, info) => {
          seen.requests.push(`${n} env ${info.key}=${info.val}`);
          acc?.();
        });
        session.on('pty', (acc, _rej, info) => {
          seen.requests.push(`${n} pty ${(info as { term?: string }).term} ${info.cols}x${info.rows}`);
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
      expect(seen.requests).toEqual(['1 env LANG=C.UTF-8', '1 exec echo spare-run']);
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
  it('execs to a burrow host count one session each (the spare is not one), and an idle spare holds no graceful stop', async () => {
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
});
