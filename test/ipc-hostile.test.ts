// Hostile IPC clients of the same user (issue 12, items 3, 4, 6): one frame must not crash the
// agent, no client may hold its memory or sockets without bound, and the single-instance lock
// is the bound socket itself, which no one else can hold.

import { spawn as spawnProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ErrorCodes } from '../shared/errors.js';
import { MAX_CHUNK, MAX_FRAME, type Frame } from '../shared/ipc/frames.js';
import { spawn } from '../shared/lib.js';
import type { DaemonStatusReport } from '../shared/status.js';
import { BURROWD, runCli, startDaemon, stopAllDaemons, type RunningDaemon, hostAndAgent } from './helpers/daemon.js';
import { RawIpc, alive, rssMiB } from './helpers/raw-ipc.js';

afterAll(stopAllDaemons);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function statusOf(d: RunningDaemon): Promise<DaemonStatusReport> {
  const r = await runCli(d.cliEnv, ['status', '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as DaemonStatusReport;
}

/** A long-running exec through the library: cat echoes each line back while the test goes on. */
async function echoSession(agent: RunningDaemon, ticket: string): Promise<{ ping(word: string): Promise<string>; end(): Promise<number | null> }> {
  const p = await spawn(ticket, 'cat', { socket: agent.socket });
  let out = '';
  p.stdout.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((r) => p.once('exit', (code: number | null) => r(code)));
  p.on('error', () => undefined);
  return {
    async ping(word) {
      p.stdin.write(`${word}\n`);
      await vi.waitFor(() => expect(out).toContain(`${word}\n`), { timeout: 10_000, interval: 20 });
      return out;
    },
    end() {
      p.stdin.end();
      return exited;
    },
  };
}

describe('one frame does not crash the agent', () => {
  let host: RunningDaemon;
  let agent: RunningDaemon;
  beforeAll(async () => {
    ({ host, agent } = await hostAndAgent());
  }, 60_000);

  it('a check with a 1 MiB target gets a short BadTarget, and a running exec goes on', async () => {
    const echo = await echoSession(agent, host.ticket);
    expect(await echo.ping('before')).toContain('before\n');
    // Each quoted whole made an error frame over the frame limit, thrown inside the session's fail.
    const huge = MAX_FRAME - 64;
    for (const target of [`${'u'.repeat(huge)}@h`, `${'h'.repeat(huge)}!`, `h:${'9'.repeat(huge)}`]) {
      const c = await RawIpc.hello(agent.socket);
      c.send({ t: 'check', target });
      const f = await c.next();
      expect(f).toMatchObject({ t: 'error', code: ErrorCodes.BadTarget });
      expect((f as Frame & { message: string }).message.length).toBeLessThan(1000);
      c.destroy();
    }
    // A forward spec is quoted the same way.
    const c = await RawIpc.hello(agent.socket);
    c.send({ t: 'forward', target: host.ticket, type: 'local', spec: 'x'.repeat(huge - 1024) });
    expect(await c.next()).toMatchObject({ t: 'error', code: ErrorCodes.BadArgument });
    expect(alive(agent.proc.pid!)).toBe(true);
    expect(await echo.ping('after')).toContain('after\n');
    expect(await echo.end()).toBe(0);
  });

  it('a signal SSH cannot carry is a BadArgument for that session only (raw frame and library kill)', async () => {
    const echo = await echoSession(agent, host.ticket);
    expect(await echo.ping('one')).toContain('one\n');
    const c = await RawIpc.hello(agent.socket);
    c.send({ t: 'exec', target: host.ticket, command: 'sleep 30' });
    await sleep(500);
    c.send({ t: 'signal', name: 'STOP' });
    const f = await c.next();
    expect(f).toMatchObject({ t: 'error', code: ErrorCodes.BadArgument });
    expect((f as Frame & { message: string }).message).toContain('"STOP"');
    // The library's kill('STOP') reaches the same place.
    const p = await spawn(host.ticket, 'sleep 30', { socket: agent.socket });
    const failed = new Promise<{ code?: string }>((r) => p.once('error', r));
    await sleep(300);
    p.kill('STOP');
    expect((await failed).code).toBe(ErrorCodes.BadArgument);
    // A valid one still works: 128+15.
    const q = await spawn(host.ticket, 'sleep 30', { socket: agent.socket });
    const exited = new Promise<[number | null, string | null]>((r) => q.once('exit', (code: number | null, sig: string | null) => r([code, sig])));
    await sleep(300);
    q.kill('SIGTERM');
    expect((await exited)[1]).toBe('TERM');
    expect(alive(agent.proc.pid!)).toBe(true);
    expect(await echo.ping('two')).toContain('two\n');
    expect(await echo.end()).toBe(0);
  });

  it('stdin after eof, and a resize out of range, end nothing but (at most) that session', async () => {
    const echo = await echoSession(agent, host.ticket);
    const c = await RawIpc.hello(agent.socket);
    c.send({ t: 'exec', target: host.ticket, command: 'sleep 2', pty: true });
    await sleep(500);
    c.send({ t: 'resize', cols: 2 ** 40, rows: 2 ** 40 });
    c.send({ t: 'eof' });
    c.send({ t: 'stdin', data: Buffer.from('after eof') });
    const f = await c.next();
    expect(['exit', 'error']).toContain(f?.t);
    expect(alive(agent.proc.pid!)).toBe(true);
    expect(await echo.ping('three')).toContain('three\n');
    expect(await echo.end()).toBe(0);
  });

  it('frames after a forward request are refused (the frame table lets none follow it) and hold nothing, before and after it is made', async () => {
    // A TCP "SSH server" that never speaks holds the forward in its connect for 15 s.
    const silent: Server = createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const port = (silent.address() as { port: number }).port;
    const dir = mkdtempSync(join(tmpdir(), 'burrow-fwd-'));
    try {
      const c = await RawIpc.hello(agent.socket);
      c.send({ t: 'forward', target: `127.0.0.1:${port}`, type: 'local', spec: `${join(dir, 'l.sock')}:127.0.0.1:1` });
      const before = rssMiB(agent.proc.pid!);
      const chunk = { t: 'stdin', data: Buffer.alloc(MAX_CHUNK, 1) } as const;
      for (let i = 0; i < 512; i++) c.send(chunk); // 32 MiB, of which the daemon must take little
      await sleep(2000);
      const s = await statusOf(agent);
      expect(s.daemon.ipcBufferedBytes).toBeLessThan(512 * 1024);
      expect(rssMiB(agent.proc.pid!) - before).toBeLessThan(24);
      expect(await c.next()).toMatchObject({ t: 'error', code: ErrorCodes.UnexpectedFrame });
      c.destroy();
      // Once made (to the real host), a forward takes no frames at all.
      const d = await RawIpc.hello(agent.socket);
      d.send({ t: 'forward', target: host.ticket, type: 'local', spec: `${join(dir, 'm.sock')}:127.0.0.1:1` });
      expect(await d.next(20_000)).toMatchObject({ t: 'result' });
      d.send({ t: 'stdin', data: Buffer.from('x') });
      expect(await d.next()).toMatchObject({ t: 'error', code: ErrorCodes.UnexpectedFrame });
      await sleep(200);
      expect((await statusOf(agent)).forwards).toEqual([]);
    } finally {
      silent.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('IPC limits', () => {
  let d: RunningDaemon;
  beforeAll(async () => {
    d = await startDaemon();
  });

  it('drops a client that sends no hello within 5 s, or leaves a request frame half sent for 10 s', async () => {
    const silent = await RawIpc.open(d.socket);
    const half = await RawIpc.hello(d.socket);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(1000);
    half.write(Buffer.concat([header, Buffer.alloc(10)]));
    const t0 = Date.now();
    expect(await silent.next(8000)).toMatchObject({ t: 'error', code: ErrorCodes.IpcLimit });
    expect(await silent.closedWithin(3000)).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(4500);
    expect(await half.next(12_000)).toMatchObject({ t: 'error', code: ErrorCodes.IpcLimit });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(9500);
    expect(await half.closedWithin(3000)).toBe(true);
  }, 30_000);

  it('refuses connections past the cap with IpcLimit, and serves again once they close', async () => {
    const held: RawIpc[] = [];
    try {
      for (let i = 0; i < 512; i++) held.push(await RawIpc.hello(d.socket));
      const over = await RawIpc.open(d.socket);
      expect(await over.next()).toMatchObject({ t: 'error', code: ErrorCodes.IpcLimit });
      const r = await runCli(d.cliEnv, ['status']);
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(/^burrow: IpcLimit: .*512 IPC connections/);
    } finally {
      for (const c of held) c.destroy();
    }
    await sleep(500);
    expect((await statusOf(d)).daemon.ipcSessions).toBe(1);
  }, 60_000);

  it('caps requests still arriving at 16 MiB over all clients; their buffers go on close and memory stays bounded wave after wave', async () => {
    const before = rssMiB(d.proc.pid!);
    const wave = async (): Promise<{ refused: number; buffered: number; rss: number }> => {
      const conns = await Promise.all(Array.from({ length: 60 }, () => RawIpc.hello(d.socket)));
      const header = Buffer.alloc(4);
      header.writeUInt32BE(MAX_FRAME - 100);
      for (const c of conns) c.write(Buffer.concat([header, Buffer.alloc(MAX_FRAME - 200, 0x61)]));
      await sleep(1500);
      const refused = conns.filter((c) => c.frames.some((f) => f.t === 'error' && f.code === ErrorCodes.IpcLimit)).length;
      const buffered = (await statusOf(d)).daemon.ipcBufferedBytes ?? -1;
      const rss = rssMiB(d.proc.pid!);
      for (const c of conns) c.destroy();
      await sleep(500);
      return { refused, buffered, rss };
    };
    const first = await wave();
    expect(first.refused).toBeGreaterThanOrEqual(60 - 17);
    expect(first.buffered).toBeLessThanOrEqual(16 * 1024 * 1024);
    expect(first.rss - before).toBeLessThan(64);
    expect((await statusOf(d)).daemon.ipcBufferedBytes).toBe(0);
    // Whatever the number of waves, the daemon does not grow past a bound: freed buffers go back
    // to the allocator (at the next GC) and are used again.
    const waves = [first];
    for (let i = 0; i < 5; i++) waves.push(await wave());
    for (const w of waves) expect(w.rss - before).toBeLessThan(96);
    expect((await statusOf(d)).daemon.ipcBufferedBytes).toBe(0);
    // And a well-behaved large request still gets through.
    const c = await RawIpc.hello(d.socket);
    c.send({ t: 'check', target: 'a'.repeat(900 * 1024) });
    const f = await c.next();
    expect(f).toMatchObject({ t: 'error', code: ErrorCodes.BadTarget });
    expect((f as Frame & { message: string }).message).toMatch(/^bad target "a{120}"\.\.\. \(921600 characters\)/);
    c.destroy();
  }, 60_000);
});

describe('single-instance lock', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const x of dirs) rmSync(x, { recursive: true, force: true });
  });

  it('replaces a stale socket, and a second daemon on a live one exits with AlreadyRunning', async () => {
    const a = await startDaemon();
    await a.stop('SIGKILL', { keepDir: true });
    expect(existsSync(a.socket)).toBe(true); // stale: nothing listens
    const b = await startDaemon({ dir: a.dir });
    expect((await statusOf(b)).daemon.pid).toBe(b.proc.pid);
    await expect(startDaemon({ dir: a.dir })).rejects.toThrow(/exited with 3: .*AlreadyRunning: another burrowd is already serving/);
    expect((await statusOf(b)).daemon.pid).toBe(b.proc.pid);
    await b.stop();
  });

  it('lets exactly one of three daemons started at once on a stale socket serve it', async () => {
    const a = await startDaemon();
    await a.stop('SIGKILL', { keepDir: true });
    dirs.push(a.dir);
    const procs = [0, 1, 2].map((i) =>
      spawnProcess(process.execPath, [BURROWD, '--state', join(a.dir, `state${i}`), '--socket', a.socket, '--relay', 'disabled', '--bind', '127.0.0.1:0'], {
        stdio: ['ignore', 'ignore', 'pipe'],
      }),
    );
    const logs = procs.map(() => '');
    procs.forEach((p, i) => p.stderr!.on('data', (b: Buffer) => (logs[i] += b.toString())));
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline && !(procs.filter((p) => p.exitCode === 3).length === 2 && logs.some((l) => l.includes('"event":"ready"')))) await sleep(50);
    try {
      expect(procs.filter((p) => p.exitCode === 3)).toHaveLength(2);
      const winner = procs.find((p) => p.exitCode === null);
      const r = await runCli({ BURROW_SOCKET: a.socket, BURROW_NO_AUTOSTART: '1' }, ['status', '--json']);
      expect((JSON.parse(r.stdout) as DaemonStatusReport).daemon.pid).toBe(winner?.pid);
    } finally {
      for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
      await Promise.all(procs.map((p) => (p.exitCode === null && p.signalCode === null ? new Promise((r) => p.once('exit', r)) : undefined)));
    }
  }, 40_000);

  it('starts although someone holds the abstract lock name the daemon used to take', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-test-'));
    const socket = join(dir, 'agent.sock');
    // The old lock: an abstract socket anyone could bind first.
    const squat = createServer();
    await new Promise<void>((r) => squat.listen(`\0burrow-lock-${createHash('sha256').update(socket).digest('hex').slice(0, 32)}`, r));
    try {
      const d = await startDaemon({ dir });
      expect((await statusOf(d)).daemon.pid).toBe(d.proc.pid);
      await d.stop();
    } finally {
      squat.close();
    }
  });
});
