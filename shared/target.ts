// The one target parser: alias | ticket | endpoint id | [user@]host[:port].

import { BurrowError, ErrorCodes, quoteInput } from './errors.js';

export type Target =
  | { kind: 'ticket'; ticket: string; user?: string }
  | { kind: 'endpoint'; id: string; user?: string }
  /** A plain SSH server over TCP; `port` is absent when not given (22 is assumed). */
  | { kind: 'tcp'; host: string; port?: number; user?: string }
  | { kind: 'alias'; name: string; user?: string };

const ENDPOINT_ID = /^[0-9a-f]{64}$/;
const TICKET = /^endpoint[a-z2-7]{32,}$/;
const ALIAS = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const HOSTNAME = /^[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})$/;
const USER = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

/** An endpoint id: the ed25519 public key in lowercase hex. */
/** A TCP port written in decimal (0 only when allowZero: "any port"), or undefined. */
export function portNumber(text: string, allowZero = false): number | undefined {
  const n = Number(text);
  return /^\d{1,5}$/.test(text) && n <= 65535 && (n > 0 || allowZero) ? n : undefined;
}

/** host:port as OpenSSH and URLs write it: an IPv6 host in brackets. */
export function hostPort(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export function isEndpointId(s: string): boolean {
  return ENDPOINT_ID.test(s);
}

/** A ticket's text form (its content is checked where it is decoded). */
export function isTicket(s: string): boolean {
  return TICKET.test(s);
}

function bad(spec: string, why: string): BurrowError {
  return new BurrowError(ErrorCodes.BadTarget, `bad target ${quoteInput(spec, 120)}: ${why}; expected ALIAS, TICKET, ENDPOINT_ID or [user@]host[:port]`);
}

/**
 * Parse a target. A bare name (no user, no port) is returned as `tcp` with no port; the daemon
 * treats it as an alias when one by that name exists (see `aliasCandidate`).
 * `NAME.burrow` always means the alias NAME (for `ssh NAME.burrow` through burrow ssh-config).
 */
export function parseTarget(spec: string): Target {
  const s = spec.trim();
  if (s === '') throw bad(spec, 'empty');
  if (s.startsWith('-')) throw bad(spec, 'must not start with "-"');
  let user: string | undefined;
  let rest = s;
  const at = s.lastIndexOf('@');
  if (at >= 0) {
    user = s.slice(0, at);
    rest = s.slice(at + 1);
    if (!USER.test(user)) throw bad(spec, `user ${quoteInput(user)} has characters a login name cannot have`);
  }
  const u = user !== undefined ? { user } : {};
  if (isEndpointId(rest.toLowerCase())) return { kind: 'endpoint', id: rest.toLowerCase(), ...u };
  if (isTicket(rest)) return { kind: 'ticket', ticket: rest, ...u };
  if (rest.endsWith('.burrow')) {
    const name = rest.slice(0, -'.burrow'.length);
    if (!ALIAS.test(name)) throw bad(spec, 'alias names are letters, digits, "_", "." and "-"');
    return { kind: 'alias', name, ...u };
  }
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(rest);
  if (v6) {
    host = v6[1] as string;
    portText = v6[2];
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon >= 0 && rest.indexOf(':') !== colon) throw bad(spec, 'an IPv6 address needs brackets: [addr]:port');
    host = colon >= 0 ? rest.slice(0, colon) : rest;
    portText = colon >= 0 ? rest.slice(colon + 1) : undefined;
    if (!HOSTNAME.test(host)) throw bad(spec, `${quoteInput(host)} is not a host name`);
  }
  const t: Target = { kind: 'tcp', host, ...u };
  if (portText !== undefined) {
    const port = portNumber(portText);
    if (port === undefined) throw bad(spec, `port ${quoteInput(portText)} is not 1-65535`);
    t.port = port;
  }
  return t;
}

/** The alias name a parsed target may stand for: a bare name with no port. */
export function aliasCandidate(t: Target): string | undefined {
  if (t.kind === 'alias') return t.name;
  if (t.kind === 'tcp' && t.port === undefined && ALIAS.test(t.host)) return t.host;
  return undefined;
}

export function isAliasName(s: string): boolean {
  return ALIAS.test(s) && !isEndpointId(s) && !s.startsWith('endpoint');
}

/** One side of a copy: a local path, or TARGET:path. */
export type CopySpec = { kind: 'local'; path: string } | { kind: 'remote'; target: string; path: string };

/**
 * Split `[user@]host[:port]:path`, `ALIAS:path`, `TICKET:path` or `ID:path` from a local path,
 * the way scp does: anything starting with / or ., or with a / before its first colon, is local.
 * A remote path may be empty (the remote home).
 */
export function parseCopySpec(spec: string): CopySpec {
  const colon = spec.indexOf(':');
  const slash = spec.indexOf('/');
  if (spec.startsWith('/') || spec.startsWith('.') || colon < 0 || (slash >= 0 && slash < colon)) return { kind: 'local', path: spec };
  let targetEnd = colon;
  if (spec.startsWith('[')) targetEnd = spec.indexOf(':', spec.indexOf(']'));
  // host:PORT:path — a number between two colons is a port.
  const m = /^(\d{1,5}):/.exec(spec.slice(targetEnd + 1));
  if (m && m[1]) targetEnd += 1 + m[1].length;
  const target = spec.slice(0, targetEnd);
  parseTarget(target); // throws BadTarget with the expected forms
  return { kind: 'remote', target, path: spec.slice(targetEnd + 1) };
}
