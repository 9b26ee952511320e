// CPU time from /proc, for figures that a busy shared machine does not bend as much as wall time:
// a copy's CPU seconds per MiB beside the raw stream's, summed over every process doing the work.

import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc's times (USER_HZ: 100 on every Linux burrow runs on). */
const TICKS = 100;

/** A process by pid, this one, or the children this one has waited for (with theirs). */
export type Who = number | 'self' | 'children';

/** CPU seconds (user + system) used so far by `who`. */
export function cpuSeconds(who: Who): number {
  const stat = readFileSync(`/proc/${who === 'children' ? 'self' : who}/stat`, 'utf8');
  // Fields after the command name, which may hold spaces and parentheses: state is the first.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  const [utime, stime, cutime, cstime] = [f[11], f[12], f[13], f[14]].map((x) => x ?? 0) as [number, number, number, number];
  return (who === 'children' ? cutime + cstime : utime + stime) / TICKS;
}

/** The CPU seconds these use while `work` runs. */
export async function cpuDuring(who: Who[], work: () => Promise<unknown>): Promise<number> {
  const sum = (): number => who.reduce<number>((a, w) => a + cpuSeconds(w), 0);
  const before = sum();
  await work();
  return sum() - before;
}
