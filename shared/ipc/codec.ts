// The one frame codec: a 4-byte big-endian length, then one msgpack map with a `t` field.

import { Packr } from 'msgpackr';
import { BurrowError, ErrorCodes } from '../errors.js';
import { MAX_FRAME, validateFrame, type Frame } from './frames.js';

// Plain maps only: no records, structured clones or other extensions that the peer may not expect.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, bundleStrings: false });

/** Encode one frame, length prefix included. Throws FrameTooLarge rather than send a frame the peer must refuse. */
export function encodeFrame(frame: Frame): Buffer {
  const body = packr.pack(frame);
  if (body.length > MAX_FRAME) {
    throw new BurrowError(ErrorCodes.FrameTooLarge, `${frame.t} frame of ${body.length} bytes is over the ${MAX_FRAME}-byte limit`);
  }
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32BE(body.length, 0);
  body.copy(out, 4);
  return out;
}

/** What the decoder yields: frames (with their encoded size), then at most one error after which it yields nothing more. */
export type Decoded = { frame: Frame; size: number } | { error: BurrowError };

/**
 * A frame at least this large is gathered in one buffer of its own (see FrameDecoder.next), once
 * half this much of it has come: a header alone (garbage, or a lie) allocates nothing.
 */
const GATHER_AT = 128 * 1024;

/**
 * A streaming decoder that survives any chunking. It never throws: bad input becomes one
 * `{error}` item, after which the decoder is spent (the connection is to be closed).
 */
export class FrameDecoder {
  /** Largest frame body accepted from here on; a server lowers it where only small frames belong. */
  maxFrame = MAX_FRAME;
  private chunks: Buffer[] = [];
  private chunkBytes = 0;
  /** A large frame being gathered, length prefix included, and how much of it has arrived. */
  private gathering: Buffer | undefined;
  private gathered = 0;
  private failed = false;

  /** Bytes held waiting for the rest of a frame (a frame being gathered counts whole: it is allocated). */
  get pending(): number {
    return this.chunkBytes + (this.gathering?.length ?? 0);
  }

  /** Every whole frame in the bytes so far. */
  push(chunk: Uint8Array): Decoded[] {
    this.append(chunk);
    const out: Decoded[] = [];
    for (let d = this.next(); d !== undefined; d = this.next()) out.push(d);
    return out;
  }

  /** Take bytes without decoding them yet (see next). */
  append(chunk: Uint8Array): void {
    if (this.failed || chunk.length === 0) return;
    let c = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    if (this.gathering) {
      const n = Math.min(this.gathering.length - this.gathered, c.length);
      c.copy(this.gathering, this.gathered, 0, n);
      this.gathered += n;
      c = c.subarray(n);
      if (c.length === 0) return;
    }
    this.chunks.push(c);
    this.chunkBytes += c.length;
  }

  /**
   * The next whole frame, or undefined when more bytes are needed. One at a time, so that a
   * caller can change maxFrame between frames (a hello and the request may share a chunk).
   */
  next(): Decoded | undefined {
    if (this.failed) return undefined;
    if (this.gathering) {
      if (this.gathered < this.gathering.length) return undefined;
      const whole = this.gathering;
      this.gathering = undefined;
      this.gathered = 0;
      // Bytes that came after it wait in chunks.
      return this.decode(whole.subarray(4), whole.length);
    }
    if (this.chunkBytes < 4) return undefined;
    const len = this.peekLength();
    if (len > this.maxFrame) return this.fail(new BurrowError(ErrorCodes.FrameTooLarge, `frame of ${len} bytes is over the ${this.maxFrame}-byte limit`));
    if (this.chunkBytes >= 4 + len) return this.decode(this.take(4 + len).subarray(4), 4 + len);
    if (4 + len >= GATHER_AT && this.chunkBytes >= GATHER_AT / 2) {
      // The socket's small read buffers are copied into one allocation of the frame's size and
      // let go at once: a frame that never completes then holds its size, not many scattered
      // reads, and its memory goes back whole when it is dropped.
      this.gathering = Buffer.allocUnsafeSlow(4 + len);
      this.gathered = 0;
      const have = this.chunks;
      this.chunks = [];
      this.chunkBytes = 0;
      for (const c of have) {
        c.copy(this.gathering, this.gathered);
        this.gathered += c.length;
      }
    }
    return undefined;
  }

  /** The stream ended: bytes still held are a truncated frame. */
  end(): Decoded[] {
    if (this.failed || this.pending === 0) return [];
    return [this.fail(new BurrowError(ErrorCodes.BadFrame, `stream ended inside a frame (${this.chunkBytes + this.gathered} bytes held)`))];
  }

  private decode(body: Buffer, size: number): Decoded {
    let value: unknown;
    try {
      value = packr.unpack(body);
    } catch (err) {
      return this.fail(new BurrowError(ErrorCodes.BadFrame, `undecodable frame: ${err instanceof Error ? err.message : String(err)}`));
    }
    try {
      return { frame: validateFrame(value), size };
    } catch (err) {
      return this.fail(err instanceof BurrowError ? err : new BurrowError(ErrorCodes.BadFrame, String(err)));
    }
  }

  private fail(error: BurrowError): Decoded {
    this.failed = true;
    this.chunks = [];
    this.chunkBytes = 0;
    this.gathering = undefined;
    this.gathered = 0;
    return { error };
  }

  private peekLength(): number {
    const first = this.chunks[0];
    if (first !== undefined && first.length >= 4) return first.readUInt32BE(0);
    return this.take(4, false).readUInt32BE(0);
  }

  /** The first n buffered bytes, removed unless consume is false; copies only across chunk seams. */
  private take(n: number, consume = true): Buffer {
    const first = this.chunks[0];
    let out: Buffer;
    if (first !== undefined && first.length >= n) {
      out = first.subarray(0, n);
      if (consume) {
        if (first.length === n) this.chunks.shift();
        else this.chunks[0] = first.subarray(n);
      }
    } else {
      const all = Buffer.concat(this.chunks, this.chunkBytes);
      out = all.subarray(0, n);
      this.chunks = consume ? (all.length > n ? [all.subarray(n)] : []) : [all];
    }
    if (consume) this.chunkBytes -= n;
    return out;
  }
}
