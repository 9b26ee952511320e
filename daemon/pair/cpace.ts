// CPace (draft-irtf-cfrg-cpace) on ristretto255 with SHA-512, initiator-responder mode, plus the
// draft's suggested explicit key confirmation. Group arithmetic is @noble/curves' ristretto255;
// this file only strings the draft's functions together. Checked against the draft's vectors in
// test/cpace.test.ts.

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { ristretto255, ristretto255_hasher } from '@noble/curves/ed25519.js';

const Point = ristretto255.Point;
/** The little of a ristretto255 element this module uses (noble's class has protected members that declarations cannot name). */
export interface RistrettoPoint {
  multiply(scalar: bigint): RistrettoPoint;
  toBytes(): Uint8Array;
  is0(): boolean;
}

export const DSI = Buffer.from('CPaceRistretto255');
const DSI_ISK = Buffer.concat([DSI, Buffer.from('_ISK')]);
/** SHA-512's input block size: the generator string pads DSI and PRS to fill the first block. */
const S_IN_BYTES = 128;
/** G.I: the encoding of the neutral element. */
export const IDENTITY = new Uint8Array(32);

const sha512 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha512');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** LEB128 length, then the bytes. */
export function prependLen(data: Uint8Array): Buffer {
  const len: number[] = [];
  let n = data.length;
  do {
    len.push(n < 128 ? n : (n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  } while (n > 0);
  return Buffer.concat([Buffer.from(len), data]);
}

export function lvCat(...parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts.map(prependLen));
}

export function generatorString(prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): Buffer {
  const zpad = Math.max(0, S_IN_BYTES - 1 - prependLen(prs).length - prependLen(DSI).length);
  return lvCat(DSI, prs, new Uint8Array(zpad), ci, sid);
}

export function calculateGenerator(prs: Uint8Array, ci: Uint8Array, sid: Uint8Array): RistrettoPoint {
  return ristretto255_hasher.deriveToCurve!(sha512(generatorString(prs, ci, sid)));
}

/** The draft's recommended sampling: 32 random bytes, bits above 252 cleared, little-endian. */
export function sampleScalar(): bigint {
  for (;;) {
    const b = randomBytes(32);
    b[31] = (b[31] as number) & 0x0f;
    const y = BigInt('0x' + Buffer.from(b).reverse().toString('hex'));
    if (y !== 0n) return y;
  }
}

export function scalarFromLE(bytes: Uint8Array): bigint {
  return BigInt('0x' + Buffer.from(bytes).reverse().toString('hex'));
}

export function scalarMult(y: bigint, g: RistrettoPoint): Uint8Array {
  return g.multiply(y).toBytes();
}

/** y * decode(X), or G.I when X does not decode or the product is the neutral element. */
export function scalarMultVfy(y: bigint, x: Uint8Array): Uint8Array {
  let p: RistrettoPoint;
  try {
    p = Point.fromBytes(x);
  } catch {
    return IDENTITY;
  }
  if (p.is0()) return IDENTITY;
  const k = p.multiply(y);
  return k.is0() ? IDENTITY : k.toBytes();
}

export function transcriptIr(ya: Uint8Array, adA: Uint8Array, yb: Uint8Array, adB: Uint8Array): Buffer {
  return Buffer.concat([lvCat(ya, adA), lvCat(yb, adB)]);
}

export function intermediateSessionKey(sid: Uint8Array, k: Uint8Array, ya: Uint8Array, adA: Uint8Array, yb: Uint8Array, adB: Uint8Array): Buffer {
  return sha512(lvCat(DSI_ISK, sid, k), transcriptIr(ya, adA, yb, adB));
}

export class CPaceAbort extends Error {}

export interface CPaceResult {
  isk: Buffer;
  /** mac_key = H(b"CPaceMac" || sid || ISK), per the draft's key confirmation section. */
  macKey: Buffer;
}

/**
 * One party's CPace state. A (initiator) sends Ya first; B (responder) answers with Yb. Both end
 * with the same ISK only if PRS, CI and sid match and both saw the same messages.
 */
export class CPaceParty {
  readonly share: Uint8Array;
  private readonly y: bigint;

  constructor(
    readonly role: 'initiator' | 'responder',
    prs: Uint8Array,
    private readonly ci: Uint8Array,
    private readonly sid: Uint8Array,
    readonly ad: Uint8Array,
    scalar: bigint = sampleScalar(),
  ) {
    this.y = scalar;
    this.share = scalarMult(this.y, calculateGenerator(prs, ci, sid));
  }

  /** ISK from the peer's share; aborts (throws CPaceAbort) on an invalid or neutral share. */
  finish(peerShare: Uint8Array, peerAd: Uint8Array): CPaceResult {
    const k = scalarMultVfy(this.y, peerShare);
    if (Buffer.from(k).equals(IDENTITY)) throw new CPaceAbort('peer share is not a valid group element');
    const isk =
      this.role === 'initiator'
        ? intermediateSessionKey(this.sid, k, this.share, this.ad, peerShare, peerAd)
        : intermediateSessionKey(this.sid, k, peerShare, peerAd, this.share, this.ad);
    return { isk, macKey: sha512(Buffer.from('CPaceMac'), this.sid, isk) };
  }

  /** The channel identifier this party was built with (for key derivation that binds it). */
  get channel(): Uint8Array {
    return this.ci;
  }
}

/** Confirmation tag over the message a party sent: MAC(mac_key, lv_cat(Y, AD)). */
export function confirmationTag(macKey: Uint8Array, share: Uint8Array, ad: Uint8Array): Buffer {
  return createHmac('sha512', macKey).update(lvCat(share, ad)).digest();
}

export function tagsEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
