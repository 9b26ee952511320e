// Pairing codes: `<nameplate>-<word>-<word>-<word>`. The nameplate only says where to meet (it
// is public: the rendezvous key is derived from it); the words are the password, never sent to
// anyone. Used by the CLI (to check what the user typed) and the daemon (to make codes).

import { BurrowError, ErrorCodes } from '../errors.js';
import { PAIR_WORDS } from './words.js';

export const CODE_WORDS = 3;
/** Bits of password in a code: each word is one of 512. */
export const PASSWORD_BITS = CODE_WORDS * Math.log2(PAIR_WORDS.length);
/** Nameplates are whole numbers in this range; short ones first, longer ones on collision. */
export const MAX_NAMEPLATE = 9999;

export interface PairCode {
  /** Decimal digits, no leading zeros. */
  nameplate: string;
  words: string[];
}

export function formatCode(c: PairCode): string {
  return [c.nameplate, ...c.words].join('-');
}

/** The password string both sides feed to the PAKE: the words, canonical, joined by "-". */
export function passwordOf(c: PairCode): string {
  return c.words.join('-');
}

/** A word from what was typed: the word itself, or a prefix that only one word has. */
export function matchWord(typed: string): string {
  const t = typed.toLowerCase();
  if (PAIR_WORDS.includes(t)) return t;
  const hits = PAIR_WORDS.filter((w) => w.startsWith(t));
  if (hits.length === 1) return hits[0] as string;
  if (hits.length === 0) throw new BurrowError(ErrorCodes.BadArgument, `${JSON.stringify(typed)} is not a word of pairing codes: check the code`);
  throw new BurrowError(ErrorCodes.BadArgument, `${JSON.stringify(typed)} could be ${hits.slice(0, 4).join(', ')}${hits.length > 4 ? ', ...' : ''}: type more of the word`);
}

/**
 * Read a code as people type it: any case, any separators (or none between the number and the
 * first word), and words shortened to any prefix that is unambiguous.
 */
export function parseCode(text: string): PairCode {
  const tokens = text.toLowerCase().match(/[0-9]+|[a-z]+/g) ?? [];
  const [first, ...rest] = tokens;
  const usage = 'a pairing code looks like 42-word-word-word (from burrow invite on the other machine)';
  if (first === undefined || !/^[0-9]+$/.test(first)) throw new BurrowError(ErrorCodes.BadArgument, `${usage}; this one does not start with a number`);
  const n = Number(first);
  if (n < 1 || n > MAX_NAMEPLATE) throw new BurrowError(ErrorCodes.BadArgument, `${usage}; ${first} is not a nameplate (1-${MAX_NAMEPLATE})`);
  if (rest.length !== CODE_WORDS || rest.some((w) => /[0-9]/.test(w))) throw new BurrowError(ErrorCodes.BadArgument, `${usage}; it needs exactly ${CODE_WORDS} words after the number`);
  return { nameplate: String(n), words: rest.map(matchWord) };
}

/** A fresh code for a nameplate; `randomIndex(n)` must be a uniform CSPRNG draw in [0, n). */
export function newCode(nameplate: number, randomIndex: (n: number) => number): PairCode {
  const words: string[] = [];
  for (let i = 0; i < CODE_WORDS; i++) words.push(PAIR_WORDS[randomIndex(PAIR_WORDS.length)] as string);
  return { nameplate: String(nameplate), words };
}
