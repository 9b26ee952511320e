// From a target string to what the pool dials: aliases looked up, tickets decoded, defaults filled.

import { readAliasesAsync } from '../../shared/aliases.js';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { aliasCandidate, hostPort, parseTarget, type Target } from '../../shared/target.js';
import { parseTicket } from '../transport/iroh.js';
import type { ResolvedTarget } from './pool.js';

export async function resolveTarget(spec: string, state: string, defaultUser: string): Promise<ResolvedTarget> {
  let t: Target = parseTarget(spec);
  const name = aliasCandidate(t);
  if (name !== undefined) {
    const value = (await readAliasesAsync(state))[name];
    if (value !== undefined) {
      const inner = parseTarget(value);
      const user = t.user ?? inner.user;
      t = { ...inner, ...(user !== undefined ? { user } : {}) };
    } else if (t.kind === 'alias') {
      throw new BurrowError(ErrorCodes.UnknownTarget, `no alias or host named ${JSON.stringify(name)} (burrow alias list shows the aliases)`);
    }
  }
  const user = t.user ?? defaultUser;
  switch (t.kind) {
    case 'ticket': {
      const peer = parseTicket(t.ticket);
      return { kind: 'iroh', key: `${user}@${peer.id}`, label: spec, user, endpointId: peer.id, peer };
    }
    case 'endpoint':
      return { kind: 'iroh', key: `${user}@${t.id}`, label: spec, user, endpointId: t.id, peer: { id: t.id, direct: [] } };
    case 'tcp': {
      const port = t.port ?? 22;
      return { kind: 'tcp', key: `${user}@${hostPort(t.host, port)}`, label: spec, user, host: t.host, port };
    }
    case 'alias':
      throw new BurrowError(ErrorCodes.Internal, 'alias left unresolved');
  }
}
