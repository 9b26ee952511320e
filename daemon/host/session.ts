// One SSH session channel on the built-in host: exec or shell, with or without a PTY, as the
// serving user. Requests that arrive before exec/shell (pty-req, env) shape the process; those
// after it (window-change, signal) reach the running process.

import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as nodePty from '@lydell/node-pty';
import type { ServerChannel, Session, PseudoTtyInfo } from 'ssh2';
import type { Logger } from '../log.js';
import { serveSftp } from './sftp.js';
import { startCommand } from './spare.js';
import { hostInfo } from './info.js';
import { BOOT_ID_PREFIX, INFO_SUBSYSTEM, LONG_EXEC_SUBSYSTEM } from '../ssh/subsystems.js';
import { SSH_SIGNALS as SIGNALS, bareSignal } from '../../shared/signals.js';

/** The serving user's environment, plus what each session adds. */
export interface SessionUser {
  name: string;
  home: string;
  shell: string;
  path: string;
}

export interface SessionContext {
  user: SessionUser;
  /** Who is on the other end (its endpoint id), for the audit log and SSH_CLIENT. */
  remote: string;
  /** This host's endpoint id, for SSH_CONNECTION. */
  local?: string;
  /** Extra env names accepted besides LANG, LC_* and TERM. */
  acceptEnv: readonly string[];
  log: Logger;
  /** Register a running process so a dropped connection can hang it up. */
  track: (p: RunningProcess) => void;
  /** Further subsystems served on this connection (e.g. persistent sessions), by name. */
  subsystems?: Readonly<Record<string, (channel: ServerChannel) => void>>;
  /** The channel's first request that starts something (exec, shell, sftp, a subsystem): until then it is an idle channel opened ahead, not a session. */
  onStart?: () => void;
}

/** What a connection needs to hang up a process when it drops. */
export interface RunningProcess {
  readonly pid: number;
  readonly done: Promise<void>;
}

/**
 * The host's SSH software version. burrow_0.1 hosts lack exec@burrow; from burrow_0.2 on they
 * serve it; from burrow_0.3 on a session channel counts once a request starts it (spare channels).
 */
export const HOST_SOFTWARE = 'burrow_0.3';

/**
 * Said after the version in the host's SSH ident (a comment, which SSH clients ignore): new for
 * each start of the daemon. An agent whose request went out on a connection that then died asks
 * a new connection which host answers: another start cannot have run it, the same one may have.
 */
export const HOST_IDENT = `${HOST_SOFTWARE} ${BOOT_ID_PREFIX}${randomBytes(8).toString('hex')}`;
/** Longest command taken that way (as the agent's MAX_COMMAND, with room). */
const LONG_EXEC_MAX = 1024 * 1024;
// Linux refuses a single argv string over 128 KiB (MAX_ARG_STRLEN): a longer command goes to a
// POSIX shell in pieces it joins itself (the x keeps trailing newlines from $(...)), and the helper
// variable is gone before the command runs.
const ARG_PIECE = 64 * 1024;
const MAX_ARG_STRLEN = 128 * 1024 - 1;
const JOIN = '__burrow_cmd=$(printf %s "$@"; printf x); __burrow_cmd=${__burrow_cmd%x}; set --;';
const JOIN_AND_RUN = `${JOIN} eval "unset __burrow_cmd; $__burrow_cmd"`;
/** For a shell that is not sh: /bin/sh joins, then hands the whole command to the user's shell ($0). */
const JOIN_AND_HAND_ON = `${JOIN} exec "$0" -c "$__burrow_cmd"`;
const POSIX_SHELLS = new Set(['sh', 'bash', 'dash', 'ash', 'ksh', 'mksh', 'pdksh', 'zsh', 'yash', 'posh']);

/** The program and arguments that run `command` (or a login shell) as the user's shell would, whatever its length. */
export function shellCommand(shell: string, command: string | undefined): { file: string; args: string[] } {
  if (command === undefined) return { file: shell, args: ['-l'] };
  const bytes = Buffer.from(command);
  if (bytes.length <= ARG_PIECE) return { file: shell, args: ['-c', command] };
  const pieces: string[] = [];
  let off = 0;
  while (off < bytes.length) {
    let end = Math.min(off + ARG_PIECE, bytes.length);
    while (end < bytes.length && (bytes[end]! & 0xc0) === 0x80) end--; // never split a UTF-8 character
    pieces.push(bytes.subarray(off, end).toString());
    off = end;
  }
  // $0 stays the user's shell, as with a short command.
  if (POSIX_SHELLS.has(shell.slice(shell.lastIndexOf('/') + 1))) return { file: shell, args: ['-c', JOIN_AND_RUN, shell, ...pieces] };
  // Any other shell (fish, csh) takes it in one argument while that fits; past that only sh can run it.
  return { file: '/bin/sh', args: ['-c', bytes.length <= MAX_ARG_STRLEN ? JOIN_AND_HAND_ON : JOIN_AND_RUN, shell, ...pieces] };
}

// After a hang-up, a command that is still there this much later is killed.
const HANGUP_KILL_MS = 5000;

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

/** The foreground process group of a process's controlling terminal (tpgid in /proc/PID/stat), if any. */
function terminalForegroundGroup(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces: state ppid pgrp session tty_nr tpgid.
    const tpgid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[5]);
    return tpgid > 0 ? tpgid : undefined;
  } catch {
    return undefined;
  }
}

/** The command at the head of an exec@burrow channel (u32 length, UTF-8 bytes); what follows stays for the process's stdin. */
function readLongCommand(ch: ServerChannel): Promise<string> {
  return new Promise((resolve, reject) => {
    // Chunks kept as they come and joined once: a concat per packet is quadratic in the command's
    // length, and a client sending 1 MiB in tiny packets would stall every other session.
    const chunks: Buffer[] = [];
    let total = 0;
    let len: number | undefined;
    const onData = (d: Buffer): void => {
      chunks.push(d);
      total += d.length;
      if (len === undefined) {
        if (total < 4) return;
        const head = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
        chunks.length = 0;
        chunks.push(head);
        len = head.readUInt32BE(0);
        if (len > LONG_EXEC_MAX) return done(new Error(`command of ${len} bytes is over the limit of ${LONG_EXEC_MAX}`));
      }
      if (total < 4 + len) return;
      const got = Buffer.concat(chunks, total);
      done(undefined, got.subarray(4, 4 + len).toString(), got.subarray(4 + len));
    };
    const onEnd = (): void => done(new Error('the channel ended before its command'));
    const done = (err: Error | undefined, command?: string, rest?: Buffer): void => {
      ch.off('data', onData);
      ch.off('end', onEnd);
      ch.pause();
      if (err) return reject(err);
      if (rest && rest.length > 0) ch.unshift(rest);
      resolve(command ?? '');
    };
    ch.on('data', onData);
    ch.once('end', onEnd);
  });
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
    const name = bareSignal(info.name).toUpperCase();
    if (!proc || !SIGNALS.has(name)) return reject?.();
    killGroup(proc.pid, `SIG${name}` as NodeJS.Signals);
    accept?.();
  });
  const start = (channel: ServerChannel, command: string | undefined): void => {
    started = true;
    // What every session of this user from this remote gets; the session's env requests go over it.
    const baseEnv: Record<string, string> = {
      HOME: ctx.user.home,
      USER: ctx.user.name,
      LOGNAME: ctx.user.name,
      SHELL: ctx.user.shell,
      PATH: ctx.user.path,
      BURROW_REMOTE: ctx.remote,
      // As sshd sets them, with endpoint ids where sshd has addresses and 0 for the ports.
      SSH_CLIENT: `${ctx.remote} 0 0`,
      SSH_CONNECTION: `${ctx.remote} 0 ${ctx.local ?? '0'} 0`,
    };
    const run = shellCommand(ctx.user.shell, command);
    let args = run.args;
    const began = Date.now();
    const kind = command === undefined ? 'shell' : 'exec';
    const logged = { event: 'session_start', remote: ctx.remote, kind, command: command?.slice(0, 200), pty: pty !== undefined };
    ctx.log.info(logged, 'session start');
    let bytesIn = 0;
    let bytesOut = 0;
    let exited = false;
    /** Set once the process runs: what the client closing the channel does to it. */
    let hangUp: (() => void) | undefined;
    // Like sshd hanging up the PTY: a channel the client closed (~., terminal gone, client killed)
    // takes its process with it; the exit is then logged as usual.
    channel.once('close', () => {
      if (exited || !hangUp) return;
      ctx.log.info({ event: 'session_hangup', remote: ctx.remote, kind, pid: proc?.pid }, 'channel closed by the client: hanging up');
      hangUp();
    });
    const finish = (exit: { code: number } | { signal: string }): void => {
      exited = true;
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
      const childEnv: Record<string, string> = { ...baseEnv, ...env, TERM: pty.term };
      // SSH_TTY names the PTY, known only in the child: a small sh sets it, then becomes the shell.
      args = ['-c', 'SSH_TTY=$(tty) && export SSH_TTY; exec "$0" "$@"', run.file, ...args];
      const p = nodePty.spawn('/bin/sh', args, { name: pty.term, cols: pty.cols, rows: pty.rows, cwd: ctx.user.home, env: childEnv, encoding: null });
      proc = { pid: p.pid, resize: (c, r) => c > 0 && r > 0 && p.resize(c, r) };
      let resolveDone!: () => void;
      ctx.track({ pid: p.pid, done: new Promise<void>((r) => (resolveDone = r)) });
      hangUp = () => {
        // The shell's job in the foreground has a group of its own: it hears the hang-up too.
        const fg = terminalForegroundGroup(p.pid);
        // destroy(), absent from node-pty's typings, closes the PTY master: the kernel hangs up the terminal.
        (p as nodePty.IPty & { destroy(): void }).destroy();
        killGroup(p.pid, 'SIGHUP');
        if (fg !== undefined && fg !== p.pid) killGroup(fg, 'SIGHUP');
      };
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
        finish(name ? { signal: bareSignal(name) } : { code: exitCode });
      });
      return;
    }

    let child: ChildProcess;
    try {
      // Detached: the child leads its own process group, so signals reach everything it starts.
      child = startCommand({ file: run.file, args, cwd: ctx.user.home, base: baseEnv, extra: env });
    } catch (err) {
      channel.stderr.write(`burrow: cannot start ${ctx.user.shell}: ${(err as Error).message}\n`);
      finish({ code: 127 });
      return;
    }
    const pid = child.pid;
    proc = { pid: pid ?? -1, resize: () => undefined };
    const done = new Promise<void>((resolve) => child.once('close', () => resolve()));
    if (pid !== undefined) {
      ctx.track({ pid, done });
      hangUp = () => {
        killGroup(pid, 'SIGHUP');
        const kill = setTimeout(() => killGroup(pid, 'SIGKILL'), HANGUP_KILL_MS);
        void done.then(() => clearTimeout(kill));
      };
    }
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
      finish(signal ? { signal: bareSignal(signal) } : { code: code ?? 255 });
    });
  };

  // A channel carries one exec, shell, sftp or subsystem. ssh2's accept() answers a second with
  // nothing (no channel, no reply), so it is refused here; a client could otherwise crash the
  // daemon with a second exec on a started channel. Counted as a session once one is accepted.
  let taken = false;
  const take = <C>(accept: () => C | undefined, reject: (() => void) | undefined): C | undefined => {
    const ch = taken ? undefined : accept();
    if (ch === undefined) {
      reject?.();
      return undefined;
    }
    taken = true;
    ctx.onStart?.();
    return ch;
  };

  session.on('exec', (accept, reject, info) => {
    const ch = take(accept, reject);
    if (ch) start(ch, info.command);
  });
  session.on('shell', (accept, reject) => {
    const ch = take(accept, reject);
    if (ch) start(ch, undefined);
  });
  session.on('sftp', (accept, reject) => {
    const sftp = take(accept, reject);
    if (!sftp) return;
    ctx.log.info({ event: 'session_start', remote: ctx.remote, kind: 'sftp' }, 'session start');
    serveSftp(sftp, { home: ctx.user.home, remote: ctx.remote, log: ctx.log });
  });
  session.on('subsystem', (accept, reject, info) => {
    const known = info.name === LONG_EXEC_SUBSYSTEM || info.name === INFO_SUBSYSTEM || ctx.subsystems?.[info.name] !== undefined;
    if (!known) {
      ctx.log.info({ event: 'subsystem_refused', remote: ctx.remote, name: info.name }, 'subsystem refused');
      return reject?.();
    }
    if (info.name === LONG_EXEC_SUBSYSTEM) {
      if (started) return reject?.(); // after a pty-req's start, as before: one command per channel
      const ch = take(accept, reject);
      if (!ch) return;
      started = true; // no second exec on this channel, and no pty-req from now on
      readLongCommand(ch).then(
        (command) => {
          start(ch, command);
          ch.resume(); // paused while the command was read
        },
        (err: Error) => {
          ctx.log.warn({ event: 'session_refused', remote: ctx.remote, kind: 'exec', reason: err.message }, 'long command refused');
          ch.stderr.write(`burrow: ${err.message}\n`);
          ch.exit(255);
          ch.end();
        },
      );
      return;
    }
    const ch = take(accept, reject);
    if (!ch) return;
    const extra = ctx.subsystems?.[info.name];
    if (extra) return extra(ch);
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
  });
  session.on('auth-agent', (_accept, reject) => reject?.());
  session.on('x11', (_accept, reject) => reject?.());
  session.once('close', onClose);
}
