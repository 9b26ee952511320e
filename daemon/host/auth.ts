// The host's two checks, both before any session exists: the remote endpoint id against
// authorized_endpoints (transport), and the SSH public key against authorized_keys (SSH).
// Files are read afresh for each connection, so edits apply to the next one without a restart.

import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { ParsedKey } from 'ssh2';
import { readEndpointList, readKeyList, type KeyEntry } from '../../shared/authlists.js';
import { StateFiles } from '../../shared/paths.js';
import type { Logger } from '../log.js';

export interface KeyMatch {
  key: ParsedKey;
  /** Which file authorized it. */
  source: string;
}

export class HostAuth {
  private readonly endpointsFile: string;
  private readonly keyFiles: string[];
  /** Lines with options we already warned about, so each is logged once. */
  private readonly warned = new Set<string>();

  constructor(
    state: string,
    home: string,
    private readonly log: Logger,
  ) {
    this.endpointsFile = join(state, StateFiles.authorizedEndpoints);
    this.keyFiles = [join(home, '.ssh', 'authorized_keys'), join(state, StateFiles.authorizedKeys)];
  }

  /** Whether an endpoints list is in force (non-empty). */
  async hasEndpointList(): Promise<boolean> {
    return (await readEndpointList(this.endpointsFile)).length > 0;
  }

  /** Transport check: with a non-empty list, only listed endpoint ids get through. */
  async endpointAllowed(id: string, requireList: boolean): Promise<{ ok: true } | { ok: false; reason: string }> {
    const list = await readEndpointList(this.endpointsFile);
    if (list.length === 0) return requireList ? { ok: false, reason: 'no authorized endpoints' } : { ok: true };
    return list.some((e) => e.id === id) ? { ok: true } : { ok: false, reason: 'endpoint not authorized' };
  }

  /** SSH check: the key (type + blob) in either authorized_keys file. */
  async findKey(algo: string, blob: Buffer): Promise<KeyMatch | null> {
    const b64 = blob.toString('base64');
    for (const file of this.keyFiles) {
      let entries: KeyEntry[];
      try {
        entries = await readKeyList(file);
      } catch (err) {
        this.log.warn({ file, err: (err as Error).message }, 'cannot read authorized keys');
        continue;
      }
      for (const e of entries) {
        if (e.base64.replace(/=+$/, '') !== b64.replace(/=+$/, '')) continue;
        if (e.options !== '') {
          // Restrictions such as command= or from= are not enforced by the built-in server, so a
          // restricted key is not honoured at all rather than honoured without its restrictions.
          if (!this.warned.has(e.base64)) {
            this.warned.add(e.base64);
            this.log.warn({ file, type: e.type, comment: e.comment }, 'authorized key has options the built-in server does not enforce; ignoring it');
          }
          continue;
        }
        const parsed = ssh2.utils.parseKey(`${e.type} ${e.base64}`);
        if (parsed instanceof Error) continue;
        const key = Array.isArray(parsed) ? parsed[0] : parsed;
        if (key && key.type === algo) return { key, source: file };
        if (key && algo.startsWith('rsa-sha2-') && key.type === 'ssh-rsa') return { key, source: file };
      }
    }
    return null;
  }
}
