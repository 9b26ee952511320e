// Pairing codes: their entropy, and the forgiving ways people type them.

import { describe, expect, it } from 'vitest';
import { CODE_WORDS, PASSWORD_BITS, formatCode, matchWord, newCode, parseCode } from '../shared/pair/code.js';
import { PAIR_WORDS } from '../shared/pair/words.js';

describe('pairing codes', () => {
  it('draws 3 words from 512 distinct lowercase words: 27 bits of password', () => {
    expect(PAIR_WORDS).toHaveLength(512);
    expect(new Set(PAIR_WORDS).size).toBe(512);
    expect(PAIR_WORDS.every((w) => /^[a-z]+$/.test(w))).toBe(true);
    expect(CODE_WORDS).toBe(3);
    expect(PASSWORD_BITS).toBe(27);
    expect(PASSWORD_BITS).toBeGreaterThanOrEqual(24);
  });

  it('formats as nameplate-word-word-word and reads back the same', () => {
    const c = newCode(42, (n) => n - 1);
    expect(formatCode(c)).toBe('42-zulu-zulu-zulu');
    expect(parseCode(formatCode(c))).toEqual(c);
  });

  it('accepts any case, any separators, no separator after the number, and unambiguous prefixes', () => {
    const want = { nameplate: '7', words: ['aardvark', 'banjo', 'zulu'] };
    for (const typed of ['7-aardvark-banjo-zulu', '7 AARDVARK Banjo zulu', '  7_aardvark.banjo,zulu ', '7aardvark-banjo-zulu', '07 aard banj zul', '7 - aa - banj - z']) {
      expect(parseCode(typed)).toEqual(want);
    }
  });

  it('refuses ambiguous prefixes, unknown words, wrong word counts and missing nameplates', () => {
    expect(() => matchWord('cru')).toThrow(/could be crucial, crucifix/);
    expect(() => parseCode('7-aardvark-banjo-qqq')).toThrow(/not a word/);
    expect(() => parseCode('7-aardvark-banjo')).toThrow(/exactly 3 words/);
    expect(() => parseCode('aardvark-banjo-zulu-apple')).toThrow(/does not start with a number/);
    expect(() => parseCode('0-aardvark-banjo-zulu')).toThrow(/not a nameplate/);
    expect(() => parseCode('7-aardvark-banjo-zulu-apple')).toThrow(/exactly 3 words/);
  });

  it('every word is reachable by typing it whole, even when it is a prefix of another', () => {
    for (const w of PAIR_WORDS) expect(matchWord(w.toUpperCase())).toBe(w);
  });
});
