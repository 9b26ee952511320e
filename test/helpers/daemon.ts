// Start real burrowd processes for tests: temp state dir, loopback-only, offline iroh.

import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync, appendFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { packagePath } from '../../shared/package.js';
import { endpointKeyLine } from '../../shared/sshkey.js';

export const BURROWD = packagePath('bin/burrowd.js');
/** The CLI as users run it: bin/burrow, the native client that hands what it does not serve to Node. */
export const BURROW = packagePath('bin/burrow');
/** The Node CLI alone (what bin/burrow falls back to). */
export const BURROW_JS = packagePath('bin/burrow.js');

export interface LogLine {
  event?: string;
  msg?: string;
  [k: string]: unknown;
}

export interface RunningDaemon {
  proc: ChildProcess;
  dir: string;
  state: string;
  home: string;
  socket: string;
  endpointId: string;
  ticket: string;
  logs: LogLine[];
  /** Resolves once a log line matching the predicate appears (or rejects after ms). */
  waitLog(pred: (l: LogLine) => boolean, ms?: number): Promise<LogLine>;
  authorizeKey(line: string): void;
  authorizeEndpoint(id: string): void;
  stop(signal?: NodeJS.Signals, opts?: { keepDir?: boolean }): Promise<number | null>;
  /** Environment for CLI processes that talk to this daemon. */
  cliEnv: Record<string, string>;
}

export interface DaemonOpts {
  args?: string[];
  /** A command that execs the daemon, e.g. nsenter into a network namespace (a bench's isolated host). */
  prefix?: string[];
  /** Lines for state/authorized_endpoints written before start. */
  endpoints?: string[];
  /** Lines for state/authorized_keys written before start. */
  keys?: string[];
  env?: Record<string, string>;
  /** Reuse a directory from an earlier daemon (same state, so the same endpoint id). */
  dir?: string;
  /**
   * Default debug, which tests read. Benches that block their event loop (spawnSync) pass 'warn'
   * for hosts and 'info' for agents (whose start is seen by the ready line): the daemon's stderr
   * is a pipe this process drains, and a full pipe stalls the daemon's logging and so the daemon
   * (about 80 execs' worth of debug lines).
   */
  logLevel?: 'debug' | 'info' | 'warn';
}

const running = new Set<RunningDaemon>();

export async function startDaemon(opts: DaemonOpts = {}): Promise<RunningDaemon> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'burrow-test-'));
  const state = join(dir, 'state');
  const home = join(dir, 'home');
  mkdirSync(state, { recursive: true, mode: 0o700 });
  mkdirSync(join(home, '.ssh'), { recursive: true, mode: 0o700 });
  const socket = join(dir, 'agent.sock');
  if (opts.endpoints) writeFileSync(join(state, 'authorized_endpoints'), opts.endpoints.join('\n') + '\n', { mode: 0o600 });
  if (opts.keys) writeFileSync(join(state, 'authorized_keys'), opts.keys.join('\n') + '\n', { mode: 0o600 });
  const args = ['--state', state, '--socket', socket, '--relay', 'disabled', '--bind', '127.0.0.1:0', '--log-level', opts.logLevel ?? 'debug', ...(opts.args ?? [])];
  const argv = [...(opts.prefix ?? []), process.execPath, BURROWD, ...args];
  const proc = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, HOME: home, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  const waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  let stderrText = '';
  createInterface({ input: proc.stderr! }).on('line', (line) => {
    let l: LogLine;
    try {
      l = JSON.parse(line) as LogLine;
    } catch {
      stderrText += line + '\n';
      return;
    }
    logs.push(l);
    for (const w of [...waiters]) if (w.pred(l)) (waiters.splice(waiters.indexOf(w), 1), w.resolve(l));
  });
  const header: Record<string, string> = {};
  const wantsTicket = (opts.args ?? []).includes('--host');
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`burrowd did not start: ${stderrText}`)), 20_000);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`burrowd exited with ${code}: ${stderrText}`));
      });
      const rl = createInterface({ input: proc.stdout! });
      rl.on('line', (line) => {
        const m = /^([a-z-]+): (.*)$/.exec(line);
        if (m) header[m[1]!] = m[2]!;
        if (!wantsTicket || header['ticket']) {
          clearTimeout(timer);
          resolve();
        }
      });
      if (!wantsTicket) {
        const t = setInterval(() => {
          if (logs.some((l) => l.event === 'ready')) {
            clearInterval(t);
            clearTimeout(timer);
            resolve();
          }
        }, 20);
      }
    });
  } catch (err) {
    // A daemon that did not start (some tests expect that) leaves nothing behind.
    if (proc.exitCode === null) proc.kill('SIGKILL');
    if (!opts.dir) rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  proc.removeAllListeners('exit');
  const d: RunningDaemon = {
    proc,
    dir,
    state,
    home,
    socket,
    endpointId: header['endpoint-id'] ?? '',
    ticket: header['ticket'] ?? '',
    logs,
    waitLog(pred, ms = 10_000) {
      const found = logs.find(pred);
      if (found) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const w = { pred, resolve };
        waiters.push(w);
        setTimeout(() => reject(new Error(`no matching log line within ${ms} ms; saw events: ${logs.map((l) => l.event).join(',')}`)), ms);
      });
    },
    authorizeKey(line) {
      appendFileSync(join(state, 'authorized_keys'), line + '\n', { mode: 0o600 });
    },
    authorizeEndpoint(id) {
      appendFileSync(join(state, 'authorized_endpoints'), id + '\n', { mode: 0o600 });
    },
    cliEnv: { BURROW_SOCKET: socket, BURROW_STATE: state, BURROW_NO_AUTOSTART: '1', HOME: home },
    async stop(signal = 'SIGTERM', stopOpts = {}) {
      running.delete(d);
      let code: number | null = proc.exitCode;
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
        proc.kill(signal);
        const killer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        code = await exited;
        clearTimeout(killer);
      }
      if (!stopOpts.keepDir) rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
  running.add(d);
  return d;
}

/** Stop every daemon a test file started and did not stop itself. */
export async function stopAllDaemons(): Promise<void> {
  await Promise.all([...running].map((d) => d.stop()));
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run the real CLI as a process: bin/burrow, or the Node CLI alone with `node: true`. */
export function runCli(env: Record<string, string>, args: string[], opts: { input?: string | Buffer; timeoutMs?: number; node?: boolean; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const [cmd, argv] = opts.node ? [process.execPath, [BURROW_JS, ...args]] : [BURROW, args];
    const p = spawn(cmd, argv, { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'], ...(opts.cwd ? { cwd: opts.cwd } : {}) });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    p.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
    p.stdin.on('error', () => undefined);
    p.stdin.end(opts.input);
  });
}

/** A UDP port free on loopback now, for a daemon's iroh bind. */
export function freeUdpPort(family: 'udp4' | 'udp6' = 'udp4'): Promise<number> {
  return new Promise((resolve) => {
    const s = createSocket(family);
    s.bind(0, family === 'udp4' ? '127.0.0.1' : '::1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

/** An agent daemon and a host daemon that authorizes the agent's endpoint; agentId is that endpoint. */
export async function hostAndAgent(hostArgs: string[] = [], agentArgs: string[] = [], hostDir?: string): Promise<{ host: RunningDaemon; agent: RunningDaemon; agentId: string }> {
  const agent = await startDaemon({ args: agentArgs });
  const agentId = (await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim();
  const host = await startDaemon({ args: ['--host', ...hostArgs], ...(hostDir ? { dir: hostDir } : {}) });
  host.authorizeKey(endpointKeyLine(agentId));
  return { host, agent, agentId };
}
