// CPace on ristretto255/SHA-512 against draft-irtf-cfrg-cpace's test vectors (appendix
// "Test vector for CPace using group ristretto255 and hash SHA-512" and its string utilities).

import { describe, expect, it } from 'vitest';
import {
  CPaceAbort,
  CPaceParty,
  calculateGenerator,
  confirmationTag,
  generatorString,
  intermediateSessionKey,
  lvCat,
  prependLen,
  scalarFromLE,
  scalarMult,
  scalarMultVfy,
  transcriptIr,
} from '../daemon/pair/cpace.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const V = {
  PRS: hex('50617373776F7264'),
  CI: hex('0B415F696E69746961746F720B425F726573706F6E646572'),
  sid: hex('7E4B4791D6A8EF019B936C79FB7F2C57'),
  g: '222b6b195fe84b1652badb6f6a3ae3d24341e7306967f0b8115b40d5698c7e56',
  ya: hex('DA3D23700A9E5699258AEF94DC060DFDA5EBB61F02A5EA77FAD53F4FF0976D08'),
  ADa: hex('414461'),
  Ya: 'd6bac480f2c386c394efc7c47adb9925dcd2630b64f240c50f8d0eec482b9157',
  yb: hex('D2316B454718C35362D83D69DF6320F38578ED5984651435E2949762D900B80D'),
  ADb: hex('414462'),
  Yb: '3ea7e0b19560d7c0b0f5734f63b955286dfa8232b5ebe63324e2d9e7433f7258',
  K: '80b69a8a76457ab6a4d7f887a4bf6b55a2f80ac19c333f917a05fc9887c8b40f',
  ISK_IR: 'b69effbf61b51d56401c0f65601abe428de8206feaaf0e32198896dcae7b35cd2b38950a39dfd5d4a79164614c2984f7daa460b588c1e80c3fa2068af7900447',
};
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('CPace ristretto255 (draft test vectors)', () => {
  it('encodes prepend_len, lv_cat and transcript_ir as the draft does', () => {
    expect(toHex(prependLen(new Uint8Array()))).toBe('00');
    expect(toHex(prependLen(Buffer.from('1234')))).toBe('0431323334');
    const r128 = Buffer.from(Array.from({ length: 128 }, (_, i) => i));
    expect(toHex(prependLen(r128)).slice(0, 8)).toBe('80010001');
    expect(toHex(lvCat(Buffer.from('1234'), Buffer.from('5'), Buffer.from(''), Buffer.from('678')))).toBe('043132333401350003363738');
    expect(toHex(transcriptIr(Buffer.from('123'), Buffer.from('PartyA'), Buffer.from('234'), Buffer.from('PartyB')))).toBe('03313233065061727479410332333406506172747942');
  });

  it('derives the draft generator string and generator g', () => {
    const s = generatorString(V.PRS, V.CI, V.sid);
    expect(s.length).toBe(170);
    expect(toHex(s)).toBe(
      '11435061636552697374726574746f3235350850617373776f726464' + '00'.repeat(100) + '180b415f696e69746961746f720b425f726573706f6e646572107e4b4791d6a8ef019b936c79fb7f2c57',
    );
    expect(toHex(calculateGenerator(V.PRS, V.CI, V.sid).toBytes())).toBe(V.g);
  });

  it('computes Ya, Yb, K and ISK_IR from the draft scalars', () => {
    const g = calculateGenerator(V.PRS, V.CI, V.sid);
    const ya = scalarFromLE(V.ya);
    const yb = scalarFromLE(V.yb);
    expect(toHex(scalarMult(ya, g))).toBe(V.Ya);
    expect(toHex(scalarMult(yb, g))).toBe(V.Yb);
    expect(toHex(scalarMultVfy(ya, hex(V.Yb)))).toBe(V.K);
    expect(toHex(scalarMultVfy(yb, hex(V.Ya)))).toBe(V.K);
    expect(toHex(intermediateSessionKey(V.sid, hex(V.K), hex(V.Ya), V.ADa, hex(V.Yb), V.ADb))).toBe(V.ISK_IR);
    // the same through the party objects both sides use
    const a = new CPaceParty('initiator', V.PRS, V.CI, V.sid, V.ADa, ya);
    const b = new CPaceParty('responder', V.PRS, V.CI, V.sid, V.ADb, yb);
    expect(toHex(a.share)).toBe(V.Ya);
    expect(toHex(a.finish(b.share, b.ad).isk)).toBe(V.ISK_IR);
    expect(toHex(b.finish(a.share, a.ad).isk)).toBe(V.ISK_IR);
  });

  it('scalar_mult_vfy: the draft valid case, and the neutral element for invalid encodings', () => {
    const s = scalarFromLE(hex('7CD0E075FA7955BA52C02759A6C90DBBFC10E6D40AEA8D283E407D88CF538A05'));
    expect(toHex(scalarMultVfy(s, hex('2C3C6B8C4F3800E7AEF6864025B4ED79BD599117E427C41BD47D93D654B4A51C')))).toBe('7c13645fe790a468f62c39beb7388e541d8405d1ade69d1778c5fe3e7f6b600e');
    expect(toHex(scalarMultVfy(s, hex('2B3C6B8C4F3800E7AEF6864025B4ED79BD599117E427C41BD47D93D654B4A51C')))).toBe('00'.repeat(32));
    expect(toHex(scalarMultVfy(s, new Uint8Array(32)))).toBe('00'.repeat(32));
    const a = new CPaceParty('initiator', V.PRS, V.CI, V.sid, V.ADa);
    expect(() => a.finish(new Uint8Array(32), V.ADb)).toThrow(CPaceAbort);
  });

  it('agrees on keys and tags only when PRS and CI match', () => {
    const a = new CPaceParty('initiator', Buffer.from('apple-banjo-cobra'), V.CI, V.sid, V.ADa);
    const b = new CPaceParty('responder', Buffer.from('apple-banjo-cobra'), V.CI, V.sid, V.ADb);
    const ka = a.finish(b.share, b.ad);
    const kb = b.finish(a.share, a.ad);
    expect(ka.isk.equals(kb.isk)).toBe(true);
    expect(confirmationTag(ka.macKey, b.share, b.ad).equals(confirmationTag(kb.macKey, b.share, b.ad))).toBe(true);
    const wrong = new CPaceParty('responder', Buffer.from('apple-banjo-cobrb'), V.CI, V.sid, V.ADb);
    expect(a.finish(wrong.share, wrong.ad).isk.equals(wrong.finish(a.share, a.ad).isk)).toBe(false);
    const otherCi = new CPaceParty('responder', Buffer.from('apple-banjo-cobra'), Buffer.from('another channel'), V.sid, V.ADb);
    expect(a.finish(otherCi.share, otherCi.ad).isk.equals(otherCi.finish(a.share, a.ad).isk)).toBe(false);
  });
});
