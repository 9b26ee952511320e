// Host keys of plain SSH targets, in OpenSSH's known_hosts format: ~/.ssh/known_hosts is read,
// burrow's own file is read and written. A new host is accepted and recorded (like
// StrictHostKeyChecking=accept-new); a changed key is a hard error naming the file and line.

import { createHmac } from 'node:crypto';
import { appendFile } from 'node:fs/promises';
import { readTextOptionalAsync } from '../../shared/fsutil.js';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { fingerprint } from '../../shared/sshkey.js';

export interface KnownHostsFiles {
  /** Read only: the user's OpenSSH file. */
  user: string;
  /** Read and appended: burrow's own. */
  own: string;
}

/** The name OpenSSH records for host:port. */
export function knownHostName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function keyType(blob: Buffer): string {
  if (blob.length < 4) return '';
  const n = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + n).toString('latin1');
}

function globMatch(pattern: string, name: string): boolean {
  // Only * and ? are wildcards in known_hosts; everything else, [ and ] included, is literal.
  const re = new RegExp('^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$', 'i');
  return re.test(name);
}

/** Whether a known_hosts host field (patterns, negations, or one hashed name) covers `name`. */
export function hostFieldMatches(field: string, name: string): boolean {
  if (field.startsWith('|1|')) {
    const [, , salt, hash] = field.split('|');
    if (!salt || !hash) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  let matched = false;
  for (const p of field.split(',')) {
    if (p.startsWith('!')) {
      if (globMatch(p.slice(1), name)) return false;
    } else if (globMatch(p, name)) matched = true;
  }
  return matched;
}

export type HostKeyVerdict = { ok: true; recorded: boolean } | { ok: false; message: string };

/** Check `blob` for host:port against both files; record it in burrow's file when new. */
export async function checkKnownHost(files: KnownHostsFiles, host: string, port: number, blob: Buffer): Promise<HostKeyVerdict> {
  const name = knownHostName(host, port);
  const type = keyType(blob);
  const b64 = blob.toString('base64');
  let mismatch: string | undefined;
  for (const file of [files.user, files.own]) {
    const lines = ((await readTextOptionalAsync(file)) ?? '').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const fields = (lines[i] ?? '').trim().split(/\s+/);
      if (fields.length < 3 || (fields[0] ?? '').startsWith('#')) continue;
      let marker = '';
      if ((fields[0] ?? '').startsWith('@')) marker = fields.shift() ?? '';
      const [hosts = '', t = '', key = ''] = fields;
      if (marker === '@cert-authority' || !hostFieldMatches(hosts, name)) continue;
      if (marker === '@revoked') {
        if (key === b64) return { ok: false, message: `host key ${fingerprint(blob)} for ${name} is marked @revoked in ${file}:${i + 1}` };
        continue;
      }
      if (t !== type) continue;
      if (key === b64) return { ok: true, recorded: false };
      mismatch ??= `HOST KEY CHANGED for ${name}: it now offers ${fingerprint(blob)}, but ${file}:${i + 1} has another ${type} key. If the change is expected, remove that line.`;
    }
  }
  if (mismatch) return { ok: false, message: mismatch };
  try {
    await appendFile(files.own, `${name} ${type} ${b64}\n`, { mode: 0o600 });
  } catch (err) {
    throw new BurrowError(ErrorCodes.IoError, `cannot record host key in ${files.own}: ${(err as Error).message}`);
  }
  return { ok: true, recorded: true };
}
