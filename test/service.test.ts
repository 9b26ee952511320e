// burrowd as a service: systemd units, socket activation, readiness, reload, graceful stop,
// the config file, and host info.

import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { endpointKeyLine } from '../shared/sshkey.js';
import { renderUnit } from '../cli/commands/system.js';
import { BURROW, BURROWD, runCli, startDaemon, stopAllDaemons } from './helpers/daemon.js';

afterAll(stopAllDaemons);

const UNITS = ['burrowd.service', 'burrow-agent.socket', 'burrow-agent.service', 'burrow-host.service'];
const dirs: string[] = [];
const tmp = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'burrow-svc-'));
  dirs.push(d);
  return d;
};
const children: ChildProcess[] = [];
afterAll(() => {
  // Whatever a test's outcome, nothing it started outlives the file.
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

// The system python, not a version manager's shim (which may wait on its own lock files).
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** A Unix datagram socket that records what arrives (Node has none: python3 does it). */
function datagramSink(path: string): { proc: ChildProcess; messages: string[]; ready: Promise<void> } {
  const proc = spawn(PYTHON, [
    '-c',
    'import socket,sys\ns=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); print("bound", flush=True)\nwhile True: print(s.recv(4096).decode().replace("\\n", " "), flush=True)',
    path,
  ]);
  children.push(proc);
  const messages: string[] = [];
  let bound!: () => void;
  const ready = new Promise<void>((r) => (bound = r));
  createInterface({ input: proc.stdout! }).on('line', (l) => (l === 'bound' ? bound() : messages.push(l)));
  return { proc, messages, ready };
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  await vi.waitFor(
    () => {
      if (!cond()) throw new Error(`timed out waiting for ${what}`);
    },
    { timeout: ms, interval: 25 },
  );
}

describe('systemd units', () => {
  it('pass systemd-analyze verify with this install’s paths', () => {
    const d = tmp();
    for (const u of UNITS) writeFileSync(join(d, u), renderUnit(u));
    const rt = join(d, 'runtime');
    mkdirSync(rt, { mode: 0o700 });
    const sys = spawnSync('systemd-analyze', ['verify', join(d, 'burrowd.service')], { encoding: 'utf8' });
    expect(sys.stderr).toBe('');
    expect(sys.status).toBe(0);
    const user = spawnSync('systemd-analyze', ['--user', 'verify', ...['burrow-agent.socket', 'burrow-agent.service', 'burrow-host.service'].map((u) => join(d, u))], {
      encoding: 'utf8',
      env: { ...process.env, XDG_RUNTIME_DIR: rt },
    });
    expect(user.stderr).toBe('');
    expect(user.status).toBe(0);
    expect(renderUnit('burrowd.service')).toContain(`ExecStart=${process.execPath} ${BURROWD} --host --host-backend sshd`);
  });

  it('system install without systemctl says so and prints the units', () => {
    const d = tmp();
    const r = spawnSync(BURROW, ['system', 'install', '--user', '--host'], { encoding: 'utf8', env: { ...process.env, PATH: d, HOME: d } });
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/systemctl is not available/);
    expect(r.stdout).toContain('# ' + join(d, '.config/systemd/user/burrow-agent.socket'));
    expect(r.stdout).toContain(`ExecStart=${process.execPath} ${BURROWD} --socket %t/burrow/agent.sock`);
    expect(existsSync(join(d, '.config/systemd/user'))).toBe(false);
  });

  it('system install writes the units, reloads and enables; uninstall reverses it', () => {
    // A recording stand-in for systemctl: what matters here is what burrow asks of it.
    const d = tmp();
    const bin = join(d, 'bin');
    mkdirSync(bin);
    const calls = join(d, 'calls');
    writeFileSync(join(bin, 'systemctl'), `#!/bin/sh\necho "$@" >> ${calls}\n`);
    chmodSync(join(bin, 'systemctl'), 0o755);
    const env = { ...process.env, PATH: `${bin}:${process.env['PATH']}`, HOME: d };
    const r = spawnSync(BURROW, ['system', 'install', '--user', '--host'], { encoding: 'utf8', env });
    expect(r.status).toBe(0);
    const unitDir = join(d, '.config/systemd/user');
    expect(readdirSync(unitDir).sort()).toEqual(['burrow-agent.service', 'burrow-agent.socket', 'burrow-host.service']);
    expect(readFileSync(calls, 'utf8')).toBe('--user daemon-reload\n--user enable --now burrow-agent.socket burrow-host.service\n');
    const u = spawnSync(BURROW, ['system', 'uninstall', '--user'], { encoding: 'utf8', env });
    expect(u.status).toBe(0);
    expect(readdirSync(unitDir)).toEqual([]);
    expect(readFileSync(calls, 'utf8')).toContain('--user disable --now burrow-agent.socket burrow-host.service\n--user daemon-reload\n');
  });
});

describe('systemd protocols', () => {
  it('accepts an inherited listening socket (LISTEN_FDS/LISTEN_PID) and a CLI talks to it', async () => {
    const d = tmp();
    const sock = join(d, 'activated.sock');
    // What systemd does: bind and listen, put the socket on fd 3, set LISTEN_PID to the pid that
    // will run burrowd, and exec it (python's execv keeps the pid).
    const launcher = [
      'import os, socket, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.bind(sys.argv[1]); s.listen(16)',
      'os.dup2(s.fileno(), 3); os.set_inheritable(3, True)',
      "os.environ['LISTEN_FDS'] = '1'; os.environ['LISTEN_PID'] = str(os.getpid())",
      'os.execv(sys.argv[2], sys.argv[2:])',
    ].join('\n');
    const p = spawn(PYTHON, ['-c', launcher, sock, process.execPath, BURROWD, '--state', join(d, 'state'), '--socket', sock, '--relay', 'disabled', '--bind', '127.0.0.1:0'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.push(p);
    let log = '';
    p.stderr!.on('data', (b: Buffer) => (log += b.toString()));
    await until(() => log.includes('"event":"ready"'), 15_000, 'ready');
    expect(log).toContain('socket_activated');
    const r = await runCli({ BURROW_SOCKET: sock, BURROW_NO_AUTOSTART: '1' }, ['status', '--json']);
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as { daemon: { pid: number } }).daemon.pid).toBe(p.pid);
    const exited = new Promise((res) => p.once('exit', res));
    p.kill('SIGTERM');
    await exited;
  });

  it('reports READY=1 once the socket accepts, and STOPPING=1 on SIGTERM', async () => {
    const d = tmp();
    const notifySock = join(d, 'notify.sock');
    const sink = datagramSink(notifySock);
    await sink.ready;
    const sock = join(d, 'agent.sock');
    const p = spawn(process.execPath, [BURROWD, '--state', join(d, 'state'), '--socket', sock, '--relay', 'disabled', '--bind', '127.0.0.1:0'], {
      env: { ...process.env, NOTIFY_SOCKET: notifySock },
      stdio: 'ignore',
    });
    children.push(p);
    await until(() => sink.messages.some((m) => m.includes('READY=1')), 15_000, 'READY=1');
    expect(sink.messages.find((m) => m.includes('READY=1'))).toContain(`MAINPID=${p.pid}`);
    // ready means ready: the socket answers
    const ok = await new Promise<boolean>((res) => {
      const c = connect(sock);
      c.once('connect', () => (c.destroy(), res(true)));
      c.once('error', () => res(false));
    });
    expect(ok).toBe(true);
    const exited = new Promise((res) => p.once('exit', res)); // before the signal: it may exit at once
    p.kill('SIGTERM');
    await until(() => sink.messages.some((m) => m.includes('STOPPING=1')), 10_000, 'STOPPING=1');
    expect(await exited).toBe(0);
    sink.proc.kill();
  });
});

describe('signals and configuration', () => {
  it('SIGHUP applies config.json and edited keys, and a live session survives', async () => {
    const agent = await startDaemon();
    const agentKey = endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim());
    const host = await startDaemon({ args: ['--host'] });
    host.authorizeKey(agentKey);
    const live = runCli(agent.cliEnv, ['exec', host.ticket, '--', 'sleep 1.5; echo survived']);
    await host.waitLog((l) => l.event === 'session_start');
    // allow an extra env name and authorize a second client's key, then reload
    writeFileSync(join(host.state, 'config.json'), JSON.stringify({ acceptEnv: ['BURROW_TEST_VAR'] }));
    const other = await startDaemon();
    host.authorizeKey(endpointKeyLine((await runCli(other.cliEnv, ['host', 'id'])).stdout.trim()));
    host.proc.kill('SIGHUP');
    await host.waitLog((l) => l.event === 'reloaded');
    expect((await live).stdout).toBe('survived\n');
    expect((await runCli(other.cliEnv, ['exec', host.ticket, '--', 'echo newly authorized'])).stdout).toBe('newly authorized\n');
    const env = await runCli({ ...agent.cliEnv, LANG: 'C', BURROW_TEST_VAR: 'x' }, ['exec', host.ticket, '--', 'echo "[$BURROW_TEST_VAR]"']);
    expect(env.stdout).toBe('[]\n'); // the CLI forwards only LANG/LC_*; the host now would accept it
    await other.stop();
  });

  it('SIGTERM during burrow exec: a clear message, exit 0 within the grace, no child left', async () => {
    const agent = await startDaemon();
    const host = await startDaemon({ args: ['--host', '--grace', '1'] });
    host.authorizeKey(endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim()));
    const marker = `burrow-grace-${process.pid}-${Date.now()}`;
    const running = runCli(agent.cliEnv, ['exec', host.ticket, '--', `exec -a ${marker} sleep 5`]);
    await host.waitLog((l) => l.event === 'session_start');
    const t0 = Date.now();
    const exited = new Promise<number | null>((r) => host.proc.once('exit', (c) => r(c)));
    host.proc.kill('SIGTERM');
    const code = await exited;
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(6000);
    const r = await running;
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/^burrow: Disconnected: .*host is shutting down/m);
    await until(() => spawnSync('pgrep', ['-f', marker]).status === 1, 8000, 'the remote process to be gone');
  });

  it('refuses bad config.json keys and values at start-up, naming them', async () => {
    const d = tmp();
    mkdirSync(join(d, 'state'), { mode: 0o700 });
    const start = (cfg: object): { status: number | null; stderr: string } => {
      writeFileSync(join(d, 'state', 'config.json'), JSON.stringify(cfg));
      const r = spawnSync(process.execPath, [BURROWD, '--state', join(d, 'state'), '--socket', join(d, 's.sock')], { encoding: 'utf8', timeout: 20_000 });
      return { status: r.status, stderr: r.stderr };
    };
    let r = start({ persits: 5 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown key "persits"/);
    r = start({ persist: 'soon' });
    expect(r.stderr).toMatch(/persist must be a number/);
    r = start({ maxSessions: 0 });
    expect(r.stderr).toMatch(/--max-sessions: "0" is not a whole number of at least 1/);
    r = start({ permitOpen: ['nonsense'] });
    expect(r.stderr).toMatch(/--permit-open: "nonsense"/);
  });
});

describe('burrow info', () => {
  it('returns plausible values for this machine', async () => {
    const agent = await startDaemon();
    const host = await startDaemon({ args: ['--host'] });
    host.authorizeKey(endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim()));
    const r = await runCli(agent.cliEnv, ['info', host.ticket, '--json']);
    expect(r.stderr).toBe('');
    const i = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(i['hostname']).toBe(hostname());
    expect(i['hostname']).toBe(execFileSync('hostname', { encoding: 'utf8' }).trim());
    expect(i['kernel']).toBe(execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim());
    expect(i['cpus']).toBeGreaterThan(0);
    expect(i['memTotalBytes']).toBeGreaterThan(i['memAvailableBytes'] as number);
    expect(i['uptimeSeconds']).toBeGreaterThan(0);
    const human = await runCli(agent.cliEnv, ['info', host.ticket]);
    expect(human.stdout).toMatch(/^hostname  /);
  });
});
