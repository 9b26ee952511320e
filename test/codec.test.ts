import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FrameDecoder, encodeFrame, type Decoded } from '../shared/ipc/codec.js';
import { MAX_FRAME, frameSpecs, type Frame } from '../shared/ipc/frames.js';
import { ErrorCodes, isErrorCode } from '../shared/errors.js';
import { Packr } from 'msgpackr';

const raw = new Packr({ useRecords: false, mapsAsObjects: true });

function kindArb(kind: string): fc.Arbitrary<unknown> {
  switch (kind) {
    case 'string':
      return fc.string({ maxLength: 40 });
    case 'uint':
      return fc.nat({ max: 2 ** 31 });
    case 'int':
      return fc.integer({ min: -(2 ** 31), max: 2 ** 31 });
    case 'bool':
      return fc.boolean();
    case 'bytes':
      return fc.uint8Array({ maxLength: 3000 }).map((u) => Buffer.from(u));
    case 'strings':
      return fc.array(fc.string({ maxLength: 10 }), { maxLength: 5 });
    case 'map':
      return fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }).filter((k) => k !== '__proto__'), fc.string({ maxLength: 8 }), { maxKeys: 4 });
    case 'object':
      return fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }).filter((k) => k !== '__proto__'), fc.oneof(fc.string(), fc.integer(), fc.boolean()), { maxKeys: 4 });
    default:
      throw new Error(`no arbitrary for ${kind}`);
  }
}

/** Any valid frame, built from the same table the validator uses. */
const frameArb: fc.Arbitrary<Frame> = fc.oneof(
  ...Object.entries(frameSpecs()).map(([t, spec]) => {
    const required: Record<string, fc.Arbitrary<unknown>> = {};
    const optional: string[] = [];
    for (const [field, fs] of Object.entries(spec)) {
      if (fs.endsWith('?')) {
        optional.push(field);
        required[field] = kindArb(fs.slice(0, -1));
      } else required[field] = kindArb(fs);
    }
    return fc.record(required, { requiredKeys: Object.keys(required).filter((k) => !optional.includes(k)) }).map((r) => ({ t, ...r }) as unknown as Frame);
  }),
);

/** Split a buffer at random cut points. */
function chunked(buf: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(buf.subarray(prev, p));
    prev = p;
  }
  out.push(buf.subarray(prev));
  return out;
}

function decodeAll(chunks: Buffer[]): Decoded[] {
  const d = new FrameDecoder();
  const out: Decoded[] = [];
  for (const c of chunks) out.push(...d.push(c));
  out.push(...d.end());
  return out;
}

const frameHeader = (len: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(len);
  return b;
};
const withHeader = (body: Buffer): Buffer => Buffer.concat([frameHeader(body.length), body]);

describe('frame codec', () => {
  it('round-trips random frames under random chunking', () => {
    fc.assert(
      fc.property(fc.array(frameArb, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(), { maxLength: 30 }), (frames, cuts) => {
        const wire = Buffer.concat(frames.map(encodeFrame));
        const got = decodeAll(chunked(wire, cuts));
        expect(got).toEqual(frames.map((frame) => ({ frame, size: encodeFrame(frame).length })));
      }),
      { numRuns: 300 },
    );
  });

  it('survives one byte at a time', () => {
    const frames: Frame[] = [{ t: 'hello', v: 1 }, { t: 'stdin', data: Buffer.from('abc') }, { t: 'exit', code: 3 }];
    const wire = Buffer.concat(frames.map(encodeFrame));
    const got = decodeAll([...wire].map((b) => Buffer.from([b])));
    expect(got).toEqual(frames.map((frame) => ({ frame, size: encodeFrame(frame).length })));
  });

  it('never throws on garbage, and fails with a known code at most once', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }), (chunks) => {
        const got = decodeAll(chunks.map((c) => Buffer.from(c)));
        const errors = got.filter((d) => 'error' in d);
        expect(errors.length).toBeLessThanOrEqual(1);
        if (errors.length === 1) {
          expect(got[got.length - 1]).toBe(errors[0]);
          expect(isErrorCode((errors[0] as { error: { code: string } }).error.code)).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('holds a truncated frame and reports it as BadFrame at end of stream', () => {
    fc.assert(
      fc.property(frameArb, fc.nat(), (frame, n) => {
        const wire = encodeFrame(frame);
        const cut = wire.subarray(0, 1 + (n % (wire.length - 1)));
        const d = new FrameDecoder();
        expect(d.push(cut)).toEqual([]);
        const [end] = d.end();
        expect(end && 'error' in end && end.error.code).toBe(ErrorCodes.BadFrame);
      }),
    );
  });

  it('refuses an oversized frame from its header, before buffering the body', () => {
    const d = new FrameDecoder();
    const got = d.push(frameHeader(MAX_FRAME + 1));
    expect(got).toHaveLength(1);
    expect(got[0] && 'error' in got[0] && got[0].error.code).toBe(ErrorCodes.FrameTooLarge);
    expect(d.push(Buffer.alloc(100))).toEqual([]);
    expect(d.pending).toBe(0);
  });

  it('will not encode a frame over the limit', () => {
    expect(() => encodeFrame({ t: 'stdout', data: Buffer.alloc(MAX_FRAME + 10) })).toThrow(expect.objectContaining({ code: ErrorCodes.FrameTooLarge }));
  });

  it('gives each kind of bad frame its code', () => {
    const cases: [Buffer, string][] = [
      [withHeader(Buffer.from([0xc1])), ErrorCodes.BadFrame], // never-used msgpack byte
      [withHeader(Buffer.from([0x92, 0x01])), ErrorCodes.BadFrame], // truncated inside the body
      [withHeader(raw.pack([1, 2, 3])), ErrorCodes.BadFrame], // not a map
      [withHeader(raw.pack({ v: 1 })), ErrorCodes.BadFrame], // no t
      [withHeader(raw.pack({ t: 'launch_missiles' })), ErrorCodes.UnknownFrame],
      [withHeader(raw.pack({ t: 'hello', v: 'one' })), ErrorCodes.BadFrame], // wrong field type
      [withHeader(raw.pack({ t: 'hello', v: -1 })), ErrorCodes.BadFrame],
      [withHeader(raw.pack({ t: 'hello' })), ErrorCodes.BadFrame], // missing field
      [withHeader(raw.pack({ t: 'hello', v: 1, extra: true })), ErrorCodes.BadFrame],
      [withHeader(raw.pack({ t: 'stdin', data: 'text, not bytes' })), ErrorCodes.BadFrame],
      [withHeader(raw.pack({ t: 'exec', target: 'h', command: 'ls', env: { A: 1 } })), ErrorCodes.BadFrame],
      [withHeader(raw.pack({ t: 'toString' })), ErrorCodes.UnknownFrame], // no prototype lookups
      [withHeader(Buffer.concat([raw.pack({ t: 'eof' }), Buffer.from([0])])), ErrorCodes.BadFrame], // trailing bytes
    ];
    for (const [wire, code] of cases) {
      const got = decodeAll([wire]);
      expect(got, wire.toString('hex')).toHaveLength(1);
      expect(got[0] && 'error' in got[0] && got[0].error.code, wire.toString('hex')).toBe(code);
    }
  });

  it('gathers large frames whole under any chunking, with what follows them intact', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 900 * 1024 }), { minLength: 1, maxLength: 3 }), fc.array(fc.nat(), { maxLength: 40 }), (sizes, cuts) => {
        const frames: Frame[] = sizes.flatMap((n, i) => [{ t: 'stdout', data: Buffer.alloc(n, i + 1) } as Frame, { t: 'eof' } as Frame]);
        const wire = Buffer.concat(frames.map(encodeFrame));
        const got = decodeAll(chunked(wire, cuts.map((c) => c * 997)));
        // Compared by digest: element-wise comparison of MiB buffers is slow.
        const digest = (d: Decoded): string => ('error' in d ? d.error.message : `${d.frame.t}:${d.size}:${'data' in d.frame ? createHash('sha256').update(d.frame.data).digest('hex') : ''}`);
        expect(got.map(digest)).toEqual(frames.map((frame) => digest({ frame, size: encodeFrame(frame).length })));
      }),
      { numRuns: 40, endOnFailure: true },
    );
  });

  it('counts a frame being gathered whole, and allocates nothing for a header alone', () => {
    const d = new FrameDecoder();
    const wire = encodeFrame({ t: 'stdout', data: Buffer.alloc(512 * 1024) });
    expect(d.push(wire.subarray(0, 10))).toEqual([]);
    expect(d.pending).toBe(10);
    expect(d.push(wire.subarray(10, 100 * 1024))).toEqual([]);
    expect(d.pending).toBe(wire.length); // gathering: its buffer is allocated at full size
    expect(d.push(wire.subarray(100 * 1024))).toHaveLength(1);
    expect(d.pending).toBe(0);
  });

  it('applies maxFrame frame by frame, so a small first frame and a large second may share a chunk', () => {
    const d = new FrameDecoder();
    d.maxFrame = 64;
    d.append(Buffer.concat([encodeFrame({ t: 'hello', v: 1 }), encodeFrame({ t: 'stdin', data: Buffer.alloc(1000) })]));
    expect(d.next()).toMatchObject({ frame: { t: 'hello' } });
    d.maxFrame = MAX_FRAME;
    expect(d.next()).toMatchObject({ frame: { t: 'stdin' } });
    d.maxFrame = 64;
    d.append(encodeFrame({ t: 'stdin', data: Buffer.alloc(1000) }));
    expect(d.next()).toMatchObject({ error: { code: ErrorCodes.FrameTooLarge } });
  });

  it('decodes frames that precede a bad one, then stops', () => {
    const wire = Buffer.concat([encodeFrame({ t: 'eof' }), withHeader(Buffer.from([0xc1])), encodeFrame({ t: 'eof' })]);
    const got = decodeAll([wire]);
    expect(got).toHaveLength(2);
    expect(got[0]).toEqual({ frame: { t: 'eof' }, size: encodeFrame({ t: 'eof' }).length });
    expect(got[1] && 'error' in got[1]).toBe(true);
  });
});
