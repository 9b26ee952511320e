// The daemon's Unix socket: one session per client connection, hello first, then one request.
// Bad input gets an error frame and closes that connection only; every other client goes on.

import { chmodSync, lstatSync, mkdirSync, rmdirSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { BurrowError, ErrorCodes, boundedMessage, toBurrowError } from '../../shared/errors.js';
import { FrameDecoder, encodeFrame } from '../../shared/ipc/codec.js';
import { MAX_CHUNK, MAX_FRAME, PROTOCOL_VERSION, isRequest, mayFollow, type Frame, type RequestFrame, type RequestType } from '../../shared/ipc/frames.js';
import { checkSocketFile, prepareSocketDir } from '../../shared/paths.js';
import type { Logger } from '../log.js';

// The requests, and the frames each may be followed by, are the frame table's (shared/ipc/frames.ts).
export type { RequestFrame };

/**
 * What one client may hold (SECURITY.md). A client of the same user could always ask the daemon
 * for anything; these keep a broken or hostile one from taking its memory or its sockets.
 */
export const IpcLimits = {
  /** Open connections; the next one gets an IpcLimit error. */
  maxConnections: 512,
  /** From accept to the client's hello. */
  helloMs: 5000,
  /** Before the request runs, a frame that has begun must be whole within this. */
  frameMs: 10_000,
  /** A hello is a few bytes. */
  maxHelloFrame: 1024,
  /**
   * During a session only stdin, eof, resize and signal come: a data chunk and its envelope. So a
   * client stopped mid-frame (^Z) holds little, and needs no timeout to be let go.
   */
  maxStreamFrame: MAX_CHUNK + 1024,
  /** Frames read before the handler takes them; beyond this the socket is not read. */
  maxHeld: 64 * 1024,
  /**
   * Partial frames of clients whose request has not run yet (only these may be large), over all
   * connections; a connection that would go over is closed. Memory the daemon frees goes back to
   * its allocator, not always to the system, so this caps the high-water mark.
   */
  maxEarlyTotal: 16 * 1024 * 1024,
} as const;

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
  /** End the session with an error frame; never throws. */
  fail(err: unknown): void;
  readonly closed: boolean;
}

export type RequestHandler = (req: RequestFrame, session: IpcSession) => void | Promise<void>;

export class IpcServer {
  private server: Server | undefined;
  private readonly sessions = new Map<Socket, IpcSession>();
  /** Every open client socket, including sessions already ended but not yet closed by the client. */
  private readonly sockets = new Set<Socket>();
  private nextId = 1;
  private stopped: Promise<void> | undefined;
  private readonly idleWaiters: (() => void)[] = [];
  /** Bytes read from clients and not yet handed on, over all connections. */
  private buffered = 0;
  /** The part of that held by clients whose request has not run yet. */
  private early = 0;

  constructor(
    private readonly path: string,
    private readonly handle: RequestHandler,
    private readonly log: Logger,
  ) {}

  /**
   * Check the socket's directory, then bind: the bound socket is the single-instance lock (a
   * live one answers; a stale one refuses and is replaced). Under socket activation systemd owns
   * the path and hands us the listener.
   */
  async listen(inherited?: Server): Promise<void> {
    if (inherited) {
      this.server = inherited;
      inherited.on('connection', (s: Socket) => this.accept(s));
      return;
    }
    prepareSocketDir(this.path);
    this.server = await bindSocket(this.path, (s) => this.accept(s));
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Bytes read from clients and not yet handed on (decoder and held frames), for tests and status. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  private accept(sock: Socket): void {
    if (this.sockets.size >= IpcLimits.maxConnections) {
      this.log.warn({ event: 'ipc_limit', connections: this.sockets.size }, 'refusing an IPC connection: too many open');
      sock.on('error', () => undefined);
      sock.end(encodeFrame({ t: 'error', code: ErrorCodes.IpcLimit, message: `the daemon has ${IpcLimits.maxConnections} IPC connections open; try again when some have ended` }));
      setTimeout(() => sock.destroy(), 2000).unref();
      return;
    }
    const id = this.nextId++;
    const decoder = new FrameDecoder();
    decoder.maxFrame = IpcLimits.maxHelloFrame;
    let stage: 'hello' | 'request' | 'stream' = 'hello';
    let request: RequestType | undefined;
    let closed = false;
    const frameListeners: ((f: Frame) => void)[] = [];
    // Frames that follow the request arrive before the (async) handler has subscribed: they wait
    // here rather than being dropped, up to maxHeld; then the socket is not read until it does.
    const held: Frame[] = [];
    let heldBytes = 0;
    let pausedByHandler = false;
    // What this connection counts in this.buffered and this.early.
    let counted = 0;
    let countedEarly = 0;
    const closeListeners: (() => void)[] = [];
    const drainListeners: (() => void)[] = [];
    let timer: NodeJS.Timeout | undefined;

    const recount = (): void => {
      const now = decoder.pending + heldBytes;
      this.buffered += now - counted;
      counted = now;
      const early = stage === 'stream' ? 0 : decoder.pending;
      this.early += early - countedEarly;
      countedEarly = early;
    };
    const write = (f: Frame): boolean => sock.write(encodeFrame(f));
    const session: IpcSession = {
      id,
      send: (f) => (closed ? false : write(f)),
      onFrame: (fn) => {
        frameListeners.push(fn);
        const waiting = held.splice(0);
        heldBytes = 0;
        recount();
        for (const f of waiting) deliver(fn, f);
        if (!pausedByHandler && !closed) sock.resume();
      },
      onDrain: (fn) => drainListeners.push(fn),
      onClose: (fn) => (closed ? fn() : closeListeners.push(fn)),
      pause: () => {
        pausedByHandler = true;
        sock.pause();
      },
      resume: () => {
        pausedByHandler = false;
        if (heldBytes <= IpcLimits.maxHeld) sock.resume();
      },
      end: (last) => {
        if (closed) return;
        if (last) {
          try {
            write(last);
          } catch (err) {
            // A frame that cannot be encoded (too large) becomes an error the client can read.
            const e = toBurrowError(err);
            write({ t: 'error', code: e.code, message: boundedMessage(`cannot send ${last.t}: ${e.message}`) });
          }
        }
        sock.end();
        markClosed();
      },
      fail: (err) => {
        const e = toBurrowError(err);
        session.end({ t: 'error', code: e.code, message: boundedMessage(e.message) });
      },
      get closed() {
        return closed;
      },
    };
    // A throwing listener (a handler's bug, or a library throwing on bad input) ends this session only.
    const deliver = (fn: (f: Frame) => void, f: Frame): void => {
      try {
        fn(f);
      } catch (err) {
        this.log.warn({ event: 'ipc_handler_error', session: id, frame: f.t, err: toBurrowError(err).message }, 'session failed on a frame');
        session.fail(err);
      }
    };
    this.sessions.set(sock, session);
    this.sockets.add(sock);
    const markClosed = (): void => {
      if (closed) return;
      closed = true;
      disarm();
      held.length = 0;
      heldBytes = 0;
      this.sessions.delete(sock);
      if (this.sessions.size === 0) for (const w of this.idleWaiters.splice(0)) w();
      for (const fn of closeListeners.splice(0)) {
        try {
          fn();
        } catch (err) {
          this.log.warn({ event: 'ipc_handler_error', session: id, err: toBurrowError(err).message }, 'close listener failed');
        }
      }
    };
    sock.once('close', () => {
      this.sockets.delete(sock);
      // Nothing this connection read is held any more.
      this.buffered -= counted;
      this.early -= countedEarly;
      counted = countedEarly = 0;
    });
    const reject = (err: BurrowError): void => {
      this.log.warn({ event: 'ipc_bad_input', session: id, code: err.code, err: boundedMessage(err.message) }, 'closing IPC session on bad input');
      session.fail(err);
      // Nothing more is read (or allocated for it); a client that neither reads nor closes does not keep the socket.
      sock.pause();
      setTimeout(() => sock.destroy(), 2000).unref();
    };
    // Until the request runs, a client is on a clock: hello first, then each frame it begins.
    const arm = (ms: number, why: string): void => {
      clearTimeout(timer);
      timer = setTimeout(() => reject(new BurrowError(ErrorCodes.IpcLimit, why)), ms);
    };
    const disarm = (): void => {
      clearTimeout(timer);
      timer = undefined;
    };
    arm(IpcLimits.helloMs, `no hello within ${IpcLimits.helloMs} ms`);

    const onFrame = (f: Frame, size: number): void => {
      if (stage === 'hello') {
        if (f.t !== 'hello') return reject(new BurrowError(ErrorCodes.UnexpectedFrame, `expected hello first, got ${f.t}`));
        if (f.v !== PROTOCOL_VERSION) {
          return reject(new BurrowError(ErrorCodes.VersionMismatch, `client speaks IPC version ${f.v}, daemon ${PROTOCOL_VERSION}: use the burrow that matches this burrowd`));
        }
        session.send({ t: 'hello', v: PROTOCOL_VERSION });
        stage = 'request';
        decoder.maxFrame = MAX_FRAME;
        disarm();
      } else if (stage === 'request') {
        if (!isRequest(f)) return reject(new BurrowError(ErrorCodes.UnexpectedFrame, `expected a request, got ${f.t}`));
        stage = 'stream';
        request = f.t;
        decoder.maxFrame = IpcLimits.maxStreamFrame;
        disarm();
        Promise.resolve()
          .then(() => this.handle(f, session))
          .catch((err: unknown) => session.fail(err));
      } else if (request !== undefined && !mayFollow(request, f.t)) {
        // Only what the frame table lets follow this request is held or handed on.
        return reject(new BurrowError(ErrorCodes.UnexpectedFrame, `${f.t} is not allowed on a ${request} session`));
      } else if (frameListeners.length === 0) {
        held.push(f);
        heldBytes += size;
        if (heldBytes > IpcLimits.maxHeld) sock.pause();
      } else {
        for (const fn of frameListeners) deliver(fn, f);
      }
    };

    // A request may be large, but all of those still arriving share one budget: a frame that
    // would go over it is refused from its header, before its bytes are held.
    const nextFrame = (): ReturnType<FrameDecoder['next']> => {
      if (stage === 'request') decoder.maxFrame = Math.max(MAX_CHUNK, Math.min(MAX_FRAME, IpcLimits.maxEarlyTotal - (this.early - countedEarly))); // small ones always pass
      const d = decoder.next();
      if (d && 'error' in d && d.error.code === ErrorCodes.FrameTooLarge && stage === 'request' && decoder.maxFrame < MAX_FRAME) {
        return { error: new BurrowError(ErrorCodes.IpcLimit, `the daemon holds ${IpcLimits.maxEarlyTotal >> 20} MiB of requests still arriving; try again when some have`) };
      }
      return d;
    };
    sock.on('data', (chunk: Buffer) => {
      if (closed) return;
      decoder.append(chunk);
      for (let d = nextFrame(); d !== undefined && !closed; d = nextFrame()) {
        if ('error' in d) {
          recount();
          return reject(d.error);
        }
        onFrame(d.frame, d.size);
      }
      recount();
      if (closed) return;
      // A frame begun before the request runs must be finished in time; timer already set for hello.
      if (stage === 'request') {
        if (decoder.pending === 0) disarm();
        else if (timer === undefined) arm(IpcLimits.frameMs, `a frame begun was not finished within ${IpcLimits.frameMs} ms`);
      }
    });
    sock.on('drain', () => {
      for (const fn of drainListeners) {
        try {
          fn();
        } catch (err) {
          session.fail(err);
        }
      }
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

  /** Stop accepting, tell every live client why, and release the socket once all are gone. */
  async close(reason = 'daemon is shutting down'): Promise<void> {
    const closed = this.stopAccepting();
    for (const s of [...this.sessions.values()]) s.fail(new BurrowError(ErrorCodes.ShuttingDown, reason));
    // A client that does not read its last frame is not waited for.
    const stragglers = setTimeout(() => {
      for (const sock of this.sockets) sock.destroy();
    }, 2000);
    await closed;
    clearTimeout(stragglers);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Listen on `path`, created 0600 with no window of a looser mode; resolves with the error instead of throwing. */
function tryListen(path: string, onConnection: (s: Socket) => void): Promise<{ server: Server } | { err: NodeJS.ErrnoException }> {
  const server = createServer(onConnection);
  const oldMask = process.umask(0o177);
  return new Promise<{ server: Server } | { err: NodeJS.ErrnoException }>((resolve) => {
    server.once('error', (err: NodeJS.ErrnoException) => resolve({ err }));
    server.listen(path, () => {
      server.removeAllListeners('error');
      resolve({ server });
    });
  }).finally(() => process.umask(oldMask));
}

/** Whether a daemon answers on `path`: a connect that is accepted (or hangs: a wedged daemon is still one). */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const c = connect(path);
    const timer = setTimeout(() => {
      c.destroy();
      resolve(true);
    }, 2000);
    c.once('connect', () => {
      clearTimeout(timer);
      c.destroy();
      resolve(true);
    });
    c.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      else reject(new BurrowError(ErrorCodes.IoError, `cannot check ${path}: ${err.code ?? err.message}`));
    });
  });
}

/** A lock held only while a stale socket is replaced; a crash inside that window leaves it for STALE_LOCK_MS. */
const STALE_LOCK_MS = 10_000;

function takeReplaceLock(path: string): (() => void) | undefined {
  const lock = `${path}.lock`;
  try {
    mkdirSync(lock, { mode: 0o700 });
    return () => rmdirSync(lock);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    try {
      const st = lstatSync(lock);
      if (st.isDirectory() && Date.now() - st.mtimeMs > STALE_LOCK_MS) rmdirSync(lock);
    } catch {
      // gone meanwhile
    }
    return undefined;
  }
}

/**
 * Bind the socket; the bound socket is the single-instance lock. A path in use is either a live
 * daemon (AlreadyRunning) or a stale socket of ours, which is replaced under a short lock so two
 * daemons starting at once cannot each unlink the other's fresh socket.
 */
async function bindSocket(path: string, onConnection: (s: Socket) => void): Promise<Server> {
  const running = (): BurrowError => new BurrowError(ErrorCodes.AlreadyRunning, `another burrowd is already serving ${path}`);
  for (let attempt = 0; attempt < 100; attempt++) {
    const r = await tryListen(path, onConnection);
    if ('server' in r) {
      chmodSync(path, 0o600);
      return r.server;
    }
    if (r.err.code !== 'EADDRINUSE') throw new BurrowError(ErrorCodes.IoError, `cannot listen on ${path}: ${r.err.code ?? r.err.message}`);
    if (!checkSocketFile(path)) continue; // gone meanwhile
    if (!lstatSync(path).isSocket()) throw new BurrowError(ErrorCodes.IoError, `${path} exists and is not a socket; refusing to replace it`);
    if (await answers(path)) throw running();
    const release = takeReplaceLock(path);
    if (!release) {
      await sleep(50);
      continue;
    }
    try {
      // Another daemon may have just bound it (a connect between its bind and listen is refused).
      await sleep(20);
      if (await answers(path)) throw running();
      try {
        unlinkSync(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      const again = await tryListen(path, onConnection);
      if ('server' in again) {
        chmodSync(path, 0o600);
        return again.server;
      }
      if (again.err.code !== 'EADDRINUSE') throw new BurrowError(ErrorCodes.IoError, `cannot listen on ${path}: ${again.err.code ?? again.err.message}`);
    } finally {
      release();
    }
  }
  throw new BurrowError(ErrorCodes.IoError, `could not bind ${path}: it stayed in use without answering`);
}
