// The one bridge: every byte path in the daemon between two parties (an SSH channel, a socket or
// a QUIC stream, and a client's IPC session) is a pair of throttled directions. A direction
// writes into its sink until write() says the sink is full (a stream above its mark, a channel
// out of SSH window, the IPC socket's buffer above its mark), then pauses its sources until the
// sink drains. So nothing queues between two parties beyond the sink's own buffer, which keeps
// the bounded queues of "Interactive latency under bulk load" (docs/ARCHITECTURE.md) bounded.
// How a bridge ends (exit status, errors, who closes what) is its caller's.

import type { Duplex, Readable, Writable } from 'node:stream';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import type { Frame } from '../../shared/ipc/frames.js';
import type { IpcSession } from '../ipc/server.js';

/** Where one direction goes. */
export interface Sink<T> {
  /** false: full; the sources stay paused until onDrain. */
  write(item: T): boolean;
  onDrain(fn: () => void): void;
  /** The sink is gone for good: no drain will come, so held sources are let go (their data is dropped). */
  onClose?(fn: () => void): void;
}

/** What a full sink holds back: a stream, a channel, or a client's session (its socket is not read). */
export interface Source {
  pause(): void;
  resume(): void;
}

/** A writer into `sink` that pauses `sources` while the sink is full and resumes them when it drains. */
export function throttle<T>(sink: Sink<T>, ...sources: Source[]): (item: T) => void {
  let held = false;
  let gone = false;
  const release = (): void => {
    if (!held) return;
    held = false;
    for (const s of sources) s.resume();
  };
  sink.onDrain(release);
  // A source held by a sink that has closed would keep its data, and an ssh2 channel holding
  // unread data never reaches 'close': let it flow into nothing instead.
  sink.onClose?.(() => {
    gone = true;
    release();
  });
  return (item) => {
    if (gone) return;
    if (!sink.write(item) && !held) {
      held = true;
      for (const s of sources) s.pause();
    }
  };
}

export const streamSink = (w: Writable): Sink<Uint8Array> => ({ write: (d) => w.write(d), onDrain: (fn) => void w.on('drain', fn), onClose: (fn) => void w.once('close', fn) });

export const sessionSink = (s: IpcSession): Sink<Frame> => ({ write: (f) => s.send(f), onDrain: (fn) => s.onDrain(fn), onClose: (fn) => s.onClose(fn) });

export interface SessionBridgeOptions {
  /** The remote's stderr (an SSH channel's extended data), sent as stderr frames. */
  stderr?: Readable;
  /** Client frames besides stdin and eof (resize, signal); false for one it does not take. */
  control?: (f: Frame) => boolean;
  /** Ends the remote side when the client sends a frame nobody takes. */
  abort: () => void;
}

/**
 * A client's IPC session joined to `remote`: the remote's bytes go out as stdout frames (and
 * `stderr`'s as stderr), the client's stdin goes into `remote` and its eof becomes `remote`'s end,
 * each side holding the other back. Returns flush(), which sends what `remote` read but has not
 * delivered (a channel can close while paused with output still buffered).
 */
export function bridgeSession(session: IpcSession, remote: Duplex, opts: SessionBridgeOptions): { flush(): void } {
  const { stderr } = opts;
  const toClient = throttle(sessionSink(session), remote, ...(stderr ? [stderr] : []));
  remote.on('data', (data: Buffer) => toClient({ t: 'stdout', data }));
  stderr?.on('data', (data: Buffer) => toClient({ t: 'stderr', data }));
  const toRemote = throttle(streamSink(remote), session);
  session.onFrame((f) => {
    // stdin after eof would be a write after end, an 'error' on the channel: dropped instead.
    if (f.t === 'stdin') return remote.writableEnded ? undefined : toRemote(f.data);
    if (f.t === 'eof') return void remote.end();
    if (opts.control?.(f)) return;
    session.fail(new BurrowError(ErrorCodes.UnexpectedFrame, `${f.t} is not allowed on this session`));
    opts.abort();
  });
  return {
    // read() hands what is buffered to the 'data' listeners above, which send it (read() emits 'data').
    flush: () => {
      remote.read();
      stderr?.read();
    },
  };
}

/** Bytes carried so far by a stream bridge, each way. */
export interface Flow {
  aToB: number;
  bToA: number;
}

/**
 * Two streams joined: each one's bytes into the other, each held back by the other's buffer, and
 * each one's end carried across as the other's end (half-close). Returns the live byte counts.
 */
export function bridgeStreams(a: Duplex, b: Duplex): Flow {
  const flow: Flow = { aToB: 0, bToA: 0 };
  pump(a, b, (n) => (flow.aToB += n));
  pump(b, a, (n) => (flow.bToA += n));
  return flow;
}

/** One direction of bridgeStreams: `from` into `to`, held back by `to`'s buffer, its end carried across. */
export function pump(from: Readable, to: Writable, count?: (n: number) => void): void {
  const write = throttle(streamSink(to), from);
  from.on('data', (d: Buffer) => {
    count?.(d.length);
    write(d);
  });
  from.once('end', () => to.end());
  from.resume(); // a source paused while its peer was being reached flows from here on
}

/** A forward's join (either role): bridgeStreams, and the first close or error of either ends both; `onDone` gets the counts. */
export function splice(a: Duplex, b: Duplex, onDone?: (bytesAtoB: number, bytesBtoA: number) => void): void {
  const flow = bridgeStreams(a, b);
  let done = false;
  const end = (): void => {
    if (done) return;
    done = true;
    a.destroy();
    b.destroy();
    onDone?.(flow.aToB, flow.bToA);
  };
  a.once('error', end);
  b.once('error', end);
  a.once('close', end);
  b.once('close', end);
}
