// Groups in the address book: named lists of targets, written `@NAME` wherever many targets are
// accepted. `@a,@b,box3` is the union of both groups and box3, each target once, in order.

import { join } from 'node:path';
import { BurrowError, ErrorCodes } from './errors.js';
import { ensurePrivateDir, parseJsonObject, readTextOptional, writeFileAtomic } from './fsutil.js';
import { StateFiles } from './paths.js';
import { isAliasName, parseTarget } from './target.js';

export type Groups = Record<string, string[]>;

export function groupsPath(state: string): string {
  return join(state, StateFiles.groups);
}

export function readGroups(state: string): Groups {
  const v = parseJsonObject(readTextOptional(groupsPath(state)) ?? '', groupsPath(state));
  const out: Groups = {};
  for (const [k, members] of Object.entries(v)) {
    if (Array.isArray(members)) out[k] = members.filter((m): m is string => typeof m === 'string');
  }
  return out;
}

function writeGroups(state: string, all: Groups): void {
  ensurePrivateDir(state);
  writeFileAtomic(groupsPath(state), JSON.stringify(all, null, 2) + '\n');
}

/** A member is a target, or `@NAME` for another group (expanded when used). */
function checkMember(m: string): string {
  const s = m.trim();
  if (s.startsWith('@')) {
    if (!isAliasName(s.slice(1))) throw new BurrowError(ErrorCodes.BadArgument, `${JSON.stringify(s)} is not a group name`);
  } else parseTarget(s); // throws BadTarget with the expected forms
  return s;
}

/** Add members to NAME, creating it; members already in it stay where they are. */
export function addToGroup(state: string, name: string, members: string[]): string[] {
  if (!isAliasName(name)) throw new BurrowError(ErrorCodes.BadArgument, `group ${JSON.stringify(name)}: use letters, digits, "_", "." and "-"`);
  const checked = members.flatMap((m) => m.split(',')).filter((m) => m.trim() !== '').map(checkMember);
  const all = readGroups(state);
  const list = all[name] ?? [];
  for (const m of checked) if (!list.includes(m)) list.push(m);
  all[name] = list;
  writeGroups(state, all);
  return list;
}

/**
 * Remove members from NAME, or NAME itself when no members are given. Returns what is left
 * (undefined when the group is gone); throws NotFound for an unknown group or member.
 */
export function removeFromGroup(state: string, name: string, members: string[]): string[] | undefined {
  const all = readGroups(state);
  const list = all[name];
  if (list === undefined) throw new BurrowError(ErrorCodes.NotFound, `no group named ${JSON.stringify(name)} (see burrow group list)`);
  if (members.length === 0) {
    delete all[name];
    writeGroups(state, all);
    return undefined;
  }
  for (const m of members.flatMap((x) => x.split(',')).map((x) => x.trim()).filter((x) => x !== '')) {
    const i = list.indexOf(m);
    if (i < 0) throw new BurrowError(ErrorCodes.NotFound, `${m} is not in group ${name}`);
    list.splice(i, 1);
  }
  writeGroups(state, all);
  return list;
}

/** Whether a target spec names more than one target: a group or a comma list. */
export function isManyTargets(spec: string): boolean {
  return spec.startsWith('@') || spec.includes(',');
}

/**
 * Expand specs (each possibly `@a,@b,box3`) into targets: groups replaced by their members
 * (nested groups too), each target once, first mention first.
 */
export function expandTargets(specs: readonly string[], groups: Groups): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const visit = (spec: string, trail: readonly string[]): void => {
    for (const part of spec.split(',').map((s) => s.trim())) {
      if (part === '') continue;
      if (part.startsWith('@')) {
        const name = part.slice(1);
        const members = groups[name];
        if (members === undefined) throw new BurrowError(ErrorCodes.UnknownTarget, `no group named ${JSON.stringify(name)} (see burrow group list)`);
        if (trail.includes(name)) throw new BurrowError(ErrorCodes.BadArgument, `group ${name} contains itself (through ${[...trail, name].join(' -> ')})`);
        for (const m of members) visit(m, [...trail, name]);
      } else if (!seen.has(part)) {
        parseTarget(part);
        seen.add(part);
        out.push(part);
      }
    }
  };
  for (const s of specs) visit(s, []);
  return out;
}
