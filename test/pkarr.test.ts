// The pkarr pieces of pairing: z-base-32 keys, TXT packets (including compressed names, which
// relays may send back), signed relay payloads, and the rendezvous record's strings.

import { describe, expect, it } from 'vitest';
import { decodeTxtPacket, encodeTxtPacket, nameplateKey, signedPayload, verifyPayload, z32Decode, z32Encode } from '../daemon/pair/pkarr.js';
import { parseRecordStrings, recordStrings } from '../daemon/pair/rendezvous.js';

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
