// The socket another user controls (issue 12, item 2): with XDG_RUNTIME_DIR unset the socket
// lives in /tmp/burrow-$UID, which anyone can create first. Both clients and the daemon refuse a
// socket directory that is a symlink, owned by someone else or open to others, and a socket
// owned by someone else, with one line naming the path and owner; nothing reaches the squatter.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BURROW, BURROW_JS, BURROWD, runCli, stopAllDaemons } from './helpers/daemon.js';

afterAll(stopAllDaemons);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a program, optionally as another user, with exactly this environment. */
function run(cmd: string, args: string[], opts: { env: Record<string, string>; uid?: number; gid?: number; input?: string; timeoutMs?: number }): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env: opts.env, cwd: '/', stdio: ['pipe', 'pipe', 'pipe'], ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid ?? opts.uid } : {}) });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    p.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    p.stdin.on('error', () => undefined);
    p.stdin.end(opts.input);
  });
}

/** Both clients, and the daemon, on the same environment: each must refuse with `line`. */
async function expectRefused(env: Record<string, string>, line: string, as: { uid?: number; gid?: number } = {}): Promise<void> {
  const node = await run(process.execPath, [BURROW_JS, 'exec', 'box', '--', 'cat'], { env, ...as, input: 'a sudo password\n' });
  expect(node).toMatchObject({ code: 255, stderr: `burrow: UnsafeSocket: ${line}\n` });
  const native = await run(BURROW, ['exec', 'box', '--', 'cat'], { env, ...as, input: 'a sudo password\n' });
  expect(native).toMatchObject({ code: 255, stderr: `burrow: UnsafeSocket: ${line}\n` });
  const status = await run(BURROW, ['status'], { env, ...as });
  expect(status).toMatchObject({ code: 255, stderr: `burrow: UnsafeSocket: ${line}\n` });
  const daemon = await run(process.execPath, [BURROWD, '--relay', 'disabled', '--bind', '127.0.0.1:0'], { env, ...as });
  expect(daemon.code).toBe(1);
  expect(daemon.stderr).toContain(`burrowd: UnsafeSocket: ${line}\n`);
}

describe('the socket directory of this user', () => {
  const dirs: string[] = [];
  const tmp = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'burrow-sock-'));
    dirs.push(d);
    return d;
  };
  afterAll(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const envFor = (runtime: string, extra: Record<string, string> = {}): Record<string, string> => ({
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: join(runtime, 'home'),
    XDG_RUNTIME_DIR: runtime,
    BURROW_STATE: join(runtime, 'state'),
    BURROW_NO_AUTOSTART: '1',
    ...extra,
  });
  const me = process.getuid?.() ?? 0;

  it('refuses $XDG_RUNTIME_DIR/burrow when it is a symlink, and leaves its target alone', async () => {
    const runtime = tmp();
    const elsewhere = join(runtime, 'elsewhere');
    mkdirSync(elsewhere, { mode: 0o755 });
    chmodSync(elsewhere, 0o755);
    symlinkSync(elsewhere, join(runtime, 'burrow'));
    await expectRefused(envFor(runtime), `${join(runtime, 'burrow')} is a symlink (owned by uid ${me}), not a directory; refusing to use it`);
    expect(statSync(elsewhere).mode & 0o777).toBe(0o755); // the old daemon chmodded the target
    expect(existsSync(join(elsewhere, 'agent.sock'))).toBe(false);
  });

  it('refuses it open to others in the clients; the daemon makes it 0700 and then serves', async () => {
    const runtime = tmp();
    mkdirSync(join(runtime, 'burrow'));
    chmodSync(join(runtime, 'burrow'), 0o755);
    const env = envFor(runtime);
    const line = `${join(runtime, 'burrow')} is open to other users (mode 0755, not 0700); refusing to use it`;
    for (const [cmd, args] of [[process.execPath, [BURROW_JS, 'status']], [BURROW, ['exec', 'box', '--', 'true']]] as const) {
      expect(await run(cmd, [...args], { env })).toMatchObject({ code: 255, stderr: `burrow: UnsafeSocket: ${line}\n` });
    }
    const own = spawn(process.execPath, [BURROWD, '--relay', 'disabled', '--bind', '127.0.0.1:0'], { env, stdio: 'ignore' });
    try {
      const deadline = Date.now() + 15_000;
      while (!existsSync(join(runtime, 'burrow', 'agent.sock')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(statSync(join(runtime, 'burrow')).mode & 0o777).toBe(0o700);
      const r = await runCli(env, ['status', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect((JSON.parse(r.stdout) as { daemon: { pid: number } }).daemon.pid).toBe(own.pid);
    } finally {
      own.kill('SIGTERM');
      await new Promise((r) => own.once('exit', r));
    }
  });

  it('refuses a named socket ($BURROW_SOCKET) in a directory others can write', async () => {
    const runtime = tmp();
    const open = join(runtime, 'open');
    mkdirSync(open);
    chmodSync(open, 0o777);
    await expectRefused(envFor(runtime, { BURROW_SOCKET: join(open, 'agent.sock') }), `${open} is writable by other users (mode 0777); refusing to use it`);
  });
});

// Adding users needs root (CI runs as root), and the other user runs burrow from this checkout.
const skipWhy =
  process.getuid?.() !== 0
    ? 'not root, so no users can be added'
    : spawnSync('sh', ['-c', 'command -v useradd && command -v userdel']).status !== 0
      ? 'no useradd'
      : spawnSync('test', ['-r', BURROWD], { uid: 65534, gid: 65534 }).status !== 0
        ? 'the checkout is not readable by other users'
        : '';

describe.skipIf(skipWhy !== '')(`a second local user${skipWhy ? ` (skipped: ${skipWhy})` : ''}`, () => {
  const tag = randomBytes(3).toString('hex');
  const victim = { name: `bvic${tag}`, uid: -1, gid: -1, home: '' };
  const squatter = { name: `bsqt${tag}`, uid: -1, gid: -1, home: '' };
  const children: ChildProcess[] = [];
  const cleanup: string[] = [];
  let victimDir = '';

  const idOf = (name: string, flag: string): number => Number(spawnSync('id', [flag, name], { encoding: 'utf8' }).stdout.trim());
  const victimEnv = (): Record<string, string> => ({
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    HOME: victim.home,
    // XDG_RUNTIME_DIR unset: the socket goes to /tmp/burrow-$UID, which anyone can create first.
    BURROW_NO_AUTOSTART: '1',
  });
  const asVictim = (): { uid: number; gid: number } => ({ uid: victim.uid, gid: victim.gid });

  /** The squatter's listener: reports every connection and byte on stdout. */
  async function trap(socketPath: string, dirToMake?: string): Promise<{ seen: () => string }> {
    const script = [
      "const net = require('net'), fs = require('fs');",
      'const [sock, dir] = process.argv.slice(1);',
      "if (dir) { fs.mkdirSync(dir, { recursive: true }); fs.chmodSync(dir, 0o777); }",
      "const s = net.createServer((c) => { process.stdout.write('conn\\n'); c.on('data', (b) => process.stdout.write('bytes ' + b.length + '\\n')); c.on('error', () => {}); });",
      "s.listen(sock, () => { fs.chmodSync(sock, 0o777); process.stdout.write('ready\\n'); });",
    ].join('\n');
    const p = spawn(process.execPath, ['-e', script, socketPath, ...(dirToMake ? [dirToMake] : [])], { uid: squatter.uid, gid: squatter.gid, cwd: '/', stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(p);
    let out = '';
    p.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    await vi.waitFor(() => expect(out).toContain('ready'), { timeout: 10_000, interval: 20 });
    return { seen: () => out.replace('ready\n', '') };
  }

  async function stopChildren(): Promise<void> {
    for (const p of children.splice(0)) {
      if (p.exitCode === null && p.signalCode === null) {
        const gone = new Promise((r) => p.once('exit', r));
        p.kill('SIGKILL');
        await gone;
      }
    }
  }

  beforeAll(() => {
    for (const u of [victim, squatter]) {
      const r = spawnSync('useradd', ['-m', '-s', '/bin/sh', u.name], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      u.uid = idOf(u.name, '-u');
      u.gid = idOf(u.name, '-g');
      u.home = `/home/${u.name}`;
    }
    victimDir = `/tmp/burrow-${victim.uid}`;
    // A uid reused from an earlier run must not find an old directory of the victim's.
    rmSync(victimDir, { recursive: true, force: true });
  });

  afterAll(async () => {
    await stopChildren();
    for (const p of [victimDir, ...cleanup]) if (p) rmSync(p, { recursive: true, force: true });
    for (const u of [victim, squatter]) if (u.uid >= 0) spawnSync('userdel', ['-r', u.name], { stdio: 'ignore' });
  });

  it('refuses /tmp/burrow-UID created first by another user; the squatter receives nothing', async () => {
    const t = await trap(join(victimDir, 'agent.sock'), victimDir);
    expect(lstatSync(victimDir).uid).toBe(squatter.uid);
    await expectRefused(victimEnv(), `${victimDir} is owned by uid ${squatter.uid}, not you; refusing to use it`, asVictim());
    expect(t.seen()).toBe('');
    // The trap does see whoever connects: here, the test itself.
    const probe = connect(join(victimDir, 'agent.sock'));
    await new Promise((r) => probe.once('connect', r));
    probe.destroy();
    await vi.waitFor(() => expect(t.seen()).toContain('conn'), { timeout: 5000, interval: 20 });
    await stopChildren();
    rmSync(victimDir, { recursive: true, force: true });
  });

  it('refuses /tmp/burrow-UID made a symlink by another user, to their directory or to the victim\'s home', async () => {
    const trapDir = mkdtempSync(join(tmpdir(), 'burrow-trap-'));
    cleanup.push(trapDir);
    chmodSync(trapDir, 0o777);
    spawnSync('chown', [`${squatter.uid}:${squatter.gid}`, trapDir]);
    const t = await trap(join(trapDir, 'agent.sock'));
    // What the squatter runs: ln -s (the link is theirs).
    const link = (to: string): void => {
      const r = spawnSync('ln', ['-s', to, victimDir], { uid: squatter.uid, gid: squatter.gid });
      expect(r.status).toBe(0);
    };
    link(trapDir);
    await expectRefused(victimEnv(), `${victimDir} is a symlink (owned by uid ${squatter.uid}), not a directory; refusing to use it`, asVictim());
    expect(t.seen()).toBe('');
    rmSync(victimDir);
    // To the victim's own home: the old daemon followed it, chmodded the home 0700 and bound there.
    const homeMode = statSync(victim.home).mode;
    link(victim.home);
    await expectRefused(victimEnv(), `${victimDir} is a symlink (owned by uid ${squatter.uid}), not a directory; refusing to use it`, asVictim());
    expect(statSync(victim.home).mode).toBe(homeMode);
    expect(existsSync(join(victim.home, 'agent.sock'))).toBe(false);
    rmSync(victimDir);
    await stopChildren();
  });

  it('serves the victim once the squat is gone, even while another user holds the old lock name', async () => {
    const socket = join(victimDir, 'agent.sock');
    // The abstract lock the daemon used to take, bound first by the squatter.
    const lockName = `burrow-lock-${createHash('sha256').update(socket).digest('hex').slice(0, 32)}`;
    const holder = spawn(process.execPath, ['-e', "require('net').createServer().listen('\\0' + process.argv[1], () => process.stdout.write('ready\\n'))", lockName], {
      uid: squatter.uid,
      gid: squatter.gid,
      cwd: '/',
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    children.push(holder);
    await new Promise((r) => holder.stdout!.once('data', r));
    const env = { ...victimEnv(), BURROW_NO_AUTOSTART: '0', BURROW_RELAY: 'disabled', BURROW_BIND: '127.0.0.1:0' };
    const r = await run(BURROW, ['status', '--json'], { env, ...asVictim() });
    expect(r.code, r.stderr).toBe(0);
    const pid = (JSON.parse(r.stdout) as { daemon: { pid: number; socket: string } }).daemon.pid;
    try {
      expect(lstatSync(victimDir)).toMatchObject({ uid: victim.uid });
      expect(lstatSync(victimDir).mode & 0o777).toBe(0o700);
      expect(lstatSync(socket).uid).toBe(victim.uid);
      // A request the daemon answers without dialing anything: the name is no connection of its.
      const c = await run(BURROW, ['check', 'box'], { env, ...asVictim() });
      expect(c).toMatchObject({ code: 1 });
      expect(c.stdout).toContain('absent');
    } finally {
      await run(BURROW, ['daemon', 'stop'], { env, ...asVictim() });
      const deadline = Date.now() + 10_000;
      while (Date.now() < deadline && existsSync(`/proc/${pid}`)) await new Promise((res) => setTimeout(res, 50));
      if (existsSync(`/proc/${pid}`)) process.kill(pid, 'SIGKILL');
      await stopChildren();
    }
  }, 60_000);
});
