// burrow status, check and disconnect: read or change what the daemon holds.

import { ask, usage, type CliContext } from '../context.js';
import { humanBytes } from '../format.js';

function duration(s: number): string {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

const str = (v: unknown): string => (v === undefined || v === null ? '-' : String(v));
const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

export async function statusCommand(ctx: CliContext, args: string[]): Promise<number> {
  const json = args.includes('--json');
  if (args.some((a) => a !== '--json')) usage('usage: burrow status [--json]');
  const r = await ask(ctx, { t: 'status' });
  if (json) {
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    return 0;
  }
  const d = (r['daemon'] ?? {}) as Record<string, unknown>;
  const conns = (Array.isArray(r['connections']) ? r['connections'] : []) as Record<string, unknown>[];
  const lines = [
    `burrowd ${str(d['version'])}  pid ${str(d['pid'])}  up ${duration(num(d['uptimeSeconds']))}  relay ${str(d['relay'])}`,
    `endpoint ${str(d['endpointId'])}`,
    `host role ${d['host'] ? `on (${str(d['hostBackend'])}, ${num(d['hostConnections'])} connections, ${num(d['sessionsServed'])} sessions served)` : 'off'}`,
    `addresses ${(Array.isArray(d['sockets']) ? (d['sockets'] as string[]) : []).join(' ')}${d['homeRelay'] ? `  home relay ${str(d['homeRelay'])}` : ''}`,
    `persist ${num(d['persist']) === 0 ? 'forever' : `${num(d['persist'])}s`}`,
  ];
  if (conns.length === 0) lines.push('no connections');
  else {
    lines.push('', ['TARGET', 'PATH', 'RTT', 'CHANNELS', 'IDLE', 'IN', 'OUT'].join('\t'));
    for (const c of conns) {
      const rtt = typeof c['rttMs'] === 'number' ? `${c['rttMs']}ms` : '-';
      lines.push([`${str(c['target'])}${c['lane'] === 'bulk' ? ' (bulk)' : ''}`, `${str(c['path'])}${c['remote'] ? ` ${str(c['remote'])}` : ''}`, rtt, `${num(c['channels'])}${num(c['waiting']) ? `+${num(c['waiting'])} waiting` : ''}`, duration(num(c['idleSeconds'])), humanBytes(num(c['bytesIn'])), humanBytes(num(c['bytesOut']))].join('\t'));
    }
  }
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

/** Like `ssh -O check`: 0 when a live connection is held, 1 when not. */
export async function checkCommand(ctx: CliContext, args: string[]): Promise<number> {
  const [target, ...rest] = args;
  if (target === undefined || rest.length > 0) usage('usage: burrow check TARGET');
  const r = await ask(ctx, { t: 'check', target });
  if (r['alive'] === true) {
    const c = (r['connection'] ?? {}) as Record<string, unknown>;
    process.stdout.write(`alive: ${target} (${str(c['path'])}, ${num(c['channels'])} channels, up ${duration(num(c['ageSeconds']))})\n`);
    return 0;
  }
  process.stdout.write(`absent: no connection to ${target}\n`);
  return 1;
}

export async function disconnectCommand(ctx: CliContext, args: string[]): Promise<number> {
  const [target, ...rest] = args;
  if (target === undefined || rest.length > 0) usage('usage: burrow disconnect TARGET');
  const r = await ask(ctx, { t: 'disconnect', target });
  process.stdout.write(r['closed'] === true ? `closed connection to ${target}\n` : `no connection to ${target}\n`);
  return r['closed'] === true ? 0 : 1;
}
