// burrow ssh and burrow exec: one session through the daemon, bytes both ways with backpressure,
// and the remote exit status as ours (128+N for signal N, like ssh).

import { constants as osConstants } from 'node:os';
import { exitCodeFor, type BurrowError } from '../../shared/errors.js';
import type { IpcConnection } from '../../shared/ipc/client.js';
import { spawn } from '../../shared/lib.js';
import { connectDaemon, endOnClosedStdout, usage, type CliContext } from '../context.js';
import { FORWARD_FLAGS, describeForward, requestForward, type ForwardType } from './forward.js';

export interface SessionSpec {
  target: string;
  /** undefined: a login shell. */
  command?: string;
  pty: boolean;
}

/** `ssh TARGET [-t|-T] [CMD...]`; options may come before or after TARGET, as with ssh. */
export async function sshCommand(ctx: CliContext, args: string[]): Promise<number> {
  let forcePty: boolean | undefined;
  let target: string | undefined;
  let noCommand = false;
  const forwards: { type: ForwardType; spec: string }[] = [];
  const rest: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (target !== undefined && rest.length > 0) {
      rest.push(a);
      continue;
    }
    const fwd = FORWARD_FLAGS[a];
    if (fwd) {
      const spec = args[++i];
      if (spec === undefined) usage(`burrow ssh: ${a} needs a spec`);
      forwards.push({ type: fwd, spec });
    } else if (a === '-t') forcePty = true;
    else if (a === '-T') forcePty = false;
    else if (a === '-N') noCommand = true;
    else if (a === '--') {
      rest.push(...args.slice(i + 1));
      break;
    } else if (a.startsWith('-') && target === undefined) usage(`burrow ssh: unknown option ${a}`);
    else if (target === undefined) target = a;
    else rest.push(a);
  }
  if (target === undefined) usage('usage: burrow ssh TARGET [-t|-T] [-N] [-L spec] [-R spec] [-D [bind:]port] [CMD...]');
  // Each forward is held by its own daemon connection: they all go when this process does.
  const held: IpcConnection[] = [];
  for (const f of forwards) {
    const h = await requestForward(ctx, target, f.type, f.spec, false);
    held.push(h.conn);
    process.stderr.write(`burrow: forwarding ${describeForward(h.status)}\n`);
  }
  if (noCommand) {
    if (forwards.length === 0) usage('burrow ssh -N: nothing to do without -L, -R or -D');
    // No command: hold the forwards until interrupted (or the daemon goes away).
    return new Promise((resolve) => {
      const stop = (): void => {
        for (const c of held) c.close();
        resolve(0);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      for (const c of held) c.once('close', () => resolve(255));
    });
  }
  const command = rest.length > 0 ? rest.join(' ') : undefined;
  // Like ssh: a PTY for an interactive shell on a terminal, or when asked with -t.
  const pty = forcePty ?? (command === undefined && process.stdin.isTTY === true);
  const code = await runSession(ctx, { target, ...(command !== undefined ? { command } : {}), pty });
  for (const c of held) c.close();
  return code;
}

/** `exec TARGET -- CMD...`: no PTY, stdout and stderr apart. */
export async function execCommand(ctx: CliContext, args: string[]): Promise<number> {
  const [target, sep, ...cmd] = args;
  const words = sep === '--' ? cmd : sep !== undefined ? [sep, ...cmd] : [];
  if (target === undefined || target.startsWith('-') || words.length === 0) usage('usage: burrow exec TARGET -- CMD...');
  return runSession(ctx, { target, command: words.join(' '), pty: false });
}

function signalExit(name: string): number {
  const n = (osConstants.signals as Record<string, number>)[`SIG${name.replace(/^SIG/, '')}`];
  return n !== undefined ? 128 + n : 255;
}

/** Turn `~.` and `~~` at the start of a line into a disconnect and a literal `~` (OpenSSH's escapes). */
class EscapeFilter {
  private atLineStart = true;
  private pendingTilde = false;

  /** Returns the bytes to send, and whether the user asked to disconnect. */
  filter(chunk: Buffer): { out: Buffer; disconnect: boolean } {
    const out: number[] = [];
    for (const b of chunk) {
      if (this.pendingTilde) {
        this.pendingTilde = false;
        if (b === 0x2e /* . */) return { out: Buffer.from(out), disconnect: true };
        if (b === 0x7e /* ~ */) {
          out.push(0x7e);
          this.atLineStart = false;
          continue;
        }
        out.push(0x7e); // not an escape: the tilde goes through with what follows
      } else if (this.atLineStart && b === 0x7e) {
        this.pendingTilde = true;
        continue;
      }
      out.push(b);
      this.atLineStart = b === 0x0d || b === 0x0a;
    }
    return { out: Buffer.from(out), disconnect: false };
  }
}

export async function runSession(ctx: CliContext, spec: SessionSpec): Promise<number> {
  const connection = await connectDaemon(ctx);
  const stdin = process.stdin;
  const stdout = process.stdout;
  const interactive = spec.pty && stdin.isTTY === true;
  const size = (): { cols: number; rows: number } => ({ cols: stdout.columns || 80, rows: stdout.rows || 24 });
  const env: Record<string, string> = {};
  for (const k of ['LANG', 'LC_ALL', 'LC_CTYPE', 'LC_MESSAGES']) {
    const v = process.env[k];
    if (v) env[k] = v;
  }
  const p = await spawn(spec.target, spec.command, {
    connection,
    env,
    ...(spec.pty ? { pty: { term: process.env['TERM'] || 'xterm-256color', ...size() } } : {}),
  });

  const restore: (() => void)[] = [];
  const cleanup = (): void => {
    for (const fn of restore.splice(0).reverse()) fn();
  };
  // Raw mode is restored on every way out, including a crash.
  process.once('exit', cleanup);
  if (interactive) {
    stdin.setRawMode(true);
    restore.push(() => stdin.setRawMode(false));
  }
  // Writes to a full terminal or pipe block (stdio is synchronous on Linux), which holds the session.
  endOnClosedStdout();
  p.stdout.on('data', (d: Buffer) => stdout.write(d));
  p.stderr.on('data', (d: Buffer) => process.stderr.write(d));

  return new Promise<number>((resolve) => {
    let finished = false;
    const finish = (code: number, message?: string): void => {
      if (finished) return;
      finished = true;
      cleanup();
      if (message) process.stderr.write(message);
      stdin.pause();
      stdin.unref?.();
      resolve(code);
    };
    p.once('exit', (code: number | null, signal: string | null) => finish(signal !== null ? signalExit(signal) : (code ?? 255)));
    p.once('error', (err: BurrowError) => finish(exitCodeFor(err.code), `${interactive ? '\r\n' : ''}burrow: ${err.code}: ${err.message}\n`));

    const escapes = interactive ? new EscapeFilter() : undefined;
    stdin.on('data', (chunk: Buffer) => {
      let data = chunk;
      if (escapes) {
        const r = escapes.filter(chunk);
        if (r.disconnect) {
          p.disconnect();
          return finish(255, `\r\nConnection to ${spec.target} closed.\r\n`);
        }
        data = r.out;
      }
      if (!p.stdin.write(data)) {
        stdin.pause();
        p.stdin.once('drain', () => stdin.resume());
      }
    });
    stdin.once('end', () => p.stdin.end());
    stdin.on('error', () => p.stdin.end());

    if (spec.pty && stdout.isTTY) {
      const onResize = (): void => p.resize(size().cols, size().rows);
      process.on('SIGWINCH', onResize);
      restore.push(() => process.off('SIGWINCH', onResize));
    }
    // Like ssh: TERM or HUP to us ends the session (the host hangs up the remote command) and us,
    // so `timeout` and a closing terminal can always end a session.
    for (const sig of ['SIGTERM', 'SIGHUP'] as const) {
      const h = (): void => {
        finish(128 + osConstants.signals[sig]);
        p.disconnect();
      };
      process.on(sig, h);
      restore.push(() => process.off(sig, h));
    }
    if (!interactive) {
      // Without a PTY, ^C here would only kill us; pass it on so the remote command decides. A
      // second one ends us here (128+N), for a remote that ignores it or a daemon that stopped reading.
      let seen = 0;
      const h = (): void => {
        if (seen++ > 0) {
          finish(128 + osConstants.signals.SIGINT);
          return p.disconnect();
        }
        p.kill('SIGINT');
      };
      process.on('SIGINT', h);
      restore.push(() => process.off('SIGINT', h));
    }
  });
}
