// A raw IPC client for tests that must send what no well-behaved client sends: garbage, half
// frames, frames out of order. It records every frame the daemon answers with.

import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { FrameDecoder, encodeFrame } from '../../shared/ipc/codec.js';
import { PROTOCOL_VERSION, type Frame } from '../../shared/ipc/frames.js';

export class RawIpc {
  readonly frames: Frame[] = [];
  /** Set when the daemon's bytes did not decode (a daemon must never send such). */
  badReply: string | undefined;
  private readonly decoder = new FrameDecoder();
  private waiters: (() => void)[] = [];
  closed = false;
  readonly done: Promise<void>;

  private constructor(readonly sock: Socket) {
    sock.on('data', (b: Buffer) => {
      for (const d of this.decoder.push(b)) {
        if ('error' in d) this.badReply = d.error.message;
        else this.frames.push(d.frame);
      }
      this.wake();
    });
    sock.on('error', () => undefined);
    this.done = new Promise((r) =>
      sock.once('close', () => {
        this.closed = true;
        this.wake();
        r();
      }),
    );
  }

  static open(path: string): Promise<RawIpc> {
    return new Promise((resolve, reject) => {
      const s = connect(path);
      s.once('connect', () => resolve(new RawIpc(s)));
      s.once('error', reject);
    });
  }

  /** Connect and exchange hello. */
  static async hello(path: string): Promise<RawIpc> {
    const c = await RawIpc.open(path);
    c.send({ t: 'hello', v: PROTOCOL_VERSION });
    const f = await c.next();
    if (f?.t !== 'hello') throw new Error(`no hello from the daemon: ${JSON.stringify(f)}`);
    return c;
  }

  send(f: Frame): boolean {
    return this.sock.write(encodeFrame(f));
  }

  write(b: Uint8Array): boolean {
    return this.sock.write(b);
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private taken = 0;

  /** The next frame not yet returned, or undefined when the connection closed (or after ms). */
  async next(ms = 10_000): Promise<Frame | undefined> {
    const deadline = Date.now() + ms;
    while (this.frames.length <= this.taken) {
      if (this.closed || Date.now() > deadline) return undefined;
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, Math.max(1, deadline - Date.now()));
      });
    }
    return this.frames[this.taken++];
  }

  /** Resolves true when the daemon closed the connection within ms. */
  async closedWithin(ms: number): Promise<boolean> {
    return Promise.race([this.done.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), ms))]);
  }

  destroy(): void {
    this.sock.destroy();
  }
}

/** Resident memory of a process, in MiB. */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Whether a process is still there. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
