// The pkarr pieces of pairing: z-base-32 keys, TXT packets (including compressed names, which
// relays may send back), signed relay payloads, the rendezvous record's strings, and replies from
// a relay that may be hostile (over-long, stale, future-dated).

import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { decodeTxtPacket, encodeTxtPacket, isFresh, nameplateKey, PkarrRelay, signedPayload, verifyPayload, z32Decode, z32Encode } from '../daemon/pair/pkarr.js';
import { MAX_INVITATION_SECONDS, parseRecordStrings, recordStrings, Rendezvous } from '../daemon/pair/rendezvous.js';
import { quietLog } from './helpers/iroh.js';

describe('pkarr encoding', () => {
  it('z-base-32 round-trips the pkarr spec example key (52 characters for 32 bytes)', () => {
    const key = 'o4dksfbqk85ogzdb5osziw6befigbuxmuxkuxq8434q89uj56uyy';
    expect(z32Decode(key)).toHaveLength(32);
    expect(z32Encode(z32Decode(key))).toBe(key);
  });

  it('derives the rendezvous key from the nameplate alone, the same every time', () => {
    expect(nameplateKey('42').z32).toBe(nameplateKey('42').z32);
    expect(nameplateKey('42').z32).not.toBe(nameplateKey('43').z32);
    expect(nameplateKey('42').z32).toHaveLength(52);
  });

  it('writes TXT packets and reads them back, also with compressed names', () => {
    const recs = [{ name: '_burrow-pair.abc', ttl: 60, strings: ['v=1', 'id=00'] }];
    expect(decodeTxtPacket(encodeTxtPacket(recs))).toEqual(recs);
    expect(decodeTxtPacket(encodeTxtPacket([]))).toEqual([]);
    // Two answers, the second's name a pointer to the first's (offset 12).
    const first = encodeTxtPacket([{ name: 'a.example', ttl: 5, strings: ['x'] }]);
    const second = Buffer.from([0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 7, 0, 2, 1, 0x79]);
    const both = Buffer.concat([first, second]);
    both.writeUInt16BE(2, 6);
    expect(decodeTxtPacket(both)).toEqual([
      { name: 'a.example', ttl: 5, strings: ['x'] },
      { name: 'a.example', ttl: 7, strings: ['y'] },
    ]);
    expect(() => decodeTxtPacket(both.subarray(0, both.length - 3))).toThrow(/malformed/);
  });

  it('signs relay payloads that verify under the key, and a changed byte does not', () => {
    const key = nameplateKey('7');
    const body = signedPayload(key, 1_700_000_000_000_000n, encodeTxtPacket([{ name: 'x', ttl: 1, strings: ['v=1'] }]));
    expect(verifyPayload(key.publicKey, body).timestampUs).toBe(1_700_000_000_000_000n);
    const bad = Buffer.from(body);
    bad.writeUInt8(bad.readUInt8(bad.length - 1) ^ 1, bad.length - 1);
    expect(() => verifyPayload(key.publicKey, bad)).toThrow(/signature/);
    expect(() => verifyPayload(nameplateKey('8').publicKey, body)).toThrow(/signature/);
  });

  it('the record holds the endpoint id and addresses only, and junk is ignored', () => {
    const addr = { id: 'ab'.repeat(32), relayUrl: 'https://relay.example/', direct: ['127.0.0.1:4000', '[::1]:4000'] };
    expect(parseRecordStrings(recordStrings(addr))).toEqual(addr);
    expect(parseRecordStrings(['v=1', 'id=nothex'])).toBeNull();
    expect(parseRecordStrings(['id=' + 'ab'.repeat(32)])).toBeNull();
    expect(parseRecordStrings(['v=1', 'id=' + 'ab'.repeat(32), 'addr=evil', 'relay=file:///etc/passwd'])).toEqual({ id: 'ab'.repeat(32), direct: [] });
  });
});

describe('reading a relay that may be hostile', () => {
  /** An HTTP server on 127.0.0.1 answering every GET with `reply`; closed after the test. */
  async function hostileRelay(reply: (res: ServerResponse) => void): Promise<{ url: string; close: () => Promise<void> }> {
    const server = createServer((_req, res) => reply(res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    return {
      url: `http://127.0.0.1:${port}`,
      close: () =>
        new Promise<void>((r) => {
          server.closeAllConnections();
          server.close(() => r());
        }),
    };
  }
  const record = (ts: bigint, nameplate = '5'): Buffer => {
    const key = nameplateKey(nameplate);
    return signedPayload(key, ts, encodeTxtPacket([{ name: `_burrow-pair.${key.z32}`, ttl: 60, strings: recordStrings({ id: 'ab'.repeat(32), direct: [] }) }]));
  };
  const nowUs = (): bigint => BigInt(Date.now()) * 1000n;

  it('a reply declaring more than 1072 bytes is refused unread; one that streams more is cut off past the limit', async () => {
    let streamed = 0;
    const big = await hostileRelay((res) => {
      res.writeHead(200, { 'content-length': String(10 * 1024 * 1024) });
      res.write(Buffer.alloc(4096));
    });
    const endless = await hostileRelay((res) => {
      res.writeHead(200); // chunked, no length
      const chunk = Buffer.alloc(16 * 1024);
      const more = (): void => {
        while (streamed < 64 * 1024 * 1024 && !res.destroyed && res.write(chunk)) streamed += chunk.length;
        if (streamed < 64 * 1024 * 1024 && !res.destroyed) res.once('drain', more);
      };
      more();
    });
    try {
      await expect(new PkarrRelay(big.url).get(nameplateKey('5').publicKey)).rejects.toThrow(/over 1072 bytes/);
      await expect(new PkarrRelay(endless.url).get(nameplateKey('5').publicKey)).rejects.toThrow(/over 1072 bytes/);
      expect(streamed).toBeLessThan(64 * 1024 * 1024);
    } finally {
      await big.close();
      await endless.close();
    }
  });

  it('records older than the longest invitation or far in the future are not an invitation', async () => {
    expect(isFresh(nowUs(), MAX_INVITATION_SECONDS)).toBe(true);
    expect(isFresh(nowUs() - BigInt(MAX_INVITATION_SECONDS + 3600) * 1_000_000n, MAX_INVITATION_SECONDS)).toBe(false);
    expect(isFresh(nowUs() + 3600n * 1_000_000n, MAX_INVITATION_SECONDS)).toBe(false);
    for (const ts of [nowUs() - BigInt(MAX_INVITATION_SECONDS + 3600) * 1_000_000n, nowUs() + 3600n * 1_000_000n]) {
      const body = record(ts);
      const r = await hostileRelay((res) => {
        res.writeHead(200, { 'content-length': String(body.length) });
        res.end(body);
      });
      try {
        // The signature verifies (a replayed or future-dated record is genuine), but it names no live invitation.
        expect((await new PkarrRelay(r.url).get(nameplateKey('5').publicKey))?.timestampUs).toBe(ts);
        const rv = new Rendezvous(new PkarrRelay(r.url), false, quietLog);
        await expect(rv.lookup('5', 2000)).rejects.toThrow(/could not find the inviter/);
        expect(await rv.holder('5')).toBeNull();
      } finally {
        await r.close();
      }
    }
    const fresh = record(nowUs());
    const ok = await hostileRelay((res) => res.end(fresh));
    try {
      expect((await new Rendezvous(new PkarrRelay(ok.url), false, quietLog).lookup('5', 2000)).addr.id).toBe('ab'.repeat(32));
    } finally {
      await ok.close();
    }
  });
});
