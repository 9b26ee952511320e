// The keeper's socket speaks the IPC frame codec (shared/ipc/codec.ts) without the hello: it is
// private to one user's host daemon (0700 dir, 0600 socket). These helpers are shared by the
// keeper and the host side.

import { connect, type Socket } from 'node:net';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { FrameDecoder, encodeFrame } from '../../shared/ipc/codec.js';
import { errorFromFrame, type Frame } from '../../shared/ipc/frames.js';

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

/** One request to a keeper, answered by one result (or error) frame. */
export async function askKeeper(path: string, frame: Frame, timeoutMs = 5000): Promise<Record<string, unknown>> {
  const sock = await connectKeeper(path, timeoutMs);
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
    sock.on('error', () => undefined);
    sock.once('close', () => {
      done();
      reject(new BurrowError(ErrorCodes.Internal, `session keeper closed before answering ${frame.t}`));
    });
    sock.write(encodeFrame(frame));
  });
}
