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

/** What the decoder yields: frames, then at most one error after which it yields nothing more. */
export type Decoded = { frame: Frame } | { error: BurrowError };

/**
 * A streaming decoder that survives any chunking. It never throws: bad input becomes one
 * `{error}` item, after which the decoder is spent (the connection is to be closed).
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed = false;

  /** Bytes held waiting for the rest of a frame. */
  get pending(): number {
    return this.buffered;
  }

  push(chunk: Uint8Array): Decoded[] {
    if (this.failed) return [];
    if (chunk.length > 0) {
      this.chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.buffered += chunk.length;
    }
    const out: Decoded[] = [];
    while (this.buffered >= 4) {
      const len = this.peekLength();
      if (len > MAX_FRAME) return this.fail(out, new BurrowError(ErrorCodes.FrameTooLarge, `frame of ${len} bytes is over the ${MAX_FRAME}-byte limit`));
      if (this.buffered < 4 + len) break;
      const body = this.take(4 + len).subarray(4);
      let value: unknown;
      try {
        value = packr.unpack(body);
      } catch (err) {
        return this.fail(out, new BurrowError(ErrorCodes.BadFrame, `undecodable frame: ${err instanceof Error ? err.message : String(err)}`));
      }
      try {
        out.push({ frame: validateFrame(value) });
      } catch (err) {
        return this.fail(out, err instanceof BurrowError ? err : new BurrowError(ErrorCodes.BadFrame, String(err)));
      }
    }
    return out;
  }

  /** The stream ended: bytes still held are a truncated frame. */
  end(): Decoded[] {
    if (this.failed || this.buffered === 0) return [];
    return this.fail([], new BurrowError(ErrorCodes.BadFrame, `stream ended inside a frame (${this.buffered} bytes held)`));
  }

  private fail(out: Decoded[], error: BurrowError): Decoded[] {
    this.failed = true;
    this.chunks = [];
    this.buffered = 0;
    out.push({ error });
    return out;
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
