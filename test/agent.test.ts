import { spawn as spawnProcess } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ErrorCodes } from '../shared/errors.js';
import { exec, spawn, status } from '../shared/lib.js';
import { FrameDecoder, encodeFrame } from '../shared/ipc/codec.js';
import type { Frame } from '../shared/ipc/frames.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, runCli, startDaemon, stopAllDaemons, type RunningDaemon, freeUdpPort, hostAndAgent } from './helpers/daemon.js';
import { bashInPty } from './helpers/pty.js';
import { startSshd, type RunningSshd } from './helpers/sshd.js';

afterAll(stopAllDaemons);

describe('agent over iroh', () => {
  let host: RunningDaemon;
  let agent: RunningDaemon;
  beforeAll(async () => {
    ({ host, agent } = await hostAndAgent());
  });

  it('runs 100 concurrent burrow exec processes over one connection', async () => {
    const runs = await Promise.all(
      Array.from({ length: 100 }, (_, i) => runCli(agent.cliEnv, ['exec', host.ticket, '--', `echo out-${i}; echo err-${i} >&2; exit $((${i} % 5))`], { timeoutMs: 120_000 })),
    );
    runs.forEach((r, i) => {
      expect(r.stdout).toBe(`out-${i}\n`);
      expect(r.stderr).toBe(`err-${i}\n`);
      expect(r.code).toBe(i % 5);
    });
    expect(host.logs.filter((l) => l.event === 'connection_accepted')).toHaveLength(1);
  }, 180_000);

  it('passes stdin through and keeps exit codes like ssh (128+n for signals)', async () => {
    const r = await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'tr a-z A-Z'], { input: 'hello\n' });
    expect(r).toMatchObject({ code: 0, stdout: 'HELLO\n' });
    const k = await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'kill -KILL $$']);
    expect(k.code).toBe(128 + 9);
  });

  it('reports status as JSON, and check says alive then absent after disconnect', async () => {
    await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'true']);
    const s = JSON.parse((await runCli(agent.cliEnv, ['status', '--json'])).stdout) as { daemon: Record<string, unknown>; connections: Record<string, unknown>[] };
    expect(s.daemon['pid']).toBe(agent.proc.pid);
    const c = s.connections.find((x) => x['endpointId'] === host.endpointId);
    expect(c).toMatchObject({ kind: 'iroh', path: 'direct', channels: 0 });
    expect(typeof c?.['rttMs']).toBe('number');
    expect(c?.['bytesIn']).toBeGreaterThan(0);
    expect((await runCli(agent.cliEnv, ['check', host.ticket])).code).toBe(0);
    // the endpoint id names the same connection as the ticket
    expect((await runCli(agent.cliEnv, ['check', host.endpointId])).code).toBe(0);
    expect((await runCli(agent.cliEnv, ['disconnect', host.ticket])).code).toBe(0);
    const absent = await runCli(agent.cliEnv, ['check', host.ticket]);
    expect(absent.code).toBe(1);
    expect(absent.stdout).toContain('absent');
  });

  it('resolves aliases from the address book', async () => {
    expect((await runCli(agent.cliEnv, ['alias', 'add', 'box', host.ticket])).code).toBe(0);
    expect((await runCli(agent.cliEnv, ['exec', 'box', '--', 'echo via-alias'])).stdout).toBe('via-alias\n');
    expect((await runCli(agent.cliEnv, ['exec', 'box.burrow', '--', 'echo dotted'])).stdout).toBe('dotted\n');
    const unknown = await runCli(agent.cliEnv, ['exec', 'nosuch.burrow', '--', 'true']);
    expect(unknown.code).toBe(255);
    expect(unknown.stderr).toMatch(/^burrow: UnknownTarget: /);
  });

  it('gives typed one-line errors with exit 255 for bad targets and refused keys', async () => {
    const bad = await runCli(agent.cliEnv, ['exec', 'bad target!', '--', 'true']);
    expect(bad.code).toBe(255);
    expect(bad.stderr).toMatch(/^burrow: BadTarget: .*\n$/);
    const stranger = await startDaemon();
    const refused = await runCli(stranger.cliEnv, ['exec', host.ticket, '--', 'true']);
    expect(refused.code).toBe(255);
    expect(refused.stderr).toMatch(/^burrow: AuthRejected: /);
    await stranger.stop();
  });

  it('answers malformed frames with an error frame and keeps serving others', async () => {
    const raw = connect(agent.socket);
    await new Promise((r) => raw.once('connect', r));
    const frames: Frame[] = [];
    const dec = new FrameDecoder();
    raw.on('data', (d: Buffer) => dec.push(d).forEach((x) => 'frame' in x && frames.push(x.frame)));
    const closed = new Promise((r) => raw.once('close', r));
    raw.write(encodeFrame({ t: 'hello', v: 1 }));
    raw.write(Buffer.from([0, 0, 0, 3, 0xc1, 0xc1, 0xc1]));
    const ok = runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo unaffected']);
    await closed;
    expect(frames[0]).toEqual({ t: 'hello', v: 1 });
    expect(frames[1]).toMatchObject({ t: 'error', code: ErrorCodes.BadFrame });
    // an oversized frame and a wrong first frame, on their own connections
    for (const bytes of [Buffer.from([0x7f, 0xff, 0xff, 0xff]), encodeFrame({ t: 'status' })]) {
      const s = connect(agent.socket);
      const d2 = new FrameDecoder();
      const got: Frame[] = [];
      s.on('data', (d: Buffer) => d2.push(d).forEach((x) => 'frame' in x && got.push(x.frame)));
      s.write(bytes);
      await new Promise((r) => s.once('close', r));
      expect(got[0]?.t).toBe('error');
    }
    expect((await ok).stdout).toBe('unaffected\n');
  });

  it('serves Node programs through the library: exec, spawn and status', async () => {
    const r = await exec(host.ticket, 'echo lib; echo oops >&2; exit 9', { socket: agent.socket });
    expect(r).toEqual({ stdout: Buffer.from('lib\n'), stderr: Buffer.from('oops\n'), code: 9, signal: null });
    const withInput = await exec(host.ticket, 'sha256sum', { socket: agent.socket, stdin: 'abc' });
    expect(withInput.stdout.toString()).toMatch(/^ba7816bf/);
    const p = await spawn(host.ticket, 'read line; echo "got $line"; sleep 30', { socket: agent.socket });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stdin.write('ping\n');
    await vi.waitFor(() => expect(out).toContain('got ping'), { timeout: 5000, interval: 25 });
    expect(out).toBe('got ping\n');
    const exited = new Promise<[number | null, string | null]>((res) => p.once('exit', (c: number | null, sig: string | null) => res([c, sig])));
    p.kill('TERM');
    expect(await exited).toEqual([null, 'TERM']);
    const st = await status({ socket: agent.socket });
    expect(st.daemon.endpointId).toMatch(/^[0-9a-f]{64}$/);
    expect(st.connections.some((c) => c.endpointId === host.endpointId)).toBe(true);
    await expect(exec('nosuch.burrow', 'true', { socket: agent.socket })).rejects.toMatchObject({ code: ErrorCodes.UnknownTarget });
  });

  it('keeps stdin frames that arrive in the same write as the request', async () => {
    const raw = connect(agent.socket);
    const dec = new FrameDecoder();
    const frames: Frame[] = [];
    raw.on('data', (d: Buffer) => dec.push(d).forEach((x) => 'frame' in x && frames.push(x.frame)));
    raw.write(encodeFrame({ t: 'hello', v: 1 }));
    raw.write(Buffer.concat([encodeFrame({ t: 'exec', target: host.ticket, command: 'cat' }), encodeFrame({ t: 'stdin', data: Buffer.from('same chunk') }), encodeFrame({ t: 'eof' })]));
    await new Promise((r) => raw.once('close', r));
    expect(frames.filter((f) => f.t === 'stdout').map((f) => Buffer.from((f as { data: Uint8Array }).data).toString()).join('')).toBe('same chunk');
    expect(frames[frames.length - 1]).toEqual({ t: 'exit', code: 0 });
  });

  it('a client that stops reading and then goes away leaves no channel held open, and stdin after eof is dropped', async () => {
    // The agent holds the channel while this client's socket is full; once the client is gone the
    // channel must be let go (ssh2 never closes a channel that holds unread data).
    const raw = connect(agent.socket);
    await new Promise((r) => raw.once('connect', r));
    raw.pause();
    raw.write(encodeFrame({ t: 'hello', v: 1 }));
    // stdin after eof: a write after end on the channel, which must not take the daemon down.
    raw.write(Buffer.concat([encodeFrame({ t: 'exec', target: host.ticket, command: 'yes' }), encodeFrame({ t: 'eof' }), encodeFrame({ t: 'stdin', data: Buffer.from('late') })]));
    const channels = async (): Promise<number | undefined> => (await status({ socket: agent.socket })).connections.find((c) => c.endpointId === host.endpointId)?.channels;
    await vi.waitFor(async () => expect(await channels()).toBeGreaterThan(0), { timeout: 10_000, interval: 50 });
    await new Promise((r) => setTimeout(r, 500)); // the socket fills and the channel is held
    raw.destroy();
    await vi.waitFor(async () => expect(await channels()).toBe(0), { timeout: 10_000, interval: 100 });
    expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo still-serving'])).stdout).toBe('still-serving\n');
  });

  it('holds stdin back when the remote is slow: bounded memory for a large upload', async () => {
    // 64 MiB through `cat > /dev/null` on the remote; the agent's RSS must stay far below the volume.
    const size = 64 * 1024 * 1024;
    const p = spawnProcess('bash', ['-c', `head -c ${size} /dev/zero | ${BURROW} exec ${host.ticket} -- 'wc -c'`], { env: { ...process.env, ...agent.cliEnv } });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    let peak = 0;
    const timer = setInterval(() => {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${agent.proc.pid}/status`, 'utf8'));
      if (m) peak = Math.max(peak, Number(m[1]) * 1024);
    }, 50);
    const code = await new Promise((r) => p.once('close', r));
    clearInterval(timer);
    expect(code).toBe(0);
    expect(out.trim()).toBe(String(size));
    expect(peak).toBeLessThan(size * 4); // RSS includes the runtime; the point is it does not grow with the data
  }, 120_000);
});

describe('agent lifecycle', () => {
  it('closes an idle connection after persist seconds', async () => {
    const { host, agent } = await hostAndAgent([], ['--persist', '1']);
    // A running command holds the connection, however long the check takes to start.
    const holding = runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo held; sleep 3']);
    await host.waitLog((l) => l.event === 'session_start');
    expect((await runCli(agent.cliEnv, ['check', host.ticket])).code).toBe(0);
    expect((await holding).stdout).toBe('held\n');
    const expired = await agent.waitLog((l) => l.event === 'persist_expired', 10_000);
    expect(expired['persist']).toBe(1);
    expect((await runCli(agent.cliEnv, ['check', host.ticket])).code).toBe(1);
    await host.stop();
    await agent.stop();
  });

  it('fails fast with Disconnected when the host dies mid-command, and reconnects after it restarts', async () => {
    const port = await freeUdpPort();
    // Detection is the keepalive's: shorter than the default (5 s x 2) for the 10 s bound below.
    const first = await hostAndAgent(['--bind', `127.0.0.1:${port}`], ['--keepalive-interval', '2', '--keepalive-count', '1']);
    const { agent } = first;
    let host = first.host;
    const ticket = host.ticket;
    const running = runCli(agent.cliEnv, ['exec', ticket, '--', 'echo started; sleep 60'], { timeoutMs: 30_000 });
    await host.waitLog((l) => l.event === 'session_start');
    const killedAt = Date.now();
    await host.stop('SIGKILL', { keepDir: true });
    const r = await running;
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/^burrow: Disconnected: /m);
    expect(Date.now() - killedAt).toBeLessThan(10_000);
    // same state dir and port: same endpoint id and the same ticket works again
    host = await startDaemon({ args: ['--host', '--bind', `127.0.0.1:${port}`], dir: host.dir });
    const again = await runCli(agent.cliEnv, ['exec', ticket, '--', 'echo back']);
    expect(again.stdout).toBe('back\n');
    await host.stop();
    await agent.stop();
  }, 60_000);

  it('starts one daemon when two CLIs find none at the same time', async () => {
    const holder = await startDaemon(); // only for its temp dirs
    const socket = join(holder.dir, 'auto.sock');
    const env = { ...holder.cliEnv, BURROW_SOCKET: socket, BURROW_NO_AUTOSTART: '0', BURROW_RELAY: 'disabled', BURROW_BIND: '127.0.0.1:0' };
    const pids: number[] = [];
    try {
      const [a, b] = await Promise.all([runCli(env, ['status', '--json']), runCli(env, ['status', '--json'])]);
      expect(a.code).toBe(0);
      expect(b.code).toBe(0);
      const pidA = (JSON.parse(a.stdout) as { daemon: { pid: number } }).daemon.pid;
      const pidB = (JSON.parse(b.stdout) as { daemon: { pid: number } }).daemon.pid;
      pids.push(pidA, pidB);
      expect(pidA).toBe(pidB);
      const stop = await runCli(env, ['daemon', 'stop']);
      expect(stop.stdout).toContain('stopped');
      expect(() => process.kill(pidA, 0)).toThrow();
    } finally {
      // Whatever failed above, the daemon the CLI started does not outlive the test.
      await runCli(env, ['daemon', 'stop']);
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      await holder.stop();
    }
  });

  it('drives an interactive shell: prompt, resize, ~. disconnects, terminal restored', async () => {
    const { host, agent } = await hostAndAgent();
    // bash runs burrow in a real PTY, then prints the terminal settings burrow left behind.
    const { term, screen, until } = bashInPty(`${BURROW} ssh ${host.ticket}; echo "rc=$?"; stty -a`, agent.cliEnv, 80, 24);
    const exited = new Promise((r) => term.onExit(r));
    term.write('echo READY$((40+2))\r');
    await until(/READY42/);
    term.write('stty size\r');
    await until(/24 80/);
    term.resize(120, 40);
    await new Promise((r) => setTimeout(r, 300));
    term.write('stty size\r');
    await until(/40 120/);
    term.write('\r~.');
    await until(/rc=255/);
    await exited;
    const settings = screen().slice(screen().indexOf('rc=255'));
    expect(settings).toMatch(/(^|\s)icanon(\s|$)/m);
    expect(settings).toMatch(/(^|\s)echo(\s|$)/m);
    await host.stop();
    await agent.stop();
  }, 60_000);
});

describe('agent over TCP to a real sshd', () => {
  let sshd: RunningSshd;
  let agent: RunningDaemon;
  let agentKey: string;
  beforeAll(async () => {
    sshd = await startSshd();
    agent = await startDaemon();
    agentKey = endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim());
    appendFileSync(sshd.authorizedKeysPath, agentKey + '\n');
  });
  afterAll(async () => {
    await agent?.stop();
    await sshd?.stop();
  });

  it('runs 100 concurrent execs over one TCP connection, queueing past MaxSessions', async () => {
    const target = `${sshd.user}@127.0.0.1:${sshd.port}`;
    const runs = await Promise.all(Array.from({ length: 100 }, (_, i) => runCli(agent.cliEnv, ['exec', target, '--', `echo tcp-${i}; exit $((${i} % 3))`], { timeoutMs: 120_000 })));
    runs.forEach((r, i) => {
      expect(r.stderr).toBe('');
      expect(r.stdout).toBe(`tcp-${i}\n`);
      expect(r.code).toBe(i % 3);
    });
    expect(sshd.log().match(/Accepted publickey/g)).toHaveLength(1);
    // the host key was recorded (accept-new) in burrow's own known_hosts
    expect(readFileSync(join(agent.state, 'known_hosts'), 'utf8')).toContain(`[127.0.0.1]:${sshd.port} ssh-ed25519`);
  }, 180_000);

  it('refuses a changed host key with a message naming the file and line', async () => {
    const target = `${sshd.user}@127.0.0.1:${sshd.port}`;
    expect((await runCli(agent.cliEnv, ['exec', target, '--', 'true'])).code).toBe(0);
    await runCli(agent.cliEnv, ['disconnect', target]);
    const port = sshd.port;
    await sshd.stop();
    sshd = await startSshd([], port); // same address, new host key
    appendFileSync(sshd.authorizedKeysPath, agentKey + '\n');
    const r = await runCli(agent.cliEnv, ['exec', target, '--', 'true']);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/^burrow: HostKeyMismatch: HOST KEY CHANGED for \[127\.0\.0\.1\]:\d+: .*\/known_hosts:1 /);
  });
});
