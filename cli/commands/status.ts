// burrow status, check and disconnect: read or change what the daemon holds; status and check
// take groups too (one line per member).

import { readAliases } from '../../shared/aliases.js';
import { toBurrowError } from '../../shared/errors.js';
import { DEFAULT_FANOUT, mapLimit } from '../../shared/fleet.js';
import { expandTargets, isManyTargets, readGroups } from '../../shared/groups.js';
import { hostPort, parseTarget } from '../../shared/target.js';
import { ticketEndpointId } from '../../shared/ticket.js';
import { ask, connectDaemon, usage, type CliContext } from '../context.js';
import { humanBytes } from '../format.js';
import type { ConnectionStatus } from '../../shared/status.js';

/** A held connection as status shows it: with the alias it is known by, when it has one. */
type ShownConnection = ConnectionStatus & { alias?: string };

/** The alias a connection is known by: its endpoint id, or host:port, found in the alias book. */
function aliasFinder(state: string): (c: ConnectionStatus) => string | undefined {
  const byKey = new Map<string, string>();
  let book: Record<string, string> = {};
  try {
    book = readAliases(state);
  } catch {
    // an unreadable book names nothing
  }
  for (const [name, value] of Object.entries(book)) {
    try {
      const t = parseTarget(value);
      if (t.kind === 'endpoint') byKey.set(t.id, name);
      else if (t.kind === 'ticket') byKey.set(ticketEndpointId(t.ticket), name);
      else if (t.kind === 'tcp') byKey.set(hostPort(t.host, t.port ?? 22), name);
    } catch {
      // not a target: no connection can match it
    }
  }
  return (c) => {
    if (c.target in book) return c.target;
    if (c.endpointId !== undefined && byKey.has(c.endpointId)) return byKey.get(c.endpointId);
    return byKey.get(c.key.slice(c.key.lastIndexOf('@') + 1));
  };
}

function duration(s: number): string {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60 ? `${s % 60}s` : ''}`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}


export async function statusCommand(ctx: CliContext, args: string[]): Promise<number> {
  const json = args.includes('--json');
  const specs = args.filter((a) => a !== '--json');
  if (specs.some((a) => a.startsWith('-'))) usage('usage: burrow status [--json] [TARGET|@GROUP...]');
  if (specs.length > 0) return statusOfTargets(ctx, specs, json);
  const r = await ask(ctx, { t: 'status' });
  const aliasOf = aliasFinder(ctx.state);
  const conns: ShownConnection[] = r.connections;
  for (const c of conns) {
    const a = aliasOf(c);
    if (a !== undefined) c.alias = a;
  }
  if (json) {
    process.stdout.write(JSON.stringify(r, null, 2) + '\n');
    return 0;
  }
  const d = r.daemon;
  const lines = [
    `burrowd ${d.version}  pid ${d.pid}  up ${duration(d.uptimeSeconds)}  relay ${d.relay}`,
    `endpoint ${d.endpointId}`,
    `host role ${d.host ? `on (${d.hostBackend ?? '-'}, ${d.hostConnections ?? 0} connections, ${d.sessionsServed ?? 0} sessions served)` : 'off'}`,
    `addresses ${d.sockets.join(' ')}${d.homeRelay ? `  home relay ${d.homeRelay}` : ''}`,
    `persist ${d.persist === 0 ? 'forever' : `${d.persist}s`}`,
  ];
  if (conns.length === 0) lines.push('no connections');
  else {
    lines.push('', ['TARGET', 'PATH', 'RTT', 'CHANNELS', 'IDLE', 'IN', 'OUT'].join('\t'));
    for (const c of conns) {
      const rtt = c.rttMs !== undefined ? `${c.rttMs}ms` : '-';
      const name = c.alias !== undefined && c.alias !== c.target ? `${c.alias} (${c.target.slice(0, 20)}${c.target.length > 20 ? '...' : ''})` : c.target;
      const lane = c.lane === 'bulk' ? ' (bulk)' : '';
      lines.push([name + lane, `${c.path}${c.remote ? ` ${c.remote}` : ''}`, rtt, `${c.channels}${c.waiting ? `+${c.waiting} waiting` : ''}`, duration(c.idleSeconds), humanBytes(c.bytesIn), humanBytes(c.bytesOut)].join('\t'));
    }
  }
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

/** Each target's held connection, or its absence (or why it could not be looked up). */
async function checkAll(ctx: CliContext, specs: readonly string[]): Promise<{ target: string; alive: boolean; connection?: ConnectionStatus; error?: string }[]> {
  const targets = expandTargets(specs, specs.some((s) => s.includes('@')) ? readGroups(ctx.state) : {});
  (await connectDaemon(ctx)).close(); // one autostart, before the many requests
  return mapLimit(targets, DEFAULT_FANOUT, async (target) => {
    try {
      const r = await ask(ctx, { t: 'check', target });
      return r.alive ? { target, alive: true, connection: r.connection } : { target, alive: false };
    } catch (err) {
      const e = toBurrowError(err);
      return { target, alive: false, error: `${e.code}: ${e.message}` };
    }
  });
}

/** `status @GROUP ...`: one row per member, from what the pool holds. */
async function statusOfTargets(ctx: CliContext, specs: readonly string[], json: boolean): Promise<number> {
  const rows = await checkAll(ctx, specs);
  if (json) {
    process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    return 0;
  }
  const lines = [['TARGET', 'STATE', 'PATH', 'RTT', 'CHANNELS', 'UP'].join('\t')];
  for (const r of rows) {
    const c = r.connection;
    lines.push(c ? [r.target, 'alive', c.path, c.rttMs !== undefined ? `${c.rttMs}ms` : '-', String(c.channels), duration(c.ageSeconds)].join('\t') : [r.target, r.error ?? 'absent', '-', '-', '-', '-'].join('\t'));
  }
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

const connectionText = (c: ConnectionStatus): string => `${c.path}, ${c.channels} channels, up ${duration(c.ageSeconds)}`;

/** Like `ssh -O check`: 0 when a live connection is held, 1 when not; for many targets, one line each and 0 only when all are. */
export async function checkCommand(ctx: CliContext, args: string[]): Promise<number> {
  const [target, ...rest] = args;
  if (target === undefined || rest.length > 0) usage('usage: burrow check TARGET|@GROUP[,...]');
  if (isManyTargets(target)) {
    const rows = await checkAll(ctx, [target]);
    for (const r of rows) process.stdout.write(r.connection ? `alive: ${r.target} (${connectionText(r.connection)})\n` : `absent: ${r.target}${r.error ? ` (${r.error})` : ''}\n`);
    return rows.every((r) => r.alive) ? 0 : 1;
  }
  const r = await ask(ctx, { t: 'check', target });
  if (r.alive) {
    process.stdout.write(`alive: ${target} (${connectionText(r.connection)})\n`);
    return 0;
  }
  process.stdout.write(`absent: no connection to ${target}\n`);
  return 1;
}

export async function disconnectCommand(ctx: CliContext, args: string[]): Promise<number> {
  const [target, ...rest] = args;
  if (target === undefined || rest.length > 0) usage('usage: burrow disconnect TARGET');
  const r = await ask(ctx, { t: 'disconnect', target });
  process.stdout.write(r.closed ? `closed connection to ${target}\n` : `no connection to ${target}\n`);
  return r.closed ? 0 : 1;
}
