// CPU time from /proc, for figures that a busy shared machine does not bend as much as wall time:
// a copy's CPU seconds per MiB beside the raw stream's, summed over every process doing the work.

import { readFileSync } from 'node:fs';

/** Clock ticks per second of /proc's times (USER_HZ: 100 on every Linux burrow runs on). */
const TICKS = 100;

/** utime + stime of `pid` in seconds, and with `children` those of its waited-for descendants too. */
export function cpuSeconds(pid: number | 'self', children = false): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may hold spaces and parentheses: state is the first.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
  const [utime, stime, cutime, cstime] = [f[11], f[12], f[13], f[14]].map((x) => x ?? 0) as [number, number, number, number];
  return (utime + stime + (children ? cutime + cstime : 0)) / TICKS;
}

/** The CPU seconds these processes use while `work` runs. */
export async function cpuDuring(pids: (number | 'self')[], children: boolean, work: () => Promise<unknown>): Promise<number> {
  const sum = (): number => pids.reduce<number>((a, p) => a + cpuSeconds(p, children && p === 'self'), 0);
  const before = sum();
  await work();
  return sum() - before;
}
