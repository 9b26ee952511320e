// The one client of the daemon's socket: hello, one request, then frames until exit, result or
// error. The CLI, the tests and Node programs (through shared/lib.ts) all use it.

import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { BurrowError, ErrorCodes } from '../errors.js';
import { checkSocket } from '../paths.js';
import { FrameDecoder, encodeFrame } from './codec.js';
import { PROTOCOL_VERSION, errorFromFrame, resultValue, type Frame, type FrameOf, type RequestFrame, type RequestType, type ResultOf } from './frames.js';

/** How long a client waits for the daemon's hello before giving up on it. */
export const HELLO_TIMEOUT_MS = 5000;

export interface IpcConnectOptions {
  socket: string;
  timeoutMs?: number;
}

/** A frame-level connection to burrowd. Emits 'frame' (Frame), 'drain', and 'close' (BurrowError | undefined). */
export class IpcConnection extends EventEmitter {
  private readonly decoder = new FrameDecoder();
  private closedWith: BurrowError | undefined;
  private done = false;

  private constructor(private readonly sock: Socket) {
    super();
  }

  /**
   * Connect and exchange hello; rejects with DaemonUnavailable when nothing answers, and with
   * UnsafeSocket, before connecting, when another user could control the socket (our commands
   * and stdin would go to them).
   */
  static connect(opts: IpcConnectOptions): Promise<IpcConnection> {
    return new Promise((resolve, reject) => {
      if (!checkSocket(opts.socket)) {
        reject(new BurrowError(ErrorCodes.DaemonUnavailable, `no daemon at ${opts.socket}`));
        return;
      }
      const sock = connect(opts.socket);
      const timer = setTimeout(() => {
        sock.destroy();
        reject(new BurrowError(ErrorCodes.DaemonUnavailable, `daemon at ${opts.socket} did not answer within ${opts.timeoutMs ?? HELLO_TIMEOUT_MS} ms`));
      }, opts.timeoutMs ?? HELLO_TIMEOUT_MS);
      const c = new IpcConnection(sock);
      const early = (err: NodeJS.ErrnoException): void => {
        clearTimeout(timer);
        const gone = err.code === 'ENOENT' || err.code === 'ECONNREFUSED';
        reject(new BurrowError(ErrorCodes.DaemonUnavailable, gone ? `no daemon at ${opts.socket}` : `cannot reach daemon at ${opts.socket}: ${err.code ?? err.message}`));
      };
      sock.once('error', early);
      sock.once('connect', () => {
        c.send({ t: 'hello', v: PROTOCOL_VERSION });
        c.once('frame', (f: Frame) => {
          clearTimeout(timer);
          sock.off('error', early);
          if (f.t === 'hello' && f.v === PROTOCOL_VERSION) return resolve(c);
          c.close();
          if (f.t === 'error') return reject(errorFromFrame(f));
          reject(new BurrowError(ErrorCodes.VersionMismatch, `daemon speaks IPC version ${f.t === 'hello' ? f.v : '?'}, this client ${PROTOCOL_VERSION}: restart the daemon (burrow daemon stop)`));
        });
        c.once('close', (err?: BurrowError) => {
          clearTimeout(timer);
          reject(err ?? new BurrowError(ErrorCodes.DaemonUnavailable, 'daemon closed the connection during hello'));
        });
      });
      sock.on('data', (chunk: Buffer) => {
        for (const d of c.decoder.push(chunk)) {
          if ('error' in d) {
            c.finish(new BurrowError(ErrorCodes.Internal, `daemon sent a bad frame: ${d.error.message}`));
            return;
          }
          c.emit('frame', d.frame);
        }
      });
      sock.on('drain', () => c.emit('drain'));
      sock.on('error', (err: Error) => c.finish(new BurrowError(ErrorCodes.DaemonUnavailable, `daemon connection: ${err.message}`)));
      sock.on('close', () => c.finish(undefined));
    });
  }

  /** Send a frame; false means the socket's buffer is full (wait for 'drain'). */
  send(f: Frame): boolean {
    if (this.done) return false;
    return this.sock.write(encodeFrame(f));
  }

  pause(): void {
    this.sock.pause();
  }

  resume(): void {
    this.sock.resume();
  }

  close(): void {
    this.sock.end();
  }

  get error(): BurrowError | undefined {
    return this.closedWith;
  }

  private finish(err: BurrowError | undefined): void {
    if (this.done) return;
    this.done = true;
    this.closedWith = err;
    this.sock.destroy();
    this.emit('close', err);
  }

  /** Send one request and resolve with its `result` value, typed by the frame table (for status, check, stop, ...). */
  async request<T extends RequestType>(f: FrameOf<T> & RequestFrame): Promise<ResultOf<T>> {
    return new Promise((resolve, reject) => {
      const onFrame = (r: Frame): void => {
        if (r.t === 'result') resolve(resultValue(f.t, r));
        else if (r.t === 'error') reject(errorFromFrame(r));
        else reject(new BurrowError(ErrorCodes.UnexpectedFrame, `daemon answered ${r.t} to ${f.t}`));
        this.off('frame', onFrame);
        this.close();
      };
      this.on('frame', onFrame);
      this.once('close', (err?: BurrowError) => reject(err ?? new BurrowError(ErrorCodes.Disconnected, `daemon closed the connection before answering ${f.t}`)));
      this.send(f);
    });
  }
}
