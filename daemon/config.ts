// burrowd's command line (DESIGN §7). Bad flags are errors that name the flag.

import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BurrowError, ErrorCodes } from '../shared/errors.js';
import { readTextOptional } from '../shared/fsutil.js';
import { socketPath, stateDir } from '../shared/paths.js';
import { isLogLevel, type LogLevel } from './log.js';
import type { ForwardPolicy } from './host/forwarding.js';
import type { HostBackend, HostLimits } from './host/server.js';
import type { RelaySetting } from './transport/iroh.js';
import { DEFAULT_PKARR_RELAY } from './pair/pkarr.js';
import { WRITER_POLICIES, type WriterPolicy } from './session/wire.js';

export interface DaemonOptions {
  state: string;
  socket: string;
  host: boolean;
  relay: RelaySetting;
  /** Exactly the addresses to bind (IPv4 and/or IPv6); none: every interface, random ports. */
  bind?: string[];
  /** Seconds an idle pooled connection is kept; 0 keeps it forever. */
  persist: number;
  logLevel: LogLevel;
  hostBackend: HostBackend;
  /** Seconds a stopping daemon waits for running sessions before ending them. */
  graceSeconds: number;
  /** ServerAlive and ClientAlive: both roles ping a silent peer and drop it after this many misses. */
  keepalive: { intervalMs: number; countMax: number };
  /** The host's pre-auth limits and keepalive. */
  hostLimits: HostLimits;
  /** pkarr relay for pairing codes' rendezvous; null when disabled. */
  pkarrRelay: string | null;
  /** Answer and ask mDNS for pairing codes on the local network. */
  mdns: boolean;
  /** Persistent sessions: how many at once, seconds an unattached one lives (0: for ever), ring bytes, who writes. */
  sessions: { cap: number; lingerSeconds: number; ringBytes: number; writer: WriterPolicy };
}

export const USAGE = `usage: burrowd [--state DIR] [--socket PATH] [--host] [--relay default|disabled|URL[,URL]]
               [--bind IP:PORT] [--persist SECONDS] [--log-level LEVEL]
               [--host-backend builtin|sshd] [--sshd-address HOST:PORT] [--open]
               [--max-sessions N] [--accept-env NAME[,NAME]] [--permit-open HOST:PORT[,...]|none]
               [--gateway-ports] [--grace SECONDS]
               [--keepalive-interval SECONDS] [--keepalive-count N]
               [--login-grace-time SECONDS] [--max-startups N|START:RATE:FULL] [--per-peer-startups N]
               [--pkarr-relay URL|disabled] [--mdns on|off]
               [--session-cap N] [--session-linger SECONDS] [--session-ring BYTES]
               [--session-writer last-input|last-attach]
--bind may be given more than once (or comma-separated), one IPv4 and one IPv6 address
(e.g. --bind 0.0.0.0:7000 --bind [::]:7000): only what is named is bound and advertised.
Every setting but --state and --socket may also be a key of STATE/config.json (camelCase:
logLevel, maxSessions, acceptEnv [...], permitOpen [...], ...); flags win.
burrowd never forks: it runs in the foreground (systemd and burrow's autostart detach it).`;

function bad(message: string): BurrowError {
  return new BurrowError(ErrorCodes.BadArgument, message);
}

export function parseRelay(s: string): RelaySetting {
  if (s === 'default') return { mode: 'default' };
  if (s === 'disabled') return { mode: 'disabled' };
  const urls = s.split(',').map((u) => u.trim());
  for (const u of urls) {
    let parsed: URL;
    try {
      parsed = new URL(u);
    } catch {
      throw bad(`--relay: ${JSON.stringify(u)} is not default, disabled or a URL`);
    }
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw bad(`--relay: ${u} must be an http(s) URL`);
  }
  return { mode: 'custom', urls };
}

/** One `--bind` value: IPv4:PORT or [IPv6]:PORT. */
export function parseBindAddr(s: string): string {
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(s);
  if (v4 && Number(v4[2]) <= 65535 && !v4[1]!.split('.').some((o) => Number(o) > 255)) return s;
  const v6 = /^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/.exec(s);
  if (v6 && Number(v6[2]) <= 65535 && v6[1]!.includes(':')) return s;
  throw bad(`--bind: ${JSON.stringify(s)} is not IPv4:PORT or [IPv6]:PORT (e.g. 0.0.0.0:0, [::]:0)`);
}

/**
 * `--bind` values, comma-separated or repeated: one address per family (what iroh can bind); a
 * later one of the same family wins, as a repeated flag does.
 */
export function parseBind(s: string): string[] {
  const addrs = s.split(',').map((a) => a.trim()).filter((a) => a !== '').map(parseBindAddr);
  if (addrs.length === 0) throw bad('--bind: no address given');
  const v4 = addrs.filter((a) => !a.startsWith('[')).at(-1);
  const v6 = addrs.filter((a) => a.startsWith('[')).at(-1);
  return [...(v4 ? [v4] : []), ...(v6 ? [v6] : [])];
}

/** MaxStartups: N, or START:RATE:FULL like sshd (refuse RATE% from START on, all from FULL on). */
export function parseMaxStartups(s: string): HostLimits['maxStartups'] {
  const m = /^(\d+)(?::(\d+):(\d+))?$/.exec(s.trim());
  if (!m) throw bad(`--max-startups: ${JSON.stringify(s)} is not N or START:RATE:FULL (e.g. 10:30:100)`);
  const start = Number(m[1]);
  if (m[2] === undefined) {
    if (start < 1) throw bad('--max-startups: must be at least 1');
    return { start, rate: 100, full: start };
  }
  const rate = Number(m[2]);
  const full = Number(m[3]);
  if (start < 1 || rate > 100 || full < start) throw bad(`--max-startups: ${JSON.stringify(s)}: need 1 <= START <= FULL and RATE <= 100`);
  return { start, rate, full };
}

/**
 * Settings that may come from flags or from STATE/config.json (flags win). Each is kept as the
 * flag's text form, so both sources go through the same validation below.
 */
const SETTINGS = {
  relay: { flag: 'relay', type: 'string', default: 'default' },
  bind: { flag: 'bind', type: 'string', default: undefined },
  persist: { flag: 'persist', type: 'number', default: '600' },
  logLevel: { flag: 'log-level', type: 'string', default: 'info' },
  host: { flag: 'host', type: 'boolean', default: false },
  hostBackend: { flag: 'host-backend', type: 'string', default: 'builtin' },
  sshdAddress: { flag: 'sshd-address', type: 'string', default: '127.0.0.1:22' },
  open: { flag: 'open', type: 'boolean', default: false },
  maxSessions: { flag: 'max-sessions', type: 'number', default: '128' },
  acceptEnv: { flag: 'accept-env', type: 'list', default: '' },
  permitOpen: { flag: 'permit-open', type: 'list', default: undefined },
  gatewayPorts: { flag: 'gateway-ports', type: 'boolean', default: false },
  grace: { flag: 'grace', type: 'number', default: '10' },
  keepaliveInterval: { flag: 'keepalive-interval', type: 'number', default: '5' },
  keepaliveCount: { flag: 'keepalive-count', type: 'number', default: '2' },
  loginGraceTime: { flag: 'login-grace-time', type: 'number', default: '30' },
  maxStartups: { flag: 'max-startups', type: 'string', default: '10:30:100' },
  perPeerStartups: { flag: 'per-peer-startups', type: 'number', default: '10' },
  pkarrRelay: { flag: 'pkarr-relay', type: 'string', default: DEFAULT_PKARR_RELAY },
  mdns: { flag: 'mdns', type: 'string', default: 'on' },
  sessionCap: { flag: 'session-cap', type: 'number', default: '32' },
  sessionLinger: { flag: 'session-linger', type: 'number', default: '0' },
  sessionRing: { flag: 'session-ring', type: 'number', default: String(2 * 1024 * 1024) },
  sessionWriter: { flag: 'session-writer', type: 'string', default: 'last-input' },
} as const;
type SettingName = keyof typeof SETTINGS;
type Raw = { [K in SettingName]: (typeof SETTINGS)[K]['type'] extends 'boolean' ? boolean : string | undefined };

export const CONFIG_FILE = 'config.json';

/** Read STATE/config.json into flag-text form; unknown keys and wrong types are errors naming the key. */
export function readConfigFile(state: string): Partial<Raw> {
  const path = join(state, CONFIG_FILE);
  let text: string | undefined;
  try {
    text = readTextOptional(path);
  } catch (err) {
    throw bad((err as Error).message); // a config the daemon cannot read is a usage error (exit 2), as a bad key is
  }
  if (text === undefined) return {};
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw bad(`${path}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw bad(`${path}: must be a JSON object`);
  const out: Record<string, string | boolean> = {};
  for (const [key, value] of Object.entries(json)) {
    if (!Object.prototype.hasOwnProperty.call(SETTINGS, key)) throw bad(`${path}: unknown key ${JSON.stringify(key)} (known: ${Object.keys(SETTINGS).join(', ')})`);
    const t = key === 'bind' && Array.isArray(value) ? 'list' : SETTINGS[key as SettingName].type;
    const ok =
      (t === 'string' && typeof value === 'string') ||
      (t === 'number' && typeof value === 'number') ||
      (t === 'boolean' && typeof value === 'boolean') ||
      (t === 'list' && Array.isArray(value) && value.every((v) => typeof v === 'string'));
    if (!ok) throw bad(`${path}: ${key} must be ${t === 'list' ? 'an array of strings' : `a ${t}`}`);
    out[key] = t === 'list' ? (value as string[]).join(',') || (key === 'permitOpen' ? 'none' : '') : typeof value === 'boolean' ? value : String(value);
  }
  return out as Partial<Raw>;
}

export function parseDaemonArgs(argv: string[], env: NodeJS.ProcessEnv = process.env): DaemonOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        state: { type: 'string' },
        socket: { type: 'string' },
        // Accepted and ignored: burrowd always runs in the foreground, and units written by earlier
        // versions (`burrow system install`) still pass it.
        foreground: { type: 'boolean' },
        help: { type: 'boolean', short: 'h', default: false },
        ...(Object.fromEntries(Object.values(SETTINGS).map((d) => [d.flag, { type: d.type === 'boolean' ? 'boolean' : 'string' }])) as Record<string, { type: 'string' | 'boolean' }>),
        // Several --bind flags: one per address family.
        bind: { type: 'string', multiple: true },
      },
    }));
  } catch (err) {
    throw bad(err instanceof Error ? err.message : String(err));
  }
  if (values.help) throw new BurrowError(ErrorCodes.BadArgument, USAGE);
  const state = typeof values.state === 'string' ? values.state : stateDir(env);
  const file = readConfigFile(state);
  // Flag, else config file, else environment default, else built-in default.
  const envDefaults: Partial<Raw> = { ...(env['BURROW_RELAY'] ? { relay: env['BURROW_RELAY'] } : {}), ...(env['BURROW_BIND'] ? { bind: env['BURROW_BIND'] } : {}) };
  const raw = {} as Raw;
  for (const [name, d] of Object.entries(SETTINGS) as [SettingName, (typeof SETTINGS)[SettingName]][]) {
    const given = (values as Record<string, string | boolean | string[] | undefined>)[d.flag];
    const fromFlag = Array.isArray(given) ? given.join(',') : given;
    (raw as Record<string, unknown>)[name] = fromFlag ?? file[name] ?? envDefaults[name] ?? d.default;
  }
  return settingsFrom(raw, state, typeof values.socket === 'string' ? values.socket : socketPath(env));
}

function wholeNumber(flag: string, text: string | undefined, min: number): number {
  const n = Number(text);
  if (text === undefined || !/^\d+$/.test(text.trim()) || n < min) throw bad(`--${flag}: ${JSON.stringify(text)} is not a whole number${min > 0 ? ` of at least ${min}` : ''}`);
  return n;
}

// Node fires a timer over 2^31 - 1 ms after 1 ms: durations that become timers stop at a day.
const MAX_TIMER_SECONDS = 86_400;

/** Whole seconds for a timer, 0 to a day. */
function timerSeconds(flag: string, text: string | undefined): number {
  const n = wholeNumber(flag, text, 0);
  if (n > MAX_TIMER_SECONDS) throw bad(`--${flag}: ${n} is over the limit of ${MAX_TIMER_SECONDS} seconds (a day)`);
  return n;
}

function settingsFrom(raw: Raw, state: string, socket: string): DaemonOptions {
  const level = raw.logLevel ?? 'info';
  if (!isLogLevel(level)) throw bad(`--log-level: ${JSON.stringify(level)} is not one of trace, debug, info, warn, error, fatal, silent`);
  return {
    hostBackend: parseBackend(raw.hostBackend ?? 'builtin', raw.sshdAddress ?? '', raw.open, raw.maxSessions ?? '', raw.acceptEnv ?? '', {
      permitOpen: raw.permitOpen === undefined ? null : parsePermitOpen(raw.permitOpen),
      gatewayPorts: raw.gatewayPorts,
    }),
    state,
    socket,
    host: raw.host,
    relay: parseRelay(raw.relay ?? 'default'),
    ...(raw.bind !== undefined ? { bind: parseBind(raw.bind) } : {}),
    persist: timerSeconds('persist', raw.persist),
    graceSeconds: timerSeconds('grace', raw.grace),
    keepalive: { intervalMs: timerSeconds('keepalive-interval', raw.keepaliveInterval) * 1000, countMax: wholeNumber('keepalive-count', raw.keepaliveCount, 1) },
    hostLimits: {
      loginGraceMs: timerSeconds('login-grace-time', raw.loginGraceTime) * 1000,
      maxStartups: parseMaxStartups(raw.maxStartups ?? '10:30:100'),
      perPeerStartups: wholeNumber('per-peer-startups', raw.perPeerStartups, 1),
      keepaliveIntervalMs: timerSeconds('keepalive-interval', raw.keepaliveInterval) * 1000,
      keepaliveCountMax: wholeNumber('keepalive-count', raw.keepaliveCount, 1),
    },
    pkarrRelay: parsePkarrRelay(raw.pkarrRelay ?? DEFAULT_PKARR_RELAY),
    mdns: parseOnOff('mdns', raw.mdns ?? 'on'),
    sessions: {
      cap: wholeNumber('session-cap', raw.sessionCap, 1),
      lingerSeconds: wholeNumber('session-linger', raw.sessionLinger, 0),
      ringBytes: wholeNumber('session-ring', raw.sessionRing, 4096),
      writer: parseWriter(raw.sessionWriter ?? 'last-input'),
    },
    logLevel: level,
  };
}

/** The pairing rendezvous: an http(s) URL of a pkarr relay, or `disabled` (LAN pairing over mDNS only). */
export function parsePkarrRelay(s: string): string | null {
  if (s === 'disabled') return null;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw bad(`--pkarr-relay: ${JSON.stringify(s)} is not a URL or disabled`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw bad(`--pkarr-relay: ${s} must be an http(s) URL`);
  return s;
}

function parseWriter(s: string): WriterPolicy {
  const policy = WRITER_POLICIES.find((p) => p === s);
  if (!policy) throw bad(`--session-writer: ${JSON.stringify(s)} is not one of ${WRITER_POLICIES.join(', ')}`);
  return policy;
}

function parseOnOff(flag: string, s: string): boolean {
  if (s === 'on') return true;
  if (s === 'off') return false;
  throw bad(`--${flag}: ${JSON.stringify(s)} is not on or off`);
}

/** host:port patterns, comma-separated; "*" stands for any host or any port; "none" allows nothing. */
export function parsePermitOpen(s: string): string[] {
  if (s.trim() === 'none') return [];
  return s.split(',').map((p) => {
    const t = p.trim();
    const i = t.lastIndexOf(':');
    if (i <= 0 || !/^(\*|\d{1,5})$/.test(t.slice(i + 1))) {
      if (t.startsWith('/')) return `${t}:*`; // a Unix socket path
      throw bad(`--permit-open: ${JSON.stringify(t)} is not host:port (either may be *), a /socket/path, or none`);
    }
    return t;
  });
}

function parseBackend(kind: string, sshdAddress: string, open: boolean, maxSessions: string, acceptEnv: string, forwarding: ForwardPolicy): HostBackend {
  if (kind === 'builtin') {
    const max = wholeNumber('max-sessions', maxSessions, 1);
    const names = acceptEnv.split(',').map((n) => n.trim()).filter((n) => n !== '');
    for (const n of names) if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(n)) throw bad(`--accept-env: ${JSON.stringify(n)} is not an environment variable name`);
    return { kind: 'builtin', maxSessions: max, acceptEnv: names, forwarding };
  }
  if (kind === 'sshd') {
    const m = /^(?:\[([0-9a-fA-F:]+)\]|([^:\s]+)):(\d{1,5})$/.exec(sshdAddress);
    const port = Number(m?.[3]);
    if (!m || port < 1 || port > 65535) throw bad(`--sshd-address: ${JSON.stringify(sshdAddress)} is not HOST:PORT (e.g. 127.0.0.1:22)`);
    return { kind: 'sshd', host: (m[1] ?? m[2]) as string, port, open };
  }
  throw bad(`--host-backend: ${JSON.stringify(kind)} is not builtin or sshd`);
}
