// Exec latency: `burrow exec TARGET -- true` through the daemon against `ssh` with
// ControlMaster/ControlPath to the same sshd on loopback (same server, two masters), and burrow
// to an iroh host. Warm (connection held) and cold (first exec) runs, interleaved so drift on a
// shared machine hits both alike. Also what the CLI's own start-up costs.
// With --delay MS, sshd and the host sit behind proxies that hold every packet MS ms each way (a
// link with a 2×MS round trip), so the figures show how many round trips each path waits for. The
// namespace needs root (unshare, nsenter).
//   node dist/bench/exec.js [--runs 30] [--cold 5] [--delay 0]

import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { exec } from '../shared/lib.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, BURROW_JS, runCli, startDaemon, stopAllDaemons } from '../test/helpers/daemon.js';
import { sshMasterOpts, startSshd } from '../test/helpers/sshd.js';
import { parseTicket, ticketOf } from '../daemon/transport/iroh.js';
import { tcpDelay, udpDelayIntoNamespace, type DelayProxy } from '../test/helpers/delay.js';
import { runQuiet, timeRun } from './run.js';
import { fmt, fmtRatio, pairRatios, summarize, type Summary } from './stats.js';

/** Every order of xs. */
function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest]));
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '30' }, cold: { type: 'string', default: '5' }, delay: { type: 'string', default: '0' } } });
  const runs = Number(values.runs);
  const colds = Number(values.cold);
  const delayMs = Number(values.delay);
  const realSshd = await startSshd();
  // With a delay the host lives in a network namespace of its own, reached only through the proxy.
  const nsUdp = delayMs > 0 ? await udpDelayIntoNamespace(delayMs) : undefined;
  const host = await startDaemon({ args: ['--host'], logLevel: 'warn', ...(nsUdp ? { prefix: nsUdp.prefix } : {}) });
  const agent = await startDaemon({ logLevel: 'info' });
  const scratch = mkdtempSync(join(tmpdir(), 'burrow-bench-'));
  const proxies: DelayProxy[] = nsUdp ? [nsUdp] : [];
  try {
    // Through the delaying proxies when asked: sshd's port and the host's ticket name them instead.
    let sshd = realSshd;
    let hostTicket = host.ticket;
    if (nsUdp) {
      const tcp = await tcpDelay(realSshd.port, delayMs);
      proxies.push(tcp);
      sshd = { ...realSshd, port: tcp.port };
      nsUdp.target(Number(parseTicket(host.ticket).direct[0]?.split(':').pop()));
      hostTicket = ticketOf({ id: host.endpointId, direct: [`127.0.0.1:${nsUdp.port}`] });
    }
    const agentKey = endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim());
    appendFileSync(sshd.authorizedKeysPath, agentKey + '\n');
    host.authorizeKey(agentKey);
    const env = { ...process.env, ...agent.cliEnv };
    const tcpTarget = `${sshd.user}@127.0.0.1:${sshd.port}`;
    const cm = join(scratch, 'cm');
    const sshArgs = [...sshMasterOpts(sshd, cm, scratch), `${sshd.user}@127.0.0.1`];
    const ssh = (): Promise<number> => timeRun('ssh', [...sshArgs, 'true'], process.env);
    const burrowTcp = (): Promise<number> => timeRun(BURROW, ['exec', tcpTarget, '--', 'true'], env);
    const burrowIroh = (): Promise<number> => timeRun(BURROW, ['exec', hostTicket, '--', 'true'], env);
    // The Node CLI alone, for what the native client saves.
    const nodeTcp = (): Promise<number> => timeRun(process.execPath, [BURROW_JS, 'exec', tcpTarget, '--', 'true'], env);
    const dropSsh = (): Promise<void> => runQuiet('ssh', [...sshArgs.slice(0, -1), '-O', 'exit', `${sshd.user}@127.0.0.1`]);
    const dropBurrow = (t: string): Promise<void> => runQuiet(BURROW, ['disconnect', t], env);

    const cold = { ssh: [] as number[], tcp: [] as number[], iroh: [] as number[] };
    for (let i = 0; i < colds; i++) {
      await dropSsh();
      await dropBurrow(tcpTarget);
      await dropBurrow(hostTicket);
      cold.ssh.push(await ssh());
      cold.tcp.push(await burrowTcp());
      cold.iroh.push(await burrowIroh());
    }
    const warm = { ssh: [] as number[], tcp: [] as number[], iroh: [] as number[], nodeTcp: [] as number[] };
    // Each round runs the kinds in another order (all orders in turn), so no kind always follows
    // the same one: a host refilling its spare sh, or the Node CLI's start-up, costs whatever runs
    // next some CPU.
    const kinds = [
      () => ssh().then((ms) => warm.ssh.push(ms)),
      () => burrowTcp().then((ms) => warm.tcp.push(ms)),
      () => burrowIroh().then((ms) => warm.iroh.push(ms)),
      () => nodeTcp().then((ms) => warm.nodeTcp.push(ms)),
    ];
    const orders = permutations(kinds);
    for (let i = 0; i < runs; i++) {
      for (const run of orders[i % orders.length]!) await run();
    }
    // The round trip itself, with no process start: the library API in this process, through the
    // daemon and the held connection (warm), against the same sshd (tcp) and the iroh host.
    const lib = { tcp: [] as number[], iroh: [] as number[] };
    for (let i = 0; i < runs; i++) {
      const pair = [['tcp', tcpTarget], ['iroh', hostTicket]] as const;
      for (const [k, t] of i % 2 ? [...pair].reverse() : pair) {
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
      `exec of \`true\`, ${runs} warm runs and ${colds} cold, interleaved; ms (loopback${delayMs > 0 ? `, every packet held ${delayMs} ms each way` : ''}, same sshd for ssh and burrow tcp)`,
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
    process.stdout.write(JSON.stringify({ bench: 'exec', delayMs, warm: { ssh: s(warm.ssh), tcp: s(warm.tcp), iroh: s(warm.iroh), nodeTcp: s(warm.nodeTcp) }, cold: { ssh: s(cold.ssh), tcp: s(cold.tcp), iroh: s(cold.iroh) }, startup: { spawn: s(startup.spawn), node: s(startup.node), cliHelp: s(startup.cliHelp), status: s(startup.status) }, library: { tcp: s(lib.tcp), iroh: s(lib.iroh) }, ratio: { irohToTcp: pairRatios(warm.iroh, warm.tcp), irohToSsh: pairRatios(warm.iroh, warm.ssh), tcpToSsh: pairRatios(warm.tcp, warm.ssh), libraryIrohToTcp: pairRatios(lib.iroh, lib.tcp) } }) + '\n');
  } finally {
    await stopAllDaemons();
    await realSshd.stop();
    for (const p of proxies) await p.close();
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
