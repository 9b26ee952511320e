// Codes this machine has already spent a PAKE run on without success. A squatter answering a
// nameplate gets one guess per join attempt that reaches it; remembering the codes that got the
// wrong-code answer keeps a retry from handing it another (burrow join --force overrides).
// Stored as SHA-256 hashes in the state dir: the code is dead, but it need not sit there in clear.

import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { readTextOptional } from '../fsutil.js';
import { ensurePrivateDir, writeFileAtomic } from '../fsutil.js';
import { formatCode, type PairCode } from './code.js';

const FILE = 'pair-spent-codes';
/** The file keeps the newest entries only: old codes expired long ago anyway. */
const KEEP = 1000;

/** What the joiner hears when its one PAKE run did not confirm (also the daemon's error text). */
export const WRONG_CODE = 'code did not match (or someone else answered): ask for a new code';

const hashOf = (c: PairCode): string => createHash('sha256').update(`burrow/pair/1 spent ${formatCode(c)}`).digest('hex');

export function isSpent(state: string, c: PairCode): boolean {
  return (readTextOptional(join(state, FILE)) ?? '').split('\n').includes(hashOf(c));
}

export function markSpent(state: string, c: PairCode): void {
  ensurePrivateDir(state);
  const lines = (readTextOptional(join(state, FILE)) ?? '').split('\n').filter((l) => /^[0-9a-f]{64}$/.test(l));
  const h = hashOf(c);
  if (!lines.includes(h)) writeFileAtomic(join(state, FILE), [...lines, h].slice(-KEEP).join('\n') + '\n', 0o600);
}
