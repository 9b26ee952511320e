// The daemon's layers call only downward: transport <- ssh <- {agent, host} <- ipc handlers <- main.
// Read from the import statements of daemon/**/*.ts, so a new import across the seams fails here.

import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';

const DAEMON = new URL('../daemon/', import.meta.url).pathname;

/**
 * Each daemon module's group, lowest rank first. A module may import its own group and any group
 * of a lower rank; never a higher one, and never another group of its own rank (the roles agent,
 * host and pair do not import one another). shared/ and packages are below all of them.
 */
const GROUPS: readonly { group: string; rank: number; files: readonly string[] }[] = [
  // Leaves over shared/ alone.
  { group: 'base', rank: 0, files: ['log.ts', 'timeout.ts', 'identity.ts', 'systemd.ts'] },
  // Bytes to peers (iroh, TCP) and to local clients (the IPC socket and the session it hands out).
  { group: 'transport', rank: 1, files: ['transport/', 'ipc/server.ts'] },
  // What both roles use: the ssh2 client, channel openers, the bridge, subsystem names, ssh2's
  // private fields, the SFTP promise wrapper; and the frame reader both ends of a persistent
  // session's channel use.
  { group: 'ssh', rank: 2, files: ['ssh/', 'session/wire.ts'] },
  // The roles. Persistent sessions have a side in each: session/agent.ts is the agent's,
  // session/host.ts, keeper.ts and ring.ts the host's.
  { group: 'agent', rank: 3, files: ['agent/', 'session/agent.ts'] },
  { group: 'host', rank: 3, files: ['host/', 'session/host.ts', 'session/keeper.ts', 'session/ring.ts'] },
  { group: 'pair', rank: 3, files: ['pair/'] },
  // Settings name the roles' options.
  { group: 'config', rank: 4, files: ['config.ts'] },
  { group: 'handlers', rank: 5, files: ['ipc/handlers.ts'] },
  { group: 'main', rank: 6, files: ['main.ts'] },
];

function groupOf(rel: string): { group: string; rank: number } | undefined {
  const hits = GROUPS.filter((g) => g.files.some((f) => (f.endsWith('/') ? rel.startsWith(f) : rel === f)));
  return hits.length === 1 ? hits[0] : undefined;
}

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => (m[1] ?? m[2]) as string);
}

const modules = readdirSync(DAEMON, { recursive: true, encoding: 'utf8' })
  .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'))
  .sort();

/** A relative import as a path under daemon/ (`../shared/x.js` leaves it: undefined). */
function target(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const rel = relative(DAEMON, join(DAEMON, dirname(from), spec)).replace(/\.js$/, '.ts');
  return rel.startsWith('..') ? undefined : rel;
}

describe('daemon layering', () => {
  it('places every daemon module in exactly one group', () => {
    expect(modules.length).toBeGreaterThan(30);
    expect(modules.filter((m) => groupOf(m) === undefined)).toEqual([]);
  });

  it('imports only downward: transport <- ssh <- {agent, host, pair} <- config <- ipc handlers <- main', () => {
    const offenders: string[] = [];
    for (const m of modules) {
      const from = groupOf(m)!;
      for (const spec of imports(join(DAEMON, m))) {
        const to = target(m, spec);
        if (to === undefined) continue;
        const g = groupOf(to);
        if (!g) offenders.push(`${m} -> ${spec} (not a daemon module)`);
        else if (g.group !== from.group && g.rank >= from.rank) offenders.push(`${m} (${from.group}) -> ${to} (${g.group})`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it('keeps the daemon out of cli/, and iroh inside transport/iroh.ts', () => {
    const offenders: string[] = [];
    for (const m of modules) {
      for (const spec of imports(join(DAEMON, m))) {
        if (spec.startsWith('.') && relative(DAEMON, join(DAEMON, dirname(m), spec)).startsWith('../cli/')) offenders.push(`${m} -> ${spec}`);
        if (spec.startsWith('@number0/iroh') && m !== 'transport/iroh.ts') offenders.push(`${m} -> ${spec}`);
      }
    }
    expect(offenders).toEqual([]);
  });
});
