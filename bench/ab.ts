// Today's burrow against another build of it, same machine, same run: `burrow cp` 64 MiB up and
// down and one -L forward each way, rounds alternating between the two builds (order swapped each
// round), with speed and the daemons' CPU seconds per MiB, as ratios per round (median, range).
// BASE is a checkout of another commit, built (`git worktree add /tmp/base REF && cd /tmp/base &&
// ln -s "$PWD/node_modules" ... && npm run build`); its own test helpers start its daemons and CLI.
// `--base .` runs this build against itself: that spread is the noise floor of a comparison.
//   node dist/bench/ab.js --base DIR [--mib 64] [--rounds 6]

import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { endpointKeyLine } from '../shared/sshkey.js';
import * as today from '../test/helpers/daemon.js';
import { freePort } from '../test/helpers/sshd.js';
import { cpuDuring } from './cpu.js';
import { echoBack, through } from './forward-io.js';
import { timeRun } from './run.js';
import { pairRatios, summarize, type Summary } from './stats.js';

type Helpers = typeof today;
interface Build {
  name: string;
  h: Helpers;
  agent: today.RunningDaemon;
  host: today.RunningDaemon;
  port: number;
}

const q = (x: Summary): string => `${x.median.toFixed(2)} (${x.min.toFixed(2)}-${x.max.toFixed(2)}, n=${x.n})`;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { base: { type: 'string' }, mib: { type: 'string', default: '64' }, rounds: { type: 'string', default: '6' } } });
  if (!values.base) throw new Error('usage: node dist/bench/ab.js --base DIR [--mib 64] [--rounds 6]');
  const base = (await import(resolve(values.base, 'dist/test/helpers/daemon.js'))) as Helpers;
  const mib = Number(values.mib);
  const rounds = Number(values.rounds);
  // The forward's far end: reads everything, then sends as much back.
  const svc = echoBack();
  const svcPort = await freePort();
  await new Promise<void>((r) => svc.listen(svcPort, '127.0.0.1', r));
  const builds: Build[] = [];
  try {
    for (const [name, h] of [['base', base], ['today', today]] as const) {
      const host = await h.startDaemon({ args: ['--host'], logLevel: 'warn' });
      const agent = await h.startDaemon({ logLevel: 'info' });
      host.authorizeKey(endpointKeyLine((await h.runCli(agent.cliEnv, ['host', 'id'])).stdout.trim()));
      await h.runCli(agent.cliEnv, ['alias', 'add', 'box', host.ticket]);
      const port = await freePort();
      const fwd = await h.runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-L', `${port}:127.0.0.1:${svcPort}`]);
      if (fwd.code !== 0) throw new Error(`${name}: forward add: ${fwd.stderr}`);
      builds.push({ name, h, agent, host, port });
    }
    const work = join(builds[1]!.agent.dir, 'ab');
    mkdirSync(work);
    const local = join(work, 'payload');
    writeFileSync(local, randomBytes(mib * 1024 * 1024));
    const remote = join(builds[1]!.host.home, 'ab-payload');
    const daemons = (b: Build): number[] => [b.agent.proc.pid ?? 0, b.host.proc.pid ?? 0];
    const kinds = ['cpUp', 'cpDown', 'fwdUp', 'fwdDown'] as const;
    const speed = builds.map(() => Object.fromEntries(kinds.map((k) => [k, [] as number[]])) as Record<(typeof kinds)[number], number[]>);
    const cpu = builds.map(() => ({ cp: [] as number[], fwd: [] as number[] }));
    const cp = (b: Build, args: string[]): Promise<number> => timeRun(b.h.BURROW, args, { ...process.env, ...b.agent.cliEnv });
    for (const b of builds) {
      // Warm: the pooled connection, the bulk lane and the forward's first channel.
      await cp(b, ['cp', local, `box:${remote}`]);
      await through(b.port, 1 << 20);
    }
    for (let i = 0; i < rounds; i++) {
      for (const k of i % 2 ? [1, 0] : [0, 1]) {
        const b = builds[k]!;
        const s = speed[k]!;
        cpu[k]!.cp.push(
          (await cpuDuring([...daemons(b), 'children'], async () => {
            s.cpUp.push((mib * 1000) / (await cp(b, ['cp', local, `box:${remote}`])));
            s.cpDown.push((mib * 1000) / (await cp(b, ['cp', `box:${remote}`, join(work, 'down')])));
          })) * 1000 / (2 * mib),
        );
        rmSync(remote);
        cpu[k]!.fwd.push(
          (await cpuDuring(daemons(b), async () => {
            const [u, d] = await through(b.port, mib * 1024 * 1024);
            s.fwdUp.push(mib / u);
            s.fwdDown.push(mib / d);
          })) * 1000 / (2 * mib),
        );
      }
    }
    const [b0, b1] = [speed[0]!, speed[1]!];
    const lines = [`today against ${values.base}: ${mib} MiB, ${rounds} rounds alternating; MiB/s, CPU ms per MiB (daemons and clients), and today/base per round (median, range)`];
    for (const k of kinds) lines.push(`  ${k.padEnd(7)} base ${q(summarize(b0[k]))}   today ${q(summarize(b1[k]))}   speed today/base ${q(pairRatios(b1[k], b0[k]))}`);
    lines.push(`  CPU cp   base ${q(summarize(cpu[0]!.cp))}   today ${q(summarize(cpu[1]!.cp))}   today/base ${q(pairRatios(cpu[1]!.cp, cpu[0]!.cp))}`);
    lines.push(`  CPU -L   base ${q(summarize(cpu[0]!.fwd))}   today ${q(summarize(cpu[1]!.fwd))}   today/base ${q(pairRatios(cpu[1]!.fwd, cpu[0]!.fwd))}   (the daemons only: the forward's two ends run in this process)`);
    process.stdout.write(`${lines.join('\n')}\n`);
    process.stdout.write(`${JSON.stringify({ bench: 'ab', base: values.base, mib, rounds, speed: Object.fromEntries(kinds.map((k) => [k, pairRatios(b1[k], b0[k])])), cpu: { cp: pairRatios(cpu[1]!.cp, cpu[0]!.cp), fwd: pairRatios(cpu[1]!.fwd, cpu[0]!.fwd) } })}\n`);
  } finally {
    await base.stopAllDaemons();
    await today.stopAllDaemons();
    svc.close();
  }
}

await main();
