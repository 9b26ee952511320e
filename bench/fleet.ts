// Fleet exec: `burrow exec @fleet -- true` on 50 iroh hosts (loopback), warm (connections held)
// and cold (none held), against 50 sequential `burrow exec` runs and against 50 parallel `ssh`
// runs through 50 warm ControlMasters (what a user scripts today; one local sshd stands in for 50
// hosts). Rounds interleave the three so drift on a shared machine hits them alike.
//   node dist/bench/fleet.js [--hosts 50] [--runs 7] [--cold 3] [--slow 3]

import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { addAlias } from '../shared/aliases.js';
import { execMany, mapLimit } from '../shared/fleet.js';
import { addToGroup } from '../shared/groups.js';
import { IpcConnection } from '../shared/ipc/client.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, runCli, startDaemon, stopAllDaemons, type RunningDaemon } from '../test/helpers/daemon.js';
import { sshMasterOpts, startSshd } from '../test/helpers/sshd.js';
import { fmt, summarize, type Summary } from './stats.js';
import { runQuiet, timeRun } from './run.js';

/** Start every command at once; the time until the last has exited. */
async function timeParallel(runs: { cmd: string; args: string[] }[]): Promise<number> {
  const t0 = performance.now();
  await Promise.all(runs.map(({ cmd, args }) => timeRun(cmd, args)));
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { hosts: { type: 'string', default: '50' }, runs: { type: 'string', default: '7' }, cold: { type: 'string', default: '3' }, slow: { type: 'string', default: '3' } } });
  const slowRuns = Number(values.slow);
  const n = Number(values.hosts);
  const runs = Number(values.runs);
  const colds = Number(values.cold);
  const load0 = loadavg().map((x) => x.toFixed(1)).join(' ');
  const sshd = await startSshd(['MaxStartups 200', 'MaxSessions 100']);
  const agent = await startDaemon({ logLevel: 'info' });
  const scratch = mkdtempSync(join(tmpdir(), 'burrow-bench-fleet-'));
  try {
    const agentKey = endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim());
    appendFileSync(sshd.authorizedKeysPath, agentKey + '\n');
    const names = Array.from({ length: n }, (_, i) => `box${i + 1}`);
    const hosts: RunningDaemon[] = [];
    // A few at a time: two cores start them.
    for (let b = 0; b < n; b += 5) hosts.push(...(await Promise.all(names.slice(b, b + 5).map(() => startDaemon({ args: ['--host'], logLevel: 'warn' })))));
    hosts.forEach((h, i) => {
      h.authorizeKey(agentKey);
      addAlias(agent.state, names[i] as string, h.ticket);
    });
    addToGroup(agent.state, 'fleet', names);
    const env = { ...process.env, ...agent.cliEnv };

    const sshArgs = (i: number): string[] => [...sshMasterOpts(sshd, join(scratch, `cm${i}`), scratch), `${sshd.user}@127.0.0.1`];
    // 50 masters, made a few at a time (sshd throttles many unauthenticated connections).
    for (let b = 0; b < n; b += 10) await timeParallel(names.slice(b, b + 10).map((_, k) => ({ cmd: 'ssh', args: [...sshArgs(b + k), 'true'] })));
    const sshParallel = (cmd = 'true'): Promise<number> => timeParallel(names.map((_, i) => ({ cmd: 'ssh', args: [...sshArgs(i), cmd] })));
    const fleet = (cmd = 'true'): Promise<number> => timeRun(BURROW, ['exec', '@fleet', '--', cmd], env);
    const sequential = async (cmd = 'true'): Promise<number> => {
      let ms = 0;
      for (const name of names) ms += await timeRun(BURROW, ['exec', name, '--', cmd], env);
      return ms;
    };
    const library = async (): Promise<number> => {
      const t0 = performance.now();
      const rs = await execMany('@fleet', 'true', { socket: agent.socket, state: agent.state });
      if (rs.some((r) => r.outcome !== 'succeeded')) throw new Error('library execMany: a host did not succeed');
      return performance.now() - t0;
    };
    const dropAll = (): Promise<unknown> => mapLimit(names, 32, async (target) => (await IpcConnection.connect({ socket: agent.socket })).request({ t: 'disconnect', target }));

    const cold: number[] = [];
    for (let i = 0; i < colds; i++) {
      await dropAll();
      cold.push(await fleet());
    }
    const warm = { fleet: [] as number[], seq: [] as number[], ssh: [] as number[], lib: [] as number[] };
    for (let i = 0; i < runs; i++) {
      warm.fleet.push(await fleet());
      warm.seq.push(await sequential());
      warm.ssh.push(await sshParallel());
      warm.lib.push(await library());
    }
    // Loopback has no round trip to hide, so `true` measures CPU, which 2 cores share; a command
    // that takes 100 ms (or a host 100 ms away) shows what running them side by side buys.
    const SLOW = 'sleep 0.1';
    const slow = { fleet: [] as number[], seq: [] as number[], ssh: [] as number[] };
    for (let i = 0; i < slowRuns; i++) {
      slow.fleet.push(await fleet(SLOW));
      slow.seq.push(await sequential(SLOW));
      slow.ssh.push(await sshParallel(SLOW));
    }
    for (let i = 0; i < n; i++) await runQuiet('ssh', [...sshArgs(i).slice(0, -1), '-O', 'exit', `${sshd.user}@127.0.0.1`]);

    const s = (xs: number[]): Summary => summarize(xs);
    const per = (xs: number[]): number[] => xs.map((x) => x / n);
    const ratio = (a: number[], b: number[]): string => (s(a).median / s(b).median).toFixed(2);
    const lines = [
      `load average at start ${load0}, at end ${loadavg().map((x) => x.toFixed(1)).join(' ')} (2 cores shared: absolute times move with it, ratios less)`,
      `exec of \`true\` on ${n} hosts (iroh on loopback; ssh: ${n} ControlMasters to one local sshd), ${runs} warm rounds and ${colds} cold; ms`,
      `  warm  burrow exec @fleet          ${fmt(s(warm.fleet), 'ms')}`,
      `        per host                    ${fmt(s(per(warm.fleet)), 'ms', 2)}`,
      `  cold  burrow exec @fleet          ${fmt(s(cold), 'ms')}   ratio to warm ${ratio(cold, warm.fleet)}`,
      `  warm  ${n} sequential burrow exec   ${fmt(s(warm.seq), 'ms')}   fan-out is ${ratio(warm.seq, warm.fleet)}x faster`,
      `  warm  ${n} parallel ssh (masters)   ${fmt(s(warm.ssh), 'ms')}   fan-out is ${ratio(warm.ssh, warm.fleet)}x faster`,
      `  warm  execMany (library, no process start) ${fmt(s(warm.lib), 'ms')}   per host ${(s(warm.lib).median / n).toFixed(2)} ms`,
      `\`${SLOW}\` on ${n} hosts, ${slowRuns} warm rounds; ms`,
      `  warm  burrow exec @fleet          ${fmt(s(slow.fleet), 'ms')}`,
      `  warm  ${n} sequential burrow exec   ${fmt(s(slow.seq), 'ms')}   fan-out is ${ratio(slow.seq, slow.fleet)}x faster`,
      `  warm  ${n} parallel ssh (masters)   ${fmt(s(slow.ssh), 'ms')}   fan-out is ${ratio(slow.ssh, slow.fleet)}x faster`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    process.stdout.write(JSON.stringify({ bench: 'fleet', hosts: n, load: loadavg(), warm: { fleet: s(warm.fleet), perHost: s(per(warm.fleet)), sequential: s(warm.seq), sshParallel: s(warm.ssh), library: s(warm.lib) }, cold: { fleet: s(cold) }, slow: { fleet: s(slow.fleet), sequential: s(slow.seq), sshParallel: s(slow.ssh) } }) + '\n');
  } finally {
    await stopAllDaemons();
    await sshd.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
