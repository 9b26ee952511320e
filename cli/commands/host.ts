// burrow host id|ticket|authorize|revoke|list. id and ticket come from the daemon; the lists are
// files in the state dir, edited here and read afresh by the daemon for each new connection.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { authorizeEndpoint, editList, parseEndpointList, parseKeyLine, parseKeyList, type KeyEntry } from '../../shared/authlists.js';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { ensurePrivateDir, readTextOptional } from '../../shared/fsutil.js';
import { StateFiles } from '../../shared/paths.js';
import { endpointKeyLine } from '../../shared/sshkey.js';
import { isEndpointId } from '../../shared/target.js';
import { ask, usage, type CliContext } from '../context.js';

type Grant = { kind: 'endpoint'; id: string } | { kind: 'key'; key: KeyEntry; line: string };

/** An endpoint id, a public key line (possibly split over argv words), or a .pub file. */
function parseGrant(words: string[]): Grant {
  const text = words.join(' ').trim();
  if (isEndpointId(text.toLowerCase())) return { kind: 'endpoint', id: text.toLowerCase() };
  let line = text;
  if (words.length === 1 && existsSync(text)) line = readFileSync(text, 'utf8').trim().split('\n')[0] ?? '';
  const key = parseKeyLine(line);
  if (!key) throw new BurrowError(ErrorCodes.BadArgument, `${JSON.stringify(text.slice(0, 80))} is not an endpoint id, a public key line or a .pub file`);
  return { kind: 'key', key, line: line.trim() };
}

const edit = editList;

export async function hostCommand(ctx: CliContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  const endpoints = join(ctx.state, StateFiles.authorizedEndpoints);
  const keys = join(ctx.state, StateFiles.authorizedKeys);
  switch (verb) {
    case 'id':
    case 'ticket': {
      const r = await ask(ctx, { t: 'status' });
      process.stdout.write(`${verb === 'id' ? r.daemon.endpointId : r.daemon.ticket}\n`);
      return 0;
    }
    case 'authorize': {
      if (rest.length === 0) usage('usage: burrow host authorize ENDPOINT_ID|"ssh-ed25519 AAAA... comment"|FILE.pub');
      const g = parseGrant(rest);
      ensurePrivateDir(ctx.state);
      if (g.kind === 'endpoint') {
        authorizeEndpoint(ctx.state, g.id);
        process.stdout.write(`authorized endpoint ${g.id}\n`);
      } else {
        if (!parseKeyList(readTextOptional(keys) ?? '').some((k) => k.base64 === g.key.base64)) edit(keys, (l) => [...l, g.line]);
        process.stdout.write(`authorized key ${g.key.type} ${g.key.comment}\n`);
      }
      return 0;
    }
    case 'revoke': {
      if (rest.length === 0) usage('usage: burrow host revoke ENDPOINT_ID|"ssh-ed25519 AAAA..."|FILE.pub');
      const g = parseGrant(rest);
      const b64 = g.kind === 'endpoint' ? endpointKeyLine(g.id).split(' ')[1] : g.key.base64;
      let removed = 0;
      const dropKey = (l: string): boolean => {
        const k = parseKeyLine(l);
        const hit = k !== null && k.base64 === b64;
        if (hit) removed++;
        return !hit;
      };
      if (existsSync(keys)) edit(keys, (lines) => lines.filter(dropKey));
      if (g.kind === 'endpoint' && existsSync(endpoints)) {
        edit(endpoints, (lines) =>
          lines.filter((l) => {
            const hit = parseEndpointList(l)[0]?.id === g.id;
            if (hit) removed++;
            return !hit;
          }),
        );
      }
      if (removed === 0) {
        process.stderr.write('burrow: nothing to revoke: not authorized\n');
        return 1;
      }
      process.stdout.write(`revoked (${removed} line${removed === 1 ? '' : 's'} removed); live connections are not cut\n`);
      return 0;
    }
    case 'list': {
      const eps = parseEndpointList(readTextOptional(endpoints) ?? '');
      const ks = parseKeyList(readTextOptional(keys) ?? '');
      process.stdout.write(`authorized endpoints (${eps.length === 0 ? 'none: any endpoint with an authorized key may connect' : eps.length}):\n`);
      for (const e of eps) process.stdout.write(`  ${e.id}${e.comment ? `  ${e.comment}` : ''}\n`);
      process.stdout.write(`authorized keys in ${keys} (${ks.length}); ~/.ssh/authorized_keys is also honoured:\n`);
      for (const k of ks) process.stdout.write(`  ${k.type} ${k.base64.slice(0, 24)}... ${k.comment}\n`);
      return 0;
    }
    default:
      return usage('usage: burrow host id|ticket|authorize|revoke|list');
  }
}
