// The daemon's Unix socket: one session per client connection, hello first, then one request.
// Bad input gets an error frame and closes that connection only; every other client goes on.

import { createHash } from 'node:crypto';
import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { BurrowError, ErrorCodes, toBurrowError } from '../../shared/errors.js';
import { ensurePrivateDir } from '../../shared/fsutil.js';
import { FrameDecoder, encodeFrame } from '../../shared/ipc/codec.js';
import { PROTOCOL_VERSION, type Frame, type FrameOf } from '../../shared/ipc/frames.js';
import type { Logger } from '../log.js';

/** The requests a client may make, one per connection. */
export type RequestFrame = FrameOf<'exec'> | FrameOf<'shell'> | FrameOf<'proxy'> | FrameOf<'cp'> | FrameOf<'forward'> | FrameOf<'forwards'> | FrameOf<'forward_cancel'> | FrameOf<'info'> | FrameOf<'status'> | FrameOf<'check'> | FrameOf<'disconnect'> | FrameOf<'stop'> | FrameOf<'session_open'> | FrameOf<'sessions'> | FrameOf<'session_kill'>;
const REQUESTS = new Set<Frame['t']>(['exec', 'shell', 'proxy', 'cp', 'forward', 'forwards', 'forward_cancel', 'info', 'status', 'check', 'disconnect', 'stop', 'session_open', 'sessions', 'session_kill']);

/** One client's session as a request handler sees it. */
export interface IpcSession {
  readonly id: number;
  /** Send a frame; false when the socket's buffer is full (wait for onDrain). */
  send(f: Frame): boolean;
  /** Frames after the request (stdin, eof, resize, signal). */
  onFrame(fn: (f: Frame) => void): void;
  onDrain(fn: () => void): void;
  /** The client went away (or the session ended). */
  onClose(fn: () => void): void;
  /** Stop or start reading the client's frames (backpressure toward the client). */
  pause(): void;
  resume(): void;
  /** Send a final frame and end the session. */
  end(last?: Frame): void;
  fail(err: unknown): void;
  readonly closed: boolean;
}

export type RequestHandler = (req: RequestFrame, session: IpcSession) => void | Promise<void>;

export class IpcServer {
  private server: Server | undefined;
  private lock: Server | undefined;
  private readonly sessions = new Map<Socket, IpcSession>();
  /** Every open client socket, including sessions already ended but not yet closed by the client. */
  private readonly sockets = new Set<Socket>();
  private nextId = 1;
  private stopped: Promise<void> | undefined;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(
    private readonly path: string,
    private readonly handle: RequestHandler,
    private readonly log: Logger,
  ) {}

  /**
   * Take the single-instance lock, then listen. The lock is an abstract-namespace socket named
   * after the socket path: the kernel frees it when its owner dies, so there is no stale lock and
   * no race between two daemons replacing each other's socket file.
   */
  async listen(inherited?: Server): Promise<void> {
    this.lock = await listenLock(this.path);
    if (inherited) {
      this.server = inherited;
      inherited.on('connection', (s: Socket) => this.accept(s));
      return;
    }
    const dir = dirname(this.path);
    ensurePrivateDir(dir);
    if (existsSync(this.path)) {
      // We hold the lock, so whatever is there is stale (or not a socket at all).
      if (!lstatSync(this.path).isSocket()) throw new BurrowError(ErrorCodes.IoError, `${this.path} exists and is not a socket; refusing to replace it`);
      unlinkSync(this.path);
    }
    const server = createServer((s) => this.accept(s));
    const oldMask = process.umask(0o177); // the socket is created 0600, with no window of a looser mode
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
    chmodSync(this.path, 0o600);
    this.server = server;
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  private accept(sock: Socket): void {
    const id = this.nextId++;
    const decoder = new FrameDecoder();
    let stage: 'hello' | 'request' | 'stream' = 'hello';
    let closed = false;
    const frameListeners: ((f: Frame) => void)[] = [];
    // Frames that follow the request in the same chunk arrive before the (async) handler has
    // subscribed: they wait here rather than being dropped.
    const held: Frame[] = [];
    const closeListeners: (() => void)[] = [];
    const drainListeners: (() => void)[] = [];

    const session: IpcSession = {
      id,
      send: (f) => (closed ? false : sock.write(encodeFrame(f))),
      onFrame: (fn) => {
        frameListeners.push(fn);
        for (const f of held.splice(0)) fn(f);
      },
      onDrain: (fn) => drainListeners.push(fn),
      onClose: (fn) => (closed ? fn() : closeListeners.push(fn)),
      pause: () => sock.pause(),
      resume: () => sock.resume(),
      end: (last) => {
        if (closed) return;
        if (last) sock.write(encodeFrame(last));
        sock.end();
        markClosed();
      },
      fail: (err) => {
        const e = toBurrowError(err);
        session.end({ t: 'error', code: e.code, message: e.message });
      },
      get closed() {
        return closed;
      },
    };
    this.sessions.set(sock, session);
    this.sockets.add(sock);
    sock.once('close', () => this.sockets.delete(sock));
    const markClosed = (): void => {
      if (closed) return;
      closed = true;
      this.sessions.delete(sock);
      if (this.sessions.size === 0) for (const w of this.idleWaiters.splice(0)) w();
      for (const fn of closeListeners.splice(0)) fn();
    };
    const reject = (err: BurrowError): void => {
      this.log.warn({ event: 'ipc_bad_input', session: id, code: err.code, err: err.message }, 'closing IPC session on bad input');
      session.end({ t: 'error', code: err.code, message: err.message });
    };

    sock.on('data', (chunk: Buffer) => {
      for (const d of decoder.push(chunk)) {
        if (closed) return;
        if ('error' in d) return reject(d.error);
        const f = d.frame;
        if (stage === 'hello') {
          if (f.t !== 'hello') return reject(new BurrowError(ErrorCodes.UnexpectedFrame, `expected hello first, got ${f.t}`));
          if (f.v !== PROTOCOL_VERSION) {
            return reject(new BurrowError(ErrorCodes.VersionMismatch, `client speaks IPC version ${f.v}, daemon ${PROTOCOL_VERSION}: use the burrow that matches this burrowd`));
          }
          session.send({ t: 'hello', v: PROTOCOL_VERSION });
          stage = 'request';
        } else if (stage === 'request') {
          if (!REQUESTS.has(f.t)) return reject(new BurrowError(ErrorCodes.UnexpectedFrame, `expected a request, got ${f.t}`));
          stage = 'stream';
          Promise.resolve()
            .then(() => this.handle(f as RequestFrame, session))
            .catch((err: unknown) => session.fail(err));
        } else if (frameListeners.length === 0) {
          held.push(f);
        } else {
          for (const fn of frameListeners) fn(f);
        }
      }
    });
    sock.on('drain', () => {
      for (const fn of drainListeners) fn();
    });
    sock.on('error', () => markClosed());
    sock.on('end', () => {
      // A client that half-closes before its request is done gets no more.
      if (stage !== 'stream') sock.end();
    });
    sock.on('close', markClosed);
  }

  /** Take no new clients; those connected go on. */
  stopAccepting(): Promise<void> {
    this.stopped ??= new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    return this.stopped;
  }

  /** Resolves once no session is open. */
  idle(): Promise<void> {
    if (this.sessions.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Stop accepting, tell every live client why, and release the lock once all are gone. */
  async close(reason = 'daemon is shutting down'): Promise<void> {
    const closed = this.stopAccepting();
    for (const s of [...this.sessions.values()]) s.fail(new BurrowError(ErrorCodes.ShuttingDown, reason));
    // A client that does not read its last frame is not waited for.
    const stragglers = setTimeout(() => {
      for (const sock of this.sockets) sock.destroy();
    }, 2000);
    await closed;
    clearTimeout(stragglers);
    this.lock?.close();
  }
}

/** Listen on the abstract lock socket for `path`; fails with AlreadyRunning when another daemon holds it. */
function listenLock(path: string): Promise<Server> {
  const name = `\0burrow-lock-${createHash('sha256').update(path).digest('hex').slice(0, 32)}`;
  return new Promise((resolve, reject) => {
    const s = createServer((c) => c.destroy());
    s.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') reject(new BurrowError(ErrorCodes.AlreadyRunning, `another burrowd is already serving ${path}`));
      else reject(err);
    });
    s.listen(name, () => resolve(s));
  });
}

/** Write a client's stdin bytes into `to`; when it is full, stop reading the client until it drains. */
export function writeFromClient(session: IpcSession, to: NodeJS.WritableStream, data: Uint8Array): void {
  if (!to.write(data)) {
    session.pause();
    to.once('drain', () => session.resume());
  }
}
