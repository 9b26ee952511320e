// pkarr, just enough to meet by nameplate: a signed DNS packet under an ed25519 key, stored on a
// relay over HTTP (`PUT/GET /:z32key`, body = signature(64) || timestamp(8, µs, big-endian) ||
// DNS packet; the signature covers the BEP44 form `3:seqi<timestamp>e1:v<len>:<packet>`).
// The key is derived from the nameplate alone, so anyone can compute it: the record is public
// and can be overwritten by anyone. It carries no secret; the PAKE is what authenticates.

import { createHash } from 'node:crypto';
import { ed25519 } from '@noble/curves/ed25519.js';
import { BurrowError, ErrorCodes, firstLine } from '../../shared/errors.js';

/** Where iroh's n0 discovery publishes its pkarr records; the default rendezvous. */
export const DEFAULT_PKARR_RELAY = 'https://dns.iroh.link/pkarr';
/** A DNS packet the relays accept is under 1000 bytes. */
export const MAX_PACKET = 1000;

const Z32 = 'ybndrfg8ejkmcpqxot1uwisza345h769';

export function z32Encode(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += Z32[(value >> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += Z32[(value << (5 - bits)) & 31];
  return out;
}

export function z32Decode(text: string): Buffer {
  const out: number[] = [];
  let bits = 0;
  let value = 0;
  for (const c of text) {
    const v = Z32.indexOf(c);
    if (v < 0) throw new BurrowError(ErrorCodes.BadArgument, `not z-base-32: ${JSON.stringify(c)}`);
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

export interface NameplateKey {
  seed: Uint8Array;
  publicKey: Uint8Array;
  /** The public key in z-base-32: the relay path and the DNS origin. */
  z32: string;
}

/** The rendezvous key of a nameplate: a hash of the nameplate only, never of the password words. */
export function nameplateKey(nameplate: string): NameplateKey {
  const seed = createHash('sha256').update(`burrow/pair/1 nameplate ${nameplate}`).digest();
  const publicKey = ed25519.getPublicKey(seed);
  return { seed, publicKey, z32: z32Encode(publicKey) };
}

/** The bytes BEP44 signs for a mutable item without salt. */
export function signable(timestampUs: bigint, packet: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(`3:seqi${timestampUs}e1:v${packet.length}:`), packet]);
}

export function signedPayload(key: NameplateKey, timestampUs: bigint, packet: Uint8Array): Buffer {
  if (packet.length > MAX_PACKET) throw new BurrowError(ErrorCodes.Internal, `pkarr packet of ${packet.length} bytes is over ${MAX_PACKET}`);
  const ts = Buffer.alloc(8);
  ts.writeBigUInt64BE(timestampUs);
  return Buffer.concat([ed25519.sign(signable(timestampUs, packet), key.seed), ts, packet]);
}

export interface SignedRecord {
  timestampUs: bigint;
  packet: Buffer;
}

/** Check a relay payload against the public key it is filed under; throws on a bad signature. */
export function verifyPayload(publicKey: Uint8Array, body: Uint8Array): SignedRecord {
  if (body.length < 72 || body.length > 72 + MAX_PACKET) throw new BurrowError(ErrorCodes.BadFrame, `pkarr payload of ${body.length} bytes`);
  const b = Buffer.from(body);
  const timestampUs = b.readBigUInt64BE(64);
  const packet = b.subarray(72);
  if (!ed25519.verify(b.subarray(0, 64), signable(timestampUs, packet), publicKey)) throw new BurrowError(ErrorCodes.BadFrame, 'pkarr payload signature does not verify');
  return { timestampUs, packet };
}

// ---- DNS packets: answers of TXT records only, names relative to the key (RFC 1035 wire form).

export interface TxtRecord {
  /** Full name, e.g. `_burrow-pair.<z32>`. */
  name: string;
  ttl: number;
  strings: string[];
}

const TYPE_TXT = 16;
const CLASS_IN = 1;

function encodeName(name: string): Buffer {
  const parts = name.split('.').filter((l) => l !== '');
  return Buffer.concat([...parts.map((l) => Buffer.concat([Buffer.from([Buffer.byteLength(l)]), Buffer.from(l)])), Buffer.from([0])]);
}

export function encodeTxtPacket(records: TxtRecord[]): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(0x8400, 2); // response, authoritative
  header.writeUInt16BE(records.length, 6);
  const answers = records.map((r) => {
    const rdata = Buffer.concat(
      r.strings.map((s) => {
        const b = Buffer.from(s);
        if (b.length > 255) throw new BurrowError(ErrorCodes.Internal, 'TXT string over 255 bytes');
        return Buffer.concat([Buffer.from([b.length]), b]);
      }),
    );
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(TYPE_TXT, 0);
    fixed.writeUInt16BE(CLASS_IN, 2);
    fixed.writeUInt32BE(r.ttl, 4);
    fixed.writeUInt16BE(rdata.length, 8);
    return Buffer.concat([encodeName(r.name), fixed, rdata]);
  });
  return Buffer.concat([header, ...answers]);
}

function readName(p: Buffer, at: number): { name: string; next: number } {
  const labels: string[] = [];
  let off = at;
  let next = -1;
  for (let hops = 0; hops < 64; hops++) {
    const len = p.readUInt8(off);
    if (len === 0) {
      return { name: labels.join('.'), next: next < 0 ? off + 1 : next };
    }
    if ((len & 0xc0) === 0xc0) {
      if (next < 0) next = off + 2;
      off = p.readUInt16BE(off) & 0x3fff;
      continue;
    }
    labels.push(p.toString('utf8', off + 1, off + 1 + len));
    off += 1 + len;
  }
  throw new Error('DNS name too long or looped');
}

/** The TXT answers of a packet (other record types are skipped); throws on a malformed packet. */
export function decodeTxtPacket(p: Buffer): TxtRecord[] {
  try {
    const qd = p.readUInt16BE(4);
    const an = p.readUInt16BE(6);
    let off = 12;
    for (let i = 0; i < qd; i++) off = readName(p, off).next + 4;
    const out: TxtRecord[] = [];
    for (let i = 0; i < an; i++) {
      const { name, next } = readName(p, off);
      const type = p.readUInt16BE(next);
      const ttl = p.readUInt32BE(next + 4);
      const len = p.readUInt16BE(next + 8);
      const start = next + 10;
      if (start + len > p.length) throw new Error('record runs past the packet');
      if (type === TYPE_TXT) {
        const strings: string[] = [];
        for (let o = start; o < start + len; ) {
          const l = p.readUInt8(o);
          strings.push(p.toString('utf8', o + 1, o + 1 + l));
          o += 1 + l;
        }
        out.push({ name, ttl, strings });
      }
      off = start + len;
    }
    return out;
  } catch (err) {
    throw new BurrowError(ErrorCodes.BadFrame, `malformed DNS packet: ${firstLine(String(err))}`);
  }
}

// ---- the relay's HTTP API

let lastTimestamp = 0n;
/** Microseconds since the epoch, strictly increasing within this process (relays refuse replays). */
export function nowMicros(): bigint {
  const t = BigInt(Date.now()) * 1000n;
  lastTimestamp = t > lastTimestamp ? t : lastTimestamp + 1n;
  return lastTimestamp;
}

export class PkarrRelay {
  constructor(
    readonly url: string,
    private readonly timeoutMs = 5000,
  ) {}

  private at(key: string): string {
    return `${this.url.replace(/\/+$/, '')}/${key}`;
  }

  async put(key: NameplateKey, packet: Uint8Array): Promise<void> {
    let res: Response;
    try {
      res = await fetch(this.at(key.z32), {
        method: 'PUT',
        body: signedPayload(key, nowMicros(), packet),
        headers: { 'content-type': 'application/pkarr.org/relays#payload' },
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new BurrowError(ErrorCodes.ConnectFailed, `pkarr relay ${this.url}: ${firstLine(err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err))}`);
    }
    await res.arrayBuffer().catch(() => undefined);
    if (!res.ok) throw new BurrowError(ErrorCodes.ConnectFailed, `pkarr relay ${this.url} refused the record: HTTP ${res.status}`);
  }

  /** The record under a key, verified; null when the relay has none. */
  async get(publicKey: Uint8Array): Promise<SignedRecord | null> {
    let res: Response;
    try {
      res = await fetch(this.at(z32Encode(publicKey)), { signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (err) {
      throw new BurrowError(ErrorCodes.ConnectFailed, `pkarr relay ${this.url}: ${firstLine(err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err))}`);
    }
    if (res.status === 404 || !res.ok) {
      await res.body?.cancel().catch(() => undefined);
      if (res.status === 404) return null;
      throw new BurrowError(ErrorCodes.ConnectFailed, `pkarr relay ${this.url}: HTTP ${res.status}`);
    }
    return verifyPayload(publicKey, await readCapped(res, 72 + MAX_PACKET, this.url));
  }
}

/** A reply body of at most `max` bytes: a relay (anyone's, on --pkarr-relay) cannot make us buffer more. */
async function readCapped(res: Response, max: number, url: string): Promise<Buffer> {
  const tooBig = (): BurrowError => new BurrowError(ErrorCodes.BadFrame, `pkarr relay ${url} sent a reply over ${max} bytes`);
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > max) {
    await res.body?.cancel().catch(() => undefined);
    throw tooBig();
  }
  if (!res.body) return Buffer.alloc(0);
  const reader = res.body.getReader();
  const chunks: Buffer[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      throw tooBig();
    }
    chunks.push(Buffer.from(value));
  }
  return Buffer.concat(chunks);
}

/** How far a record's timestamp may be ahead of our clock (clock skew between machines). */
const MAX_AHEAD_US = 5n * 60n * 1_000_000n;

/**
 * Whether a record may belong to a live invitation: not older than the longest invitation (plus
 * the skew allowance), not far in the future. A relay may replay old records or keep future
 * ones; the signature alone does not say when.
 */
export function isFresh(timestampUs: bigint, maxAgeSeconds: number, nowUs = BigInt(Date.now()) * 1000n): boolean {
  return timestampUs <= nowUs + MAX_AHEAD_US && timestampUs >= nowUs - BigInt(maxAgeSeconds) * 1_000_000n - MAX_AHEAD_US;
}
