// Forward specs as OpenSSH writes them (-L, -R, -D), parsed once for the CLI and the daemon.

import { BurrowError, ErrorCodes, quoteInput } from './errors.js';
import { hostPort, portNumber } from './target.js';

/** A place to listen or connect: TCP host:port or a Unix socket path. */
export type Place = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export type ForwardSpec =
  /** -L: listen here, connect from the remote side. */
  | { type: 'local'; listen: Place; connect: Place }
  /** -R: listen on the remote side, connect from here. */
  | { type: 'remote'; listen: Place; connect: Place }
  /** -D: a SOCKS proxy here; the remote side connects where each client asks. */
  | { type: 'dynamic'; listen: Place };

const FORMS = {
  local: '-L [bind:]port:host:hostport | -L [bind:]port:/remote.sock | -L /local.sock:host:hostport | -L /local.sock:/remote.sock',
  remote: '-R [bind:]port:host:hostport | -R [bind:]port:/local.sock | -R /remote.sock:host:hostport | -R /remote.sock:/local.sock',
  dynamic: '-D [bind:]port',
} as const;

function bad(type: keyof typeof FORMS, spec: string, why: string): BurrowError {
  return new BurrowError(ErrorCodes.BadArgument, `bad forward ${quoteInput(spec, 120)}: ${why}; the forms are ${FORMS[type]}`);
}

/** Split on colons, keeping [bracketed IPv6] whole. */
function fields(spec: string): string[] {
  const out: string[] = [];
  let cur = '';
  let bracket = false;
  for (let i = 0; i < spec.length; i++) {
    const c = spec[i] as string;
    if (c === '[' && cur === '') bracket = true;
    if (c === ']') bracket = false;
    if (c === ':' && !bracket) {
      out.push(cur);
      cur = '';
    } else cur += c;
  }
  out.push(cur);
  return out.map((f) => (f.startsWith('[') && f.endsWith(']') ? f.slice(1, -1) : f));
}

function port(type: keyof typeof FORMS, spec: string, s: string | undefined, allowZero: boolean): number {
  const n = s === undefined ? undefined : portNumber(s, allowZero);
  if (n === undefined) throw bad(type, spec, `${quoteInput(s ?? '')} is not a port`);
  return n;
}

/** The listening side: [bind:]port or /path. Local listeners bind 127.0.0.1 unless told otherwise. */
function listenPlace(type: keyof typeof FORMS, spec: string, f: string[], defaultHost: string): { place: Place; rest: string[] } {
  const first = f[0] ?? '';
  if (first.startsWith('/')) return { place: { kind: 'unix', path: first }, rest: f.slice(1) };
  // bind:port:... has one more field than port:...; a numeric first field is a port.
  const needed = type === 'dynamic' ? 1 : f.length > 1 && (f[1] ?? '').startsWith('/') ? 2 : 3;
  if (f.length > needed) {
    const host = first === '*' || first === '' ? '0.0.0.0' : first === 'localhost' ? '127.0.0.1' : first;
    return { place: { kind: 'tcp', host, port: port(type, spec, f[1], type === 'remote') }, rest: f.slice(2) };
  }
  return { place: { kind: 'tcp', host: defaultHost, port: port(type, spec, first, type === 'remote') }, rest: f.slice(1) };
}

function connectPlace(type: keyof typeof FORMS, spec: string, rest: string[]): Place {
  const [a, b, ...more] = rest;
  if (more.length > 0 || a === undefined || a === '') throw bad(type, spec, 'wrong number of fields');
  if (a.startsWith('/')) {
    if (b !== undefined) throw bad(type, spec, 'nothing may follow a socket path');
    return { kind: 'unix', path: a };
  }
  return { kind: 'tcp', host: a, port: port(type, spec, b, false) };
}

export function parseForward(type: 'local' | 'remote' | 'dynamic', spec: string): ForwardSpec {
  const f = fields(spec.trim());
  if (spec.trim() === '') throw bad(type, spec, 'empty');
  const { place, rest } = listenPlace(type, spec, f, '127.0.0.1');
  if (type === 'dynamic') {
    if (rest.length > 0 || place.kind !== 'tcp') throw bad(type, spec, 'a SOCKS proxy takes only [bind:]port');
    return { type, listen: place };
  }
  return { type, listen: place, connect: connectPlace(type, spec, rest) };
}

export function placeText(p: Place): string {
  return p.kind === 'unix' ? p.path : hostPort(p.host, p.port);
}

/** The spec in OpenSSH's words, e.g. "-L 127.0.0.1:8080:db:5432". */
export function forwardText(s: ForwardSpec): string {
  const flag = s.type === 'local' ? '-L' : s.type === 'remote' ? '-R' : '-D';
  return s.type === 'dynamic' ? `${flag} ${placeText(s.listen)}` : `${flag} ${placeText(s.listen)}:${placeText(s.connect)}`;
}

const FLAG_TYPES: Record<string, ForwardSpec['type']> = { '-L': 'local', '-R': 'remote', '-D': 'dynamic' };

/**
 * The specs a user may mean by `which` in `forward cancel`: as typed at add (`-L 8080:db:5432`,
 * `-L8080:db:5432`, `8080:db:5432`, `-D 1080`, `1080`) or as `forward list` prints it. Without a
 * flag every type the text parses as is a candidate; none when it parses as nothing.
 */
export function cancelCandidates(which: string): ForwardSpec[] {
  // A line of `forward list` carries " to TARGET" and maybe " (host chose port N)" after the spec.
  let text = which.trim().replace(/\s+\(host chose port \d+\)/, '').replace(/\s+to\s+\S+$/, '');
  let types: ForwardSpec['type'][] = ['local', 'remote', 'dynamic'];
  const flag = FLAG_TYPES[text.slice(0, 2)];
  if (flag) {
    types = [flag];
    text = text.slice(2).trim();
  }
  const out: ForwardSpec[] = [];
  for (const type of types) {
    try {
      out.push(parseForward(type, text));
    } catch {
      // not this type
    }
  }
  return out;
}

/** Whether two specs name the same forward (the same text once defaults are filled in). */
export function sameForward(a: ForwardSpec, b: ForwardSpec): boolean {
  return forwardText(a) === forwardText(b);
}
