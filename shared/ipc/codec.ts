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
 * A streaming decoder that survives any chunking. It never throws: bad input becomes one
 * `{error}` item, after which the decoder is spent (the connection is to be closed).
 */
export class FrameDecoder {
  /** Largest frame body accepted from here on; a server lowers it where only small frames belong. */
  maxFrame = MAX_FRAME;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed = false;

  /** Bytes held waiting for the rest of a frame. */
  get pending(): number {
    return this.buffered;
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
    this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
    this.buffered += chunk.length;
  }

  /**
   * The next whole frame, or undefined when more bytes are needed. One at a time, so that a
   * caller can change maxFrame between frames (a hello and the request may share a chunk).
   */
  next(): Decoded | undefined {
    if (this.failed || this.buffered < 4) return undefined;
    const len = this.peekLength();
    if (len > this.maxFrame) return this.fail(new BurrowError(ErrorCodes.FrameTooLarge, `frame of ${len} bytes is over the ${this.maxFrame}-byte limit`));
    if (this.buffered < 4 + len) return undefined;
    const body = this.take(4 + len).subarray(4);
    let value: unknown;
    try {
      value = packr.unpack(body);
    } catch (err) {
      return this.fail(new BurrowError(ErrorCodes.BadFrame, `undecodable frame: ${err instanceof Error ? err.message : String(err)}`));
    }
    try {
      return { frame: validateFrame(value), size: 4 + len };
    } catch (err) {
      return this.fail(err instanceof BurrowError ? err : new BurrowError(ErrorCodes.BadFrame, String(err)));
    }
  }

  /** The stream ended: bytes still held are a truncated frame. */
  end(): Decoded[] {
    if (this.failed || this.buffered === 0) return [];
    return [this.fail(new BurrowError(ErrorCodes.BadFrame, `stream ended inside a frame (${this.buffered} bytes held)`))];
  }

  private fail(error: BurrowError): Decoded {
    this.failed = true;
    this.chunks = [];
    this.buffered = 0;
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
      const all = Buffer.concat(this.chunks, this.buffered);
      out = all.subarray(0, n);
      this.chunks = consume ? (all.length > n ? [all.subarray(n)] : []) : [all];
    }
    if (consume) this.buffered -= n;
    return out;
  }
}
