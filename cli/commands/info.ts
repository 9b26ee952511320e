// burrow info TARGET [--json]: the host's name, OS, kernel, CPU, memory, uptime and load,
// gathered on the host and fetched over the held SSH connection.

import { ask, usage, type CliContext } from '../context.js';

const gib = (n: number): string => `${(n / 1024 ** 3).toFixed(1)} GiB`;

function uptime(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${d ? `${d}d ` : ''}${h}h ${m}m`;
}

export async function infoCommand(ctx: CliContext, args: string[]): Promise<number> {
  const json = args.includes('--json');
  const rest = args.filter((a) => a !== '--json');
  const [target, ...extra] = rest;
  if (target === undefined || extra.length > 0) usage('usage: burrow info TARGET [--json]');
  const i = await ask(ctx, { t: 'info', target });
  if (json) {
    process.stdout.write(JSON.stringify(i, null, 2) + '\n');
    return 0;
  }
  process.stdout.write(
    [
      `hostname  ${i.hostname}`,
      `os        ${i.os} (${i.platform})`,
      `kernel    ${i.kernel} ${i.arch}`,
      `cpu       ${i.cpuModel}, ${i.cpus} cores`,
      `memory    ${gib(i.memAvailableBytes)} available of ${gib(i.memTotalBytes)}`,
      `uptime    ${uptime(i.uptimeSeconds)}`,
      `load      ${i.load.map((l) => l.toFixed(2)).join(' ')}`,
    ].join('\n') + '\n',
  );
  return 0;
}
