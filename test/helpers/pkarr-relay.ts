// An in-test pkarr relay on 127.0.0.1 implementing the relay HTTP API: PUT/GET /:z32key with body
// signature(64) || timestamp(8, µs, big-endian) || DNS packet. It checks what a real relay
// checks, independently of daemon/pair/pkarr.ts (node:crypto's ed25519, its own z-base-32 and
// BEP44 encoding): the key decodes to 32 bytes, the signature over `3:seqi<ts>e1:v<len>:<packet>`
// verifies, the packet is under 1000 bytes, a timestamp not newer than the stored one is a 409,
// and one more than a minute in the future is refused.

import { createPublicKey, verify } from 'node:crypto';
import { createServer, type Server } from 'node:http';

const ALPHABET = 'ybndrfg8ejkmcpqxot1uwisza345h769';

function z32ToBytes(s: string): Buffer | null {
  let bits = '';
  for (const c of s) {
    const v = ALPHABET.indexOf(c);
    if (v < 0) return null;
    bits += v.toString(2).padStart(5, '0');
  }
  const out: number[] = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) out.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(out);
}

function ed25519Verify(publicKey: Buffer, message: Buffer, signature: Buffer): boolean {
  const spki = Buffer.concat([Buffer.from('302a300506032b6570032100', 'hex'), publicKey]);
  try {
    return verify(null, message, createPublicKey({ key: spki, format: 'der', type: 'spki' }), signature);
  } catch {
    return false;
  }
}

export interface TestPkarrRelay {
  url: string;
  /** Stored payloads by z32 key. */
  records: Map<string, { timestamp: bigint; body: Buffer }>;
  /** Every request: method, key and status, in order. */
  requests: { method: string; key: string; status: number }[];
  close(): Promise<void>;
}

export async function startPkarrRelay(): Promise<TestPkarrRelay> {
  const records = new Map<string, { timestamp: bigint; body: Buffer }>();
  const requests: { method: string; key: string; status: number }[] = [];
  const server: Server = createServer((req, res) => {
    const key = (req.url ?? '/').slice(1);
    const reply = (status: number, body?: Buffer): void => {
      requests.push({ method: req.method ?? '?', key, status });
      res.writeHead(status, body ? { 'content-type': 'application/pkarr.org/relays#payload' } : {});
      res.end(body);
    };
    const pub = key.length === 52 ? z32ToBytes(key) : null;
    if (!pub || pub.length !== 32) return reply(400);
    if (req.method === 'GET') {
      const r = records.get(key);
      return r ? reply(200, r.body) : reply(404);
    }
    if (req.method !== 'PUT') return reply(405);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= 2000) chunks.push(c);
    });
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (size > 72 + 1000) return reply(413);
      if (body.length < 72) return reply(400);
      const timestamp = body.readBigUInt64BE(64);
      const packet = body.subarray(72);
      const signed = Buffer.concat([Buffer.from(`3:seqi${timestamp.toString()}e1:v${packet.length}:`), packet]);
      if (!ed25519Verify(pub, signed, body.subarray(0, 64))) return reply(400);
      if (timestamp > BigInt(Date.now() + 60_000) * 1000n) return reply(400);
      const old = records.get(key);
      if (old && old.timestamp >= timestamp) return reply(409);
      records.set(key, { timestamp, body });
      reply(204);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const addr = server.address();
  if (addr === null || typeof addr === 'string') throw new Error('no port');
  return {
    url: `http://127.0.0.1:${addr.port}`,
    records,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
