// burrowd's command line (DESIGN §7). Bad flags are errors that name the flag.

import { parseArgs } from 'node:util';
import { BurrowError, ErrorCodes } from '../shared/errors.js';
import { socketPath, stateDir } from '../shared/paths.js';
import { isLogLevel, type LogLevel } from './log.js';
import type { ForwardPolicy } from './host/forwarding.js';
import type { HostBackend } from './host/server.js';
import type { RelaySetting } from './transport/iroh.js';

export interface DaemonOptions {
  state: string;
  socket: string;
  host: boolean;
  relay: RelaySetting;
  bind?: string;
  /** Seconds an idle pooled connection is kept; 0 keeps it forever. */
  persist: number;
  logLevel: LogLevel;
  foreground: boolean;
  hostBackend: HostBackend;
}

export const USAGE = `usage: burrowd [--state DIR] [--socket PATH] [--host] [--relay default|disabled|URL[,URL]]
               [--bind IP:PORT] [--persist SECONDS] [--log-level LEVEL] [--foreground]
               [--host-backend builtin|sshd] [--sshd-address HOST:PORT] [--open]
               [--max-sessions N] [--accept-env NAME[,NAME]] [--permit-open HOST:PORT[,...]|none]
               [--gateway-ports]`;

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

export function parseBind(s: string): string {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(s);
  if (!m || Number(m[2]) > 65535 || m[1]!.split('.').some((o) => Number(o) > 255)) throw bad(`--bind: ${JSON.stringify(s)} is not IPv4:PORT (e.g. 0.0.0.0:0)`);
  return s;
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
        host: { type: 'boolean', default: false },
        relay: { type: 'string', default: env['BURROW_RELAY'] ?? 'default' },
        bind: { type: 'string', ...(env['BURROW_BIND'] ? { default: env['BURROW_BIND'] } : {}) },
        persist: { type: 'string', default: '600' },
        'log-level': { type: 'string', default: 'info' },
        foreground: { type: 'boolean', default: false },
        'host-backend': { type: 'string', default: 'builtin' },
        'sshd-address': { type: 'string', default: '127.0.0.1:22' },
        open: { type: 'boolean', default: false },
        'max-sessions': { type: 'string', default: '128' },
        'accept-env': { type: 'string', default: '' },
        'permit-open': { type: 'string' },
        'gateway-ports': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (err) {
    throw bad(err instanceof Error ? err.message : String(err));
  }
  if (values.help) throw new BurrowError(ErrorCodes.BadArgument, USAGE);
  const persist = Number(values.persist);
  if (!Number.isInteger(persist) || persist < 0) throw bad(`--persist: ${JSON.stringify(values.persist)} is not a whole number of seconds`);
  const level = values['log-level'];
  if (!isLogLevel(level)) throw bad(`--log-level: ${JSON.stringify(level)} is not one of trace, debug, info, warn, error, fatal, silent`);
  return {
    hostBackend: parseBackend(values['host-backend'], values['sshd-address'], values.open, values['max-sessions'], values['accept-env'], {
      permitOpen: values['permit-open'] === undefined ? null : parsePermitOpen(values['permit-open']),
      gatewayPorts: values['gateway-ports'],
    }),
    state: values.state ?? stateDir(env),
    socket: values.socket ?? socketPath(env),
    host: values.host,
    relay: parseRelay(values.relay),
    ...(values.bind !== undefined ? { bind: parseBind(values.bind) } : {}),
    persist,
    logLevel: level,
    foreground: values.foreground,
  };
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
    const max = Number(maxSessions);
    if (!Number.isInteger(max) || max < 1) throw bad(`--max-sessions: ${JSON.stringify(maxSessions)} is not a positive whole number`);
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
