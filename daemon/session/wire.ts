// The keeper's socket speaks the IPC frame codec (shared/ipc/codec.ts) with a hello of its own:
// keepers outlive the daemon that started them, so an upgraded burrowd meets keepers of an older
// build (and a downgraded one newer keepers). The socket is private to one user's host daemon
// (0700 dir, 0600 socket). These helpers are shared by the keeper and the host side; protocol:
// docs/ARCHITECTURE.md, "Keeper socket protocol".

import { connect, type Socket } from 'node:net';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { FrameDecoder, encodeFrame } from '../../shared/ipc/codec.js';
import { errorFromFrame, type Frame, type FrameOf } from '../../shared/ipc/frames.js';
import type { SessionInfo } from '../../shared/sessions.js';

/**
 * The keeper protocol this build speaks, and the oldest it still speaks with. 0 is the protocol
 * of the first keepers, which had no hello; 1 is 0 with the hello. Test hook: a build that speaks
 * only version N (N = 0: a keeper or daemon from before the hello).
 */
const HOOKED = Number.parseInt(process.env['BURROW_TEST_KEEPER_PROTOCOL'] ?? '', 10);
export const KEEPER_PROTOCOL = HOOKED >= 0 ? HOOKED : 1;
export const OLDEST_KEEPER_PROTOCOL = HOOKED >= 0 ? HOOKED : 0;

/** Who writes to a session with several clients attached (host setting `--session-writer`). */
export const WRITER_POLICIES = ['last-input', 'last-attach'] as const;
export type WriterPolicy = (typeof WRITER_POLICIES)[number];

/** Call `fn` for each frame arriving on `sock`; a bad frame destroys the socket. */
export function readFrames(sock: Socket | NodeJS.ReadableStream, fn: (f: Frame) => void, onBad?: (err: BurrowError) => void): void {
  const decoder = new FrameDecoder();
  sock.on('data', (chunk: Buffer) => {
    for (const d of decoder.push(chunk)) {
      if ('error' in d) {
        onBad?.(d.error);
        return;
      }
      fn(d.frame);
    }
  });
}

/** No keeper answers at a socket path: errno says whether there is none (ENOENT) or a stale socket (ECONNREFUSED). */
export class KeeperUnreachable extends BurrowError {
  constructor(
    path: string,
    readonly errno: string,
  ) {
    super(ErrorCodes.Internal, `session keeper at ${path}: ${errno}`);
  }
}

/** Connect to a keeper's socket; rejects with KeeperUnreachable when nothing listens there. */
export function connectKeeper(path: string, timeoutMs = 3000): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new BurrowError(ErrorCodes.Internal, `session keeper at ${path} did not answer`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.removeAllListeners('error');
      resolve(sock);
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(err.code ? new KeeperUnreachable(path, err.code) : new BurrowError(ErrorCodes.Internal, `session keeper at ${path}: ${err.message}`));
    });
  });
}

/** The first frame on `sock`, and the bytes that came after it (put back for the next reader). */
function firstFrame(sock: Socket, path: string, timeoutMs: number): Promise<Frame> {
  return new Promise((resolve, reject) => {
    let held = Buffer.alloc(0);
    const done = (err: BurrowError | undefined, f?: Frame, rest?: Buffer): void => {
      clearTimeout(timer);
      sock.removeListener('data', onData);
      sock.removeListener('close', onClose);
      sock.pause();
      if (rest && rest.length > 0) sock.unshift(rest);
      if (err) reject(err);
      else resolve(f as Frame);
    };
    const onData = (chunk: Buffer): void => {
      held = Buffer.concat([held, chunk]);
      if (held.length < 4) return;
      const len = held.readUInt32BE(0);
      // A hello or an error is small: anything else this large is not a keeper talking.
      if (len > 64 * 1024) return done(new BurrowError(ErrorCodes.UnexpectedFrame, `session keeper at ${path} sent a ${len}-byte first frame`));
      if (held.length < 4 + len) return;
      const [d] = new FrameDecoder().push(held.subarray(0, 4 + len));
      if (!d || 'error' in d) return done(d?.error ?? new BurrowError(ErrorCodes.BadFrame, `session keeper at ${path} sent an undecodable frame`));
      done(undefined, d.frame, held.subarray(4 + len));
    };
    const onClose = (): void => done(new BurrowError(ErrorCodes.Internal, `session keeper at ${path} closed the connection during the hello`));
    const timer = setTimeout(() => done(new BurrowError(ErrorCodes.Internal, `session keeper at ${path} did not answer the hello`)), timeoutMs);
    sock.on('data', onData);
    sock.once('close', onClose);
  });
}

/**
 * Connect to a keeper and settle the protocol version: our hello, its hello (or its refusal),
 * then the connection is ready for one request. A keeper from before the hello refuses it as an
 * unknown request: it is asked again without one. A keeper we cannot speak with is a
 * VersionMismatch; nothing is sent to it, so its shell is untouched.
 */
export async function openKeeper(path: string, timeoutMs = 3000): Promise<{ sock: Socket; version: number }> {
  const sock = await connectKeeper(path, timeoutMs);
  if (KEEPER_PROTOCOL === 0) return { sock, version: 0 };
  sock.on('error', () => undefined);
  sock.write(encodeFrame({ t: 'hello', v: KEEPER_PROTOCOL }));
  let f: Frame;
  try {
    f = await firstFrame(sock, path, timeoutMs);
  } catch (err) {
    sock.destroy();
    throw err;
  }
  if (f.t === 'hello') {
    if (f.v >= OLDEST_KEEPER_PROTOCOL) return { sock, version: f.v };
    sock.destroy();
    throw versionMismatch(path, f.v);
  }
  sock.destroy();
  if (f.t === 'error' && f.code === ErrorCodes.UnexpectedFrame && /^hello /.test(f.message)) {
    if (OLDEST_KEEPER_PROTOCOL > 0) throw versionMismatch(path, 0);
    return { sock: await connectKeeper(path, timeoutMs), version: 0 };
  }
  if (f.t === 'error') throw errorFromFrame(f);
  throw new BurrowError(ErrorCodes.UnexpectedFrame, `session keeper at ${path} answered the hello with ${f.t}`);
}

function versionMismatch(path: string, theirs: number): BurrowError {
  return new BurrowError(
    ErrorCodes.VersionMismatch,
    `the session's keeper (${path}) speaks keeper protocol ${theirs}; this burrowd speaks ${OLDEST_KEEPER_PROTOCOL} to ${KEEPER_PROTOCOL}. The shell lives on: a burrowd of the keeper's version reaches it`,
  );
}

/** The keeper's answer to a daemon's hello: its own version, or why it cannot serve that daemon. */
export function answerHello(hello: FrameOf<'hello'>): Frame {
  if (hello.v >= OLDEST_KEEPER_PROTOCOL) return { t: 'hello', v: KEEPER_PROTOCOL };
  return {
    t: 'error',
    code: ErrorCodes.VersionMismatch,
    message: `this session's keeper (pid ${process.pid}) speaks keeper protocol ${OLDEST_KEEPER_PROTOCOL} to ${KEEPER_PROTOCOL}; burrowd speaks ${hello.v}. The shell lives on: a burrowd of the keeper's version reaches it, or kill ${process.pid} ends it`,
  };
}

/** A session's facts as a keeper reports them, checked field by field: the keeper may be of another build. */
export function sessionInfoFrom(v: Record<string, unknown>): SessionInfo {
  const num = (k: string): number => {
    const x = v[k];
    if (typeof x !== 'number') throw new BurrowError(ErrorCodes.BadFrame, `session keeper's ${k} is not a number`);
    return x;
  };
  const str = (k: string): string => {
    const x = v[k];
    if (typeof x !== 'string') throw new BurrowError(ErrorCodes.BadFrame, `session keeper's ${k} is not a string`);
    return x;
  };
  const exit = v['exit'];
  let exitInfo: SessionInfo['exit'] = null;
  if (typeof exit === 'object' && exit !== null) {
    const code: unknown = Reflect.get(exit, 'code');
    const signal: unknown = Reflect.get(exit, 'signal');
    exitInfo = { ...(typeof code === 'number' ? { code } : {}), ...(typeof signal === 'string' ? { signal } : {}) };
  }
  return {
    name: str('name'),
    command: typeof v['command'] === 'string' ? v['command'] : null,
    created: num('created'),
    lastAttached: typeof v['lastAttached'] === 'number' ? v['lastAttached'] : null,
    clients: num('clients'),
    cols: num('cols'),
    rows: num('rows'),
    running: v['running'] === true,
    exit: exitInfo,
    pid: num('pid'),
    keeperPid: num('keeperPid'),
    scrollbackBytes: num('scrollbackBytes'),
  };
}

/** One request to a keeper, answered by one result (or error) frame. */
export async function askKeeper(path: string, frame: Frame, timeoutMs = 5000): Promise<Record<string, unknown>> {
  const { sock } = await openKeeper(path, timeoutMs);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new BurrowError(ErrorCodes.Internal, `session keeper at ${path} did not answer ${frame.t}`));
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      sock.destroy();
    };
    readFrames(sock, (f) => {
      done();
      if (f.t === 'result') resolve(f.value);
      else if (f.t === 'error') reject(errorFromFrame(f));
      else reject(new BurrowError(ErrorCodes.UnexpectedFrame, `session keeper answered ${f.t} to ${frame.t}`));
    });
    sock.resume(); // paused after the hello
    sock.on('error', () => undefined);
    sock.once('close', () => {
      done();
      reject(new BurrowError(ErrorCodes.Internal, `session keeper closed before answering ${frame.t}`));
    });
    sock.write(encodeFrame(frame));
  });
}
