// The output ring: any sequence of appends, any offset asked for, against a plain byte array.

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OutputRing } from '../daemon/session/ring.js';

describe('OutputRing', () => {
  it('returns exactly the bytes since an offset while held, and nothing once overwritten', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), fc.array(fc.uint8Array({ maxLength: 150 }), { maxLength: 30 }), fc.nat(), (capacity, chunks, pick) => {
        const ring = new OutputRing(capacity);
        const all: number[] = [];
        for (const c of chunks) {
          ring.append(Buffer.from(c));
          all.push(...c);
        }
        expect(ring.end).toBe(all.length);
        expect(ring.start).toBe(Math.max(0, all.length - capacity));
        const offset = pick % (all.length + 2);
        const got = ring.since(offset);
        if (offset < ring.start || offset > all.length) expect(got).toBeUndefined();
        else expect([...(got as Buffer)]).toEqual(all.slice(offset));
      }),
      { numRuns: 500 },
    );
  });
});
