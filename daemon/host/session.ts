// One SSH session channel on the built-in host: exec or shell, with or without a PTY, as the
// serving user. Requests that arrive before exec/shell (pty-req, env) shape the process; those
// after it (window-change, signal) reach the running process.

import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { constants as osConstants } from 'node:os';
import * as nodePty from '@lydell/node-pty';
import type { ServerChannel, Session, PseudoTtyInfo } from 'ssh2';
import type { Logger } from '../log.js';
import { serveSftp } from './sftp.js';
import { INFO_SUBSYSTEM, hostInfo } from './info.js';

/** The serving user's environment, plus what each session adds. */
export interface SessionUser {
  name: string;
  home: string;
  shell: string;
  path: string;
}

export interface SessionContext {
  user: SessionUser;
  /** Who is on the other end, for the audit log. */
  remote: string;
  /** Extra env names accepted besides LANG, LC_* and TERM. */
  acceptEnv: readonly string[];
  log: Logger;
  /** Register a running process so a dropped connection can hang it up. */
  track: (p: RunningProcess) => void;
  /** Further subsystems served on this connection (e.g. persistent sessions), by name. */
  subsystems?: Readonly<Record<string, (channel: ServerChannel) => void>>;
}

/** What a connection needs to hang up a process when it drops. */
export interface RunningProcess {
  readonly pid: number;
  readonly done: Promise<void>;
}

// RFC 4254 §6.10: the signal names a client may send.
const SIGNALS = new Set(['ABRT', 'ALRM', 'FPE', 'HUP', 'ILL', 'INT', 'KILL', 'PIPE', 'QUIT', 'SEGV', 'TERM', 'USR1', 'USR2']);

const signalName = (n: number): string | undefined => Object.entries(osConstants.signals).find(([, v]) => v === n)?.[0];

export function envAllowed(name: string, extra: readonly string[]): boolean {
  return name === 'LANG' || name === 'TERM' || name.startsWith('LC_') || extra.includes(name);
}

interface Pty {
  term: string;
  cols: number;
  rows: number;
}

/** Send a signal to a process group, ignoring one that is already gone. */
export function killGroup(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // gone
    }
  }
}

export function serveSession(session: Session, ctx: SessionContext, onClose: () => void): void {
  let pty: Pty | undefined;
  const env: Record<string, string> = {};
  let proc: { resize(cols: number, rows: number): void; pid: number } | undefined;
  let started = false;

  session.on('pty', (accept, reject, info: PseudoTtyInfo) => {
    if (started) return reject?.();
    pty = { term: env['TERM'] ?? 'xterm', cols: info.cols || 80, rows: info.rows || 24 };
    // ssh2 passes the terminal type in the pty info as `term`, absent from its typings.
    const term = (info as PseudoTtyInfo & { term?: string }).term;
    if (term) pty.term = term;
    accept?.();
  });
  session.on('env', (accept, reject, info) => {
    if (!started && envAllowed(info.key, ctx.acceptEnv)) {
      env[info.key] = info.val;
      accept?.();
    } else {
      ctx.log.debug({ event: 'env_ignored', remote: ctx.remote, name: info.key }, 'env request ignored');
      reject?.();
    }
  });
  session.on('window-change', (accept, _reject, info) => {
    if (pty) {
      pty.cols = info.cols || pty.cols;
      pty.rows = info.rows || pty.rows;
    }
    proc?.resize(info.cols, info.rows);
    accept?.();
  });
  session.on('signal', (accept, reject, info) => {
    const name = info.name.replace(/^SIG/, '').toUpperCase();
    if (!proc || !SIGNALS.has(name)) return reject?.();
    killGroup(proc.pid, `SIG${name}` as NodeJS.Signals);
    accept?.();
  });
  const start = (channel: ServerChannel, command: string | undefined): void => {
    started = true;
    const childEnv: Record<string, string> = {
      HOME: ctx.user.home,
      USER: ctx.user.name,
      LOGNAME: ctx.user.name,
      SHELL: ctx.user.shell,
      PATH: ctx.user.path,
      BURROW_REMOTE: ctx.remote,
      ...env,
    };
    const args = command === undefined ? ['-l'] : ['-c', command];
    const began = Date.now();
    const kind = command === undefined ? 'shell' : 'exec';
    const logged = { event: 'session_start', remote: ctx.remote, kind, command: command?.slice(0, 200), pty: pty !== undefined };
    ctx.log.info(logged, 'session start');
    let bytesIn = 0;
    let bytesOut = 0;
    const finish = (exit: { code: number } | { signal: string }): void => {
      try {
        if ('code' in exit) channel.exit(exit.code);
        else if (SIGNALS.has(exit.signal)) channel.exit(exit.signal, false, '');
        // SSH names only RFC 4254's signals (ssh2 refuses others): for the rest, what a shell
        // reports, 128+N, rather than a session that ends with no status at all.
        else channel.exit(128 + ((osConstants.signals as Record<string, number>)[`SIG${exit.signal}`] ?? 0));
      } catch {
        // channel already closed by the client
      }
      channel.end();
      ctx.log.info({ ...logged, event: 'session_end', ...exit, bytesIn, bytesOut, durationMs: Date.now() - began }, 'session end');
    };
    channel.on('data', (d: Buffer) => (bytesIn += d.length));

    if (pty) {
      childEnv['TERM'] = pty.term;
      const p = nodePty.spawn(ctx.user.shell, args, { name: pty.term, cols: pty.cols, rows: pty.rows, cwd: ctx.user.home, env: childEnv, encoding: null });
      proc = { pid: p.pid, resize: (c, r) => c > 0 && r > 0 && p.resize(c, r) };
      let resolveDone!: () => void;
      ctx.track({ pid: p.pid, done: new Promise<void>((r) => (resolveDone = r)) });
      // PTY output is raw bytes (encoding: null); a full channel window pauses the PTY.
      p.onData((d: string | Buffer) => {
        const b = typeof d === 'string' ? Buffer.from(d) : d;
        bytesOut += b.length;
        if (!channel.write(b)) {
          p.pause();
          channel.once('drain', () => p.resume());
        }
      });
      channel.on('data', (d: Buffer) => p.write(d as unknown as string));
      p.onExit(({ exitCode, signal }) => {
        resolveDone();
        const name = signal ? signalName(signal) : undefined;
        finish(name ? { signal: name.replace(/^SIG/, '') } : { code: exitCode });
      });
      return;
    }

    let child: ChildProcess;
    try {
      // detached: the child leads its own process group, so signals reach everything it starts.
      child = spawnChild(ctx.user.shell, args, { cwd: ctx.user.home, env: childEnv, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (err) {
      channel.stderr.write(`burrow: cannot start ${ctx.user.shell}: ${(err as Error).message}\n`);
      finish({ code: 127 });
      return;
    }
    const pid = child.pid;
    proc = { pid: pid ?? -1, resize: () => undefined };
    const done = new Promise<void>((resolve) => child.once('close', () => resolve()));
    if (pid !== undefined) ctx.track({ pid, done });
    child.stdout?.on('data', (d: Buffer) => (bytesOut += d.length));
    child.stderr?.on('data', (d: Buffer) => (bytesOut += d.length));
    // end: false — exit-status must go out before the channel ends, or it and late stderr are lost.
    child.stdout?.pipe(channel, { end: false });
    child.stderr?.pipe(channel.stderr, { end: false });
    channel.pipe(child.stdin!);
    child.stdin?.on('error', () => undefined); // EPIPE when the command does not read its stdin
    child.once('error', (err) => {
      channel.stderr.write(`burrow: cannot start ${ctx.user.shell}: ${err.message}\n`);
    });
    child.once('close', (code, signal) => {
      channel.unpipe(child.stdin!);
      finish(signal ? { signal: signal.replace(/^SIG/, '') } : { code: code ?? 255 });
    });
  };

  session.on('exec', (accept, _reject, info) => start(accept(), info.command));
  session.on('shell', (accept) => start(accept(), undefined));
  session.on('sftp', (accept) => {
    ctx.log.info({ event: 'session_start', remote: ctx.remote, kind: 'sftp' }, 'session start');
    serveSftp(accept(), { home: ctx.user.home, remote: ctx.remote, log: ctx.log });
  });
  session.on('subsystem', (accept, reject, info) => {
    const extra = ctx.subsystems?.[info.name];
    if (extra) return extra(accept());
    if (info.name === INFO_SUBSYSTEM) {
      const ch = accept();
      hostInfo().then(
        (i) => {
          ch.write(JSON.stringify(i));
          ch.exit(0);
          ch.end();
        },
        (err: unknown) => {
          ch.stderr.write(`burrow: cannot gather host info: ${(err as Error).message}\n`);
          ch.exit(1);
          ch.end();
        },
      );
      return;
    }
    ctx.log.info({ event: 'subsystem_refused', remote: ctx.remote, name: info.name }, 'subsystem refused');
    reject();
  });
  session.on('auth-agent', (_accept, reject) => reject?.());
  session.on('x11', (_accept, reject) => reject?.());
  session.once('close', onClose);
}
