// The library API for Node programs, shaped like child_process: exec() collects, spawn() streams,
// status() reads the daemon; execMany() (shared/fleet.ts) runs one command on many hosts. The
// CLI's ssh and exec commands are built on spawn() too.

import { EventEmitter } from 'node:events';
import { PassThrough, Writable, type Readable } from 'node:stream';
import { BurrowError, ErrorCodes } from './errors.js';
import { IpcConnection } from './ipc/client.js';
import { MAX_CHUNK, MAX_COMMAND, errorFromFrame, type Frame, type FrameOf } from './ipc/frames.js';
import { socketPath } from './paths.js';
import type { DaemonStatusReport } from './status.js';
import { bareSignal } from './signals.js';

/** The locale every session passes on, the host's built-in allowlist: LANG and every LC_*. */
export const LocaleEnv = { name: 'LANG', prefix: 'LC_' } as const;

export function isLocaleEnv(name: string): boolean {
  return name === LocaleEnv.name || name.startsWith(LocaleEnv.prefix);
}

export interface SessionOptions {
  /** The daemon's socket; default as burrow finds it ($BURROW_SOCKET, ...). */
  socket?: string;
  /** Environment for the remote command (the host accepts LANG, LC_* and what it allows). */
  env?: Record<string, string>;
  /** Ask for a PTY: output then comes on stdout only, as a terminal would show it. A login shell
   * gets one unless this is `false` (like ssh -T). */
  pty?: { term?: string; cols?: number; rows?: number } | false;
  /** An already open daemon connection to use (the CLI passes the one it made). */
  connection?: IpcConnection;
  /** Give up reaching the host after this many ms (default: the daemon's), like ssh -o ConnectTimeout. */
  connectTimeoutMs?: number;
  /** End the command once it has run this many ms (TERM, and the channel closed, which a burrow host takes as a hang-up); exec only. Ends in a CommandTimeout error. */
  timeoutMs?: number;
}

export interface ExecResult {
  stdout: Buffer;
  stderr: Buffer;
  /** The remote exit status, or null when the process died of a signal. */
  code: number | null;
  /** The signal name without SIG (e.g. "TERM"), or null. */
  signal: string | null;
}

/**
 * A remote process. Events: 'exit' (code, signal) once the remote process ended; 'error'
 * (BurrowError) when the daemon or connection failed instead.
 */
export class BurrowProcess extends EventEmitter {
  readonly stdin: Writable;
  readonly stdout: Readable = new PassThrough();
  readonly stderr: Readable = new PassThrough();
  private ended = false;

  constructor(
    private readonly conn: IpcConnection,
    request: FrameOf<'exec'> | FrameOf<'shell'> | FrameOf<'proxy'>,
  ) {
    super();
    const send = (f: Frame, cb: (err?: Error | null) => void): void => {
      if (this.ended) return cb();
      if (conn.send(f)) cb();
      else conn.once('drain', () => cb());
    };
    this.stdin = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        // Frames carry at most MAX_CHUNK bytes of data each.
        if (chunk.length <= MAX_CHUNK) return send({ t: 'stdin', data: chunk }, cb);
        let off = 0;
        const next = (err?: Error | null): void => {
          if (err || off >= chunk.length) return cb(err);
          const part = chunk.subarray(off, off + MAX_CHUNK);
          off += MAX_CHUNK;
          send({ t: 'stdin', data: part }, next);
        };
        next();
      },
      final: (cb) => send({ t: 'eof' }, cb),
    });
    this.stdin.on('error', () => undefined);
    conn.on('frame', (f: Frame) => this.onFrame(f));
    conn.on('close', (err?: BurrowError) => this.finish(undefined, err ?? new BurrowError(ErrorCodes.Disconnected, 'the daemon closed the session')));
    conn.send(request);
  }

  private onFrame(f: Frame): void {
    switch (f.t) {
      case 'stdout':
      case 'stderr': {
        // A slow reader of our output holds the daemon, which holds the SSH channel.
        const out = (f.t === 'stdout' ? this.stdout : this.stderr) as PassThrough;
        if (!out.write(f.data)) {
          this.conn.pause();
          out.once('drain', () => this.conn.resume());
        }
        return;
      }
      case 'exit':
        return this.finish({ code: f.signal !== undefined ? null : (f.code ?? null), signal: f.signal ?? null });
      case 'error':
        return this.finish(undefined, errorFromFrame(f));
      default:
        return this.finish(undefined, new BurrowError(ErrorCodes.UnexpectedFrame, `daemon sent ${f.t} during a session`));
    }
  }

  private finish(exit: { code: number | null; signal: string | null } | undefined, err?: BurrowError): void {
    if (this.ended) return;
    this.ended = true;
    (this.stdout as PassThrough).end();
    (this.stderr as PassThrough).end();
    this.conn.close();
    if (exit) this.emit('exit', exit.code, exit.signal);
    else this.emit('error', err);
  }

  /** Send a signal (e.g. "INT", "TERM") to the remote process. */
  kill(signal = 'TERM'): void {
    if (!this.ended) this.conn.send({ t: 'signal', name: bareSignal(signal) });
  }

  /** Tell the remote PTY its new size. */
  resize(cols: number, rows: number): void {
    if (!this.ended) this.conn.send({ t: 'resize', cols, rows });
  }

  /** Drop the session without waiting for the remote process. */
  disconnect(): void {
    this.finish(undefined, new BurrowError(ErrorCodes.Disconnected, 'disconnected by request'));
  }
}

/** Start `command` on `target` (or a login shell when command is undefined); stream its I/O. */
export async function spawn(target: string, command: string | undefined, opts: SessionOptions = {}): Promise<BurrowProcess> {
  const bytes = command === undefined ? 0 : Buffer.byteLength(command);
  if (bytes > MAX_COMMAND) {
    opts.connection?.close();
    throw new BurrowError(ErrorCodes.BadArgument, `the command is ${bytes} bytes; burrow sends commands of up to ${MAX_COMMAND} bytes (pass more as stdin)`);
  }
  const conn = opts.connection ?? (await IpcConnection.connect({ socket: opts.socket ?? socketPath() }));
  const pty = opts.pty ? { term: opts.pty.term ?? 'xterm-256color', cols: opts.pty.cols ?? 80, rows: opts.pty.rows ?? 24 } : undefined;
  const env = opts.env ? { env: opts.env } : {};
  const within = opts.connectTimeoutMs !== undefined ? { connectTimeout: opts.connectTimeoutMs } : {};
  const limit = opts.timeoutMs !== undefined ? { timeout: opts.timeoutMs } : {};
  const request: FrameOf<'exec'> | FrameOf<'shell'> =
    command === undefined
      ? { t: 'shell', target, ...(pty ?? {}), ...(opts.pty === false ? { pty: false } : {}), ...env, ...within }
      : { t: 'exec', target, command, ...(pty ? { pty: true, ...pty } : {}), ...env, ...within, ...limit };
  return new BurrowProcess(conn, request);
}

/**
 * A raw byte stream to TARGET's SSH server (what `ssh -o ProxyCommand` needs): stdin and stdout
 * carry the SSH protocol itself; 'exit' with code 0 when the server closed the stream.
 */
export async function openProxy(target: string, opts: { socket?: string; connection?: IpcConnection } = {}): Promise<BurrowProcess> {
  const conn = opts.connection ?? (await IpcConnection.connect({ socket: opts.socket ?? socketPath() }));
  return new BurrowProcess(conn, { t: 'proxy', target });
}

/** Run `command` on `target` and collect its output; rejects only when the daemon or connection failed. */
export async function exec(target: string, command: string, opts: SessionOptions & { stdin?: string | Uint8Array } = {}): Promise<ExecResult> {
  const p = await spawn(target, command, opts);
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  p.stdout.on('data', (d: Buffer) => out.push(d));
  p.stderr.on('data', (d: Buffer) => err.push(d));
  p.stdin.end(opts.stdin);
  return new Promise((resolve, reject) => {
    p.once('exit', (code: number | null, signal: string | null) => resolve({ stdout: Buffer.concat(out), stderr: Buffer.concat(err), code, signal }));
    p.once('error', reject);
  });
}

/** The daemon's status: itself and every held connection. */
export async function status(opts: { socket?: string } = {}): Promise<DaemonStatusReport> {
  const c = await IpcConnection.connect({ socket: opts.socket ?? socketPath() });
  return c.request({ t: 'status' });
}
