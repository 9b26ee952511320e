// The host's two allowlists, as files in the state dir: authorized_endpoints (one endpoint id per
// line, optional comment) and authorized_keys (OpenSSH format). The CLI edits them, the daemon
// reads them afresh for each new connection, so edits apply without a restart.

import { join } from 'node:path';
import { ensurePrivateDir, readTextOptional, readTextOptionalAsync, writeFileAtomic } from './fsutil.js';
import { StateFiles } from './paths.js';
import { endpointKeyLine } from './sshkey.js';
import { isEndpointId } from './target.js';

export interface EndpointEntry {
  id: string;
  comment: string;
}

export interface KeyEntry {
  /** OpenSSH options before the key type (`command="..."`, `restrict`, ...), raw. */
  options: string;
  type: string;
  /** The public key blob, base64 as written. */
  base64: string;
  comment: string;
}

const KEY_TYPES = /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com|ssh-dss)$/;

const meaningful = (text: string): string[] =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));

export function parseEndpointList(text: string): EndpointEntry[] {
  const out: EndpointEntry[] = [];
  for (const line of meaningful(text)) {
    const [id = '', ...rest] = line.split(/\s+/);
    if (isEndpointId(id.toLowerCase())) out.push({ id: id.toLowerCase(), comment: rest.join(' ') });
  }
  return out;
}

/** Split one authorized_keys line; options may contain quoted spaces. Returns null for a line that is not a key. */
export function parseKeyLine(line: string): KeyEntry | null {
  const t = line.trim();
  if (t === '' || t.startsWith('#')) return null;
  // A control character (a newline above all) inside a line could smuggle a second line, with
  // options of its own, into authorized_keys: such a line is not a key. Tabs separate fields.
  if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(t)) return null;
  const fields: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < t.length; i++) {
    const ch = t[i] as string;
    if (ch === '\\' && quoted && i + 1 < t.length) {
      cur += ch + (t[++i] as string);
    } else if (ch === '"') {
      quoted = !quoted;
      cur += ch;
    } else if (!quoted && (ch === ' ' || ch === '\t')) {
      if (cur !== '') fields.push(cur);
      cur = '';
      if (fields.length >= 3) {
        fields.push(t.slice(i + 1).trim());
        break;
      }
    } else cur += ch;
  }
  if (cur !== '' && fields.length < 4) fields.push(cur);
  const typeAt = fields.findIndex((f) => KEY_TYPES.test(f));
  if (typeAt < 0 || typeAt > 1) return null;
  const base64 = fields[typeAt + 1];
  if (base64 === undefined || !/^[A-Za-z0-9+/]+=*$/.test(base64)) return null;
  const comment = typeAt === 0 ? fields.slice(2).join(' ') : fields.slice(3).join(' ');
  return { options: typeAt === 1 ? (fields[0] as string) : '', type: fields[typeAt] as string, base64, comment };
}

export function parseKeyList(text: string): KeyEntry[] {
  return text
    .split('\n')
    .map(parseKeyLine)
    .filter((k): k is KeyEntry => k !== null);
}

export async function readEndpointList(path: string): Promise<EndpointEntry[]> {
  return parseEndpointList((await readTextOptionalAsync(path)) ?? '');
}

export async function readKeyList(path: string): Promise<KeyEntry[]> {
  return parseKeyList((await readTextOptionalAsync(path)) ?? '');
}

/** Rewrite a list file with `change` applied to its lines (atomically, mode 0600). */
export function editList(path: string, change: (lines: string[]) => string[]): void {
  const lines = (readTextOptional(path) ?? '').split('\n').filter((l, i, all) => l !== '' || i < all.length - 1);
  writeFileAtomic(path, change(lines).join('\n') + '\n', 0o600);
}

/**
 * Let an endpoint in at both stages (an endpoint id is also an ed25519 SSH key): its id in
 * authorized_endpoints, its key in authorized_keys. What is already there is not repeated.
 */
export function authorizeEndpoint(state: string, id: string): void {
  ensurePrivateDir(state);
  const endpoints = join(state, StateFiles.authorizedEndpoints);
  const keys = join(state, StateFiles.authorizedKeys);
  if (!parseEndpointList(readTextOptional(endpoints) ?? '').some((e) => e.id === id)) editList(endpoints, (l) => [...l, id]);
  const line = endpointKeyLine(id);
  const b64 = line.split(' ')[1];
  if (!parseKeyList(readTextOptional(keys) ?? '').some((k) => k.base64 === b64)) editList(keys, (l) => [...l, line]);
}
