// Exec latency: `burrow exec TARGET -- true` through the daemon against `ssh` with
// ControlMaster/ControlPath to the same sshd on loopback (same server, two masters), and burrow
// to an iroh host. Warm (connection held) and cold (first exec) runs, interleaved so drift on a
// shared machine hits both alike. Also what the CLI's own start-up costs.
//   node dist/bench/exec.js [--runs 30] [--cold 5]

import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { exec } from '../shared/lib.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, BURROW_JS, runCli, startDaemon, stopAllDaemons } from '../test/helpers/daemon.js';
import { sshMasterOpts, startSshd } from '../test/helpers/sshd.js';
import { runQuiet, timeRun } from './run.js';
import { fmt, fmtRatio, pairRatios, summarize, type Summary } from './stats.js';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '30' }, cold: { type: 'string', default: '5' } } });
  const runs = Number(values.runs);
  const colds = Number(values.cold);
  const sshd = await startSshd();
  const host = await startDaemon({ args: ['--host'], logLevel: 'warn' });
  const agent = await startDaemon({ logLevel: 'info' });
  const scratch = mkdtempSync(join(tmpdir(), 'burrow-bench-'));
  try {
    const agentKey = endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim());
    appendFileSync(sshd.authorizedKeysPath, agentKey + '\n');
    host.authorizeKey(agentKey);
    const env = { ...process.env, ...agent.cliEnv };
    const tcpTarget = `${sshd.user}@127.0.0.1:${sshd.port}`;
    const cm = join(scratch, 'cm');
    const sshArgs = [...sshMasterOpts(sshd, cm, scratch), `${sshd.user}@127.0.0.1`];
    const ssh = (): Promise<number> => timeRun('ssh', [...sshArgs, 'true'], process.env);
    const burrowTcp = (): Promise<number> => timeRun(BURROW, ['exec', tcpTarget, '--', 'true'], env);
    const burrowIroh = (): Promise<number> => timeRun(BURROW, ['exec', host.ticket, '--', 'true'], env);
    // The Node CLI alone, for what the native client saves.
    const nodeTcp = (): Promise<number> => timeRun(process.execPath, [BURROW_JS, 'exec', tcpTarget, '--', 'true'], env);
    const dropSsh = (): Promise<void> => runQuiet('ssh', [...sshArgs.slice(0, -1), '-O', 'exit', `${sshd.user}@127.0.0.1`]);
    const dropBurrow = (t: string): Promise<void> => runQuiet(BURROW, ['disconnect', t], env);

    const cold = { ssh: [] as number[], tcp: [] as number[], iroh: [] as number[] };
    for (let i = 0; i < colds; i++) {
      await dropSsh();
      await dropBurrow(tcpTarget);
      await dropBurrow(host.ticket);
      cold.ssh.push(await ssh());
      cold.tcp.push(await burrowTcp());
      cold.iroh.push(await burrowIroh());
    }
    const warm = { ssh: [] as number[], tcp: [] as number[], iroh: [] as number[], nodeTcp: [] as number[] };
    for (let i = 0; i < runs; i++) {
      warm.ssh.push(await ssh());
      warm.tcp.push(await burrowTcp());
      warm.iroh.push(await burrowIroh());
      warm.nodeTcp.push(await nodeTcp());
    }
    // The round trip itself, with no process start: the library API in this process, through the
    // daemon and the held connection (warm), against the same sshd (tcp) and the iroh host.
    const lib = { tcp: [] as number[], iroh: [] as number[] };
    for (let i = 0; i < runs; i++) {
      for (const [k, t] of [['tcp', tcpTarget], ['iroh', host.ticket]] as const) {
        const t0 = performance.now();
        const r = await exec(t, 'true', { socket: agent.socket });
        if (r.code !== 0) throw new Error(`library exec on ${k} failed`);
        lib[k].push(performance.now() - t0);
      }
    }
    // The CLI's fixed cost: node itself, then node loading burrow's CLI (help: no daemon round trip).
    const startup = { spawn: [] as number[], node: [] as number[], cliHelp: [] as number[], status: [] as number[] };
    for (let i = 0; i < runs; i++) {
      startup.spawn.push(await timeRun('/bin/true', [], env));
      startup.node.push(await timeRun(process.execPath, ['-e', '0'], env));
      startup.cliHelp.push(await timeRun(BURROW, ['--help'], env));
      startup.status.push(await timeRun(BURROW, ['status'], env));
    }
    await dropSsh();

    const s = (xs: number[]): Summary => summarize(xs);
    const ratio = (a: number[], b: number[]): string => (s(a).median / s(b).median).toFixed(2);
    const lines = [
      `exec of \`true\`, ${runs} warm runs and ${colds} cold, interleaved; ms (loopback, same sshd for ssh and burrow tcp)`,
      `  warm  ssh ControlMaster      ${fmt(s(warm.ssh), 'ms')}`,
      `  warm  burrow -> sshd (tcp)   ${fmt(s(warm.tcp), 'ms')}   ratio to ssh ${ratio(warm.tcp, warm.ssh)}`,
      `  warm  burrow -> iroh host    ${fmt(s(warm.iroh), 'ms')}   ratio to ssh ${ratio(warm.iroh, warm.ssh)}`,
      `  warm  Node CLI -> sshd (tcp) ${fmt(s(warm.nodeTcp), 'ms')}   ratio to ssh ${ratio(warm.nodeTcp, warm.ssh)}   (node ${BURROW_JS}: no native client)`,
      `  cold  ssh (new master)       ${fmt(s(cold.ssh), 'ms')}`,
      `  cold  burrow -> sshd (tcp)   ${fmt(s(cold.tcp), 'ms')}   ratio to ssh ${ratio(cold.tcp, cold.ssh)}`,
      `  cold  burrow -> iroh host    ${fmt(s(cold.iroh), 'ms')}   ratio to ssh ${ratio(cold.iroh, cold.ssh)}`,
      `  round trip (library, no process start): sshd ${fmt(s(lib.tcp), 'ms')}; iroh host ${fmt(s(lib.iroh), 'ms')}`,
      `  ratios of interleaved pairs (median, p10, p90):`,
      `    warm iroh host / burrow -> sshd (tcp)  ${fmtRatio(pairRatios(warm.iroh, warm.tcp))}`,
      `    warm iroh host / ssh ControlMaster     ${fmtRatio(pairRatios(warm.iroh, warm.ssh))}`,
      `    warm burrow -> sshd (tcp) / ssh CM     ${fmtRatio(pairRatios(warm.tcp, warm.ssh))}`,
      `    library iroh host / sshd (tcp)         ${fmtRatio(pairRatios(lib.iroh, lib.tcp))}`,
      `  cli   /bin/true              ${fmt(s(startup.spawn), 'ms')}   (starting any process from here: the floor)`,
      `  cli   node -e 0              ${fmt(s(startup.node), 'ms')}`,
      `  cli   burrow --help          ${fmt(s(startup.cliHelp), 'ms')}   (handed to Node: node + loading the CLI)`,
      `  cli   burrow status          ${fmt(s(startup.status), 'ms')}   (Node CLI + one IPC round trip)`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    process.stdout.write(JSON.stringify({ bench: 'exec', warm: { ssh: s(warm.ssh), tcp: s(warm.tcp), iroh: s(warm.iroh), nodeTcp: s(warm.nodeTcp) }, cold: { ssh: s(cold.ssh), tcp: s(cold.tcp), iroh: s(cold.iroh) }, startup: { spawn: s(startup.spawn), node: s(startup.node), cliHelp: s(startup.cliHelp), status: s(startup.status) }, library: { tcp: s(lib.tcp), iroh: s(lib.iroh) }, ratio: { irohToTcp: pairRatios(warm.iroh, warm.tcp), irohToSsh: pairRatios(warm.iroh, warm.ssh), tcpToSsh: pairRatios(warm.tcp, warm.ssh), libraryIrohToTcp: pairRatios(lib.iroh, lib.tcp) } }) + '\n');
  } finally {
    await stopAllDaemons();
    await sshd.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
