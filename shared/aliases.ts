// The address book: memorable names for tickets, endpoint ids and SSH hosts, in the state dir.
// The CLI edits it; the daemon reads it afresh when resolving a target.

import { join } from 'node:path';
import { BurrowError, ErrorCodes, quoteInput } from './errors.js';
import { ensurePrivateDir, parseJsonObject, readTextOptional, readTextOptionalAsync, writeFileAtomic } from './fsutil.js';
import { StateFiles } from './paths.js';
import { isAliasName, parseTarget } from './target.js';

export type Aliases = Record<string, string>;

export function aliasesPath(state: string): string {
  return join(state, StateFiles.aliases);
}

export function readAliases(state: string): Aliases {
  return parseAliases(readTextOptional(aliasesPath(state)) ?? '', state);
}

/** For the daemon, which keeps file reads off its event loop. */
export async function readAliasesAsync(state: string): Promise<Aliases> {
  return parseAliases((await readTextOptionalAsync(aliasesPath(state))) ?? '', state);
}

function parseAliases(text: string, state: string): Aliases {
  const v = parseJsonObject(text, aliasesPath(state));
  const out: Aliases = {};
  for (const [k, val] of Object.entries(v)) if (typeof val === 'string') out[k] = val;
  return out;
}

export function addAlias(state: string, name: string, target: string): void {
  if (!isAliasName(name)) throw new BurrowError(ErrorCodes.BadArgument, `alias ${quoteInput(name)}: use letters, digits, "_", "." and "-" (and not an endpoint id or ticket)`);
  const t = parseTarget(target);
  if (t.kind === 'alias') throw new BurrowError(ErrorCodes.BadArgument, 'an alias cannot point at another alias');
  const all = readAliases(state);
  all[name] = target.trim();
  ensurePrivateDir(state);
  writeFileAtomic(aliasesPath(state), JSON.stringify(all, null, 2) + '\n');
}

export function removeAlias(state: string, name: string): boolean {
  const all = readAliases(state);
  if (!(name in all)) return false;
  delete all[name];
  writeFileAtomic(aliasesPath(state), JSON.stringify(all, null, 2) + '\n');
  return true;
}
