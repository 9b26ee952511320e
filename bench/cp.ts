// File transfer: 64 MiB up and down with `burrow cp` and with `scp` through burrow's ProxyCommand,
// to an iroh host on loopback, each stated as a ratio of the raw iroh stream (bench/transport)
// measured in the same round: rounds interleave raw and burrow, and the ratio's spread is over rounds.
// Then small files, where a copy's fixed cost is all there is: a 4 KiB upload with `burrow cp`
// (the native client) to the iroh host and to a TCP sshd, the Node CLI for what the native client
// saves, and scp through an OpenSSH ControlMaster to the same sshd as the reference, interleaved.
//   node dist/bench/cp.js [--mib 64] [--rounds 5] [--small 20]

import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, BURROW_JS, runCli, startDaemon, stopAllDaemons } from '../test/helpers/daemon.js';
import { keygen, sshMasterOpts, startSshd } from '../test/helpers/sshd.js';
import { fmt, fmtRatio, pairRatios, summarize } from './stats.js';
import { runQuiet, timeRun } from './run.js';
import { cpuDuring } from './cpu.js';
import { openRawStream } from './transport.js';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { mib: { type: 'string', default: '64' }, rounds: { type: 'string', default: '5' }, small: { type: 'string', default: '20' } } });
  const mib = Number(values.mib);
  const rounds = Number(values.rounds);
  const smallRuns = Number(values.small);
  const agent = await startDaemon({ logLevel: 'info' });
  const agentId = (await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim();
  const host = await startDaemon({ args: ['--host'], logLevel: 'warn' });
  try {
    host.authorizeKey(endpointKeyLine(agentId));
    const key = join(agent.dir, 'user_key');
    host.authorizeKey(keygen(key).pub);
    await runCli(agent.cliEnv, ['alias', 'add', 'box', host.ticket]);
    const config = join(agent.dir, 'ssh_config');
    const cfg = (await runCli(agent.cliEnv, ['ssh-config'])).stdout.replace('ProxyCommand ', `ProxyCommand env BURROW_SOCKET=${agent.socket} BURROW_STATE=${agent.state} `);
    writeFileSync(config, `${cfg}    IdentityFile ${key}\n    IdentitiesOnly yes\n    BatchMode yes\n`);
    const work = join(agent.dir, 'w');
    mkdirSync(work);
    const local = join(work, 'payload');
    writeFileSync(local, randomBytes(mib * 1024 * 1024));
    const remote = join(host.home, 'payload');
    const env = { ...process.env, ...agent.cliEnv };
    await runCli(agent.cliEnv, ['exec', 'box', '--', 'true']); // warm: the pooled connection exists
    // ...and the bulk lane cp uses, so no round pays a handshake.
    writeFileSync(join(work, 'tiny'), 'x');
    await runCli(agent.cliEnv, ['cp', join(work, 'tiny'), `box:${join(host.home, 'tiny')}`]);

    const raw = await openRawStream();
    const r = { rawUp: [] as number[], rawDown: [] as number[], cpUp: [] as number[], cpDown: [] as number[], scpUp: [] as number[], scpDown: [] as number[] };
    const cpu = { raw: [] as number[], cp: [] as number[], scp: [] as number[] };
    try {
      // CPU seconds per MiB moved (up and down together), every process doing the work counted:
      // the raw stream's two, and burrow's daemons with the clients this process starts and waits for.
      const burrowPids = [agent.proc.pid ?? 0, host.proc.pid ?? 0, 'children' as const];
      for (let i = 0; i < rounds; i++) {
        let base = { up: 0, down: 0 };
        cpu.raw.push((await cpuDuring([raw.pid, 'self'], async () => (base = await raw.round(mib)))) / (2 * mib));
        r.rawUp.push(base.up);
        r.rawDown.push(base.down);
        cpu.cp.push(
          (await cpuDuring(burrowPids, async () => {
            r.cpUp.push(mib * 1000 / await timeRun(BURROW, ['cp', local, `box:${remote}`], env));
            r.cpDown.push(mib * 1000 / await timeRun(BURROW, ['cp', `box:${remote}`, join(work, 'down')], env));
          })) / (2 * mib),
        );
        rmSync(remote);
        cpu.scp.push(
          (await cpuDuring(burrowPids, async () => {
            r.scpUp.push(mib * 1000 / await timeRun('scp', ['-F', config, local, `box.burrow:${remote}`], env));
            r.scpDown.push(mib * 1000 / await timeRun('scp', ['-F', config, `box.burrow:${remote}`, join(work, 'down')], env));
          })) / (2 * mib),
        );
        rmSync(remote);
      }
    } finally {
      await raw.close();
    }
    const row = (name: string, xs: number[], ref: number[]): string => `  ${name} ${fmt(summarize(xs), 'MiB/s')}   ratio ${fmtRatio(pairRatios(xs, ref))}`;
    process.stdout.write(
      [
        `file transfer, ${mib} MiB, ${rounds} rounds, iroh host on loopback; MiB/s, and the ratio to the raw stream of the same round`,
        `  raw iroh stream  up   ${fmt(summarize(r.rawUp), 'MiB/s')}`,
        `  raw iroh stream  down ${fmt(summarize(r.rawDown), 'MiB/s')}`,
        row('burrow cp        up  ', r.cpUp, r.rawUp),
        row('burrow cp        down', r.cpDown, r.rawDown),
        row('scp via proxy    up  ', r.scpUp, r.rawUp),
        row('scp via proxy    down', r.scpDown, r.rawDown),
        `  CPU seconds per MiB moved (all processes; up and down together), and the ratio to the raw stream's in the same round:`,
        `    raw iroh stream ${fmt(summarize(cpu.raw.map((x) => x * 1000)), 'ms/MiB')}`,
        `    burrow cp       ${fmt(summarize(cpu.cp.map((x) => x * 1000)), 'ms/MiB')}   ratio ${fmtRatio(pairRatios(cpu.cp, cpu.raw))}`,
        `    scp via proxy   ${fmt(summarize(cpu.scp.map((x) => x * 1000)), 'ms/MiB')}   ratio ${fmtRatio(pairRatios(cpu.scp, cpu.raw))}   (with ssh and scp themselves)`,
      ].join('\n') + '\n',
    );
    process.stdout.write(JSON.stringify({ bench: 'cp', mib, rounds, ratio: { cpUp: pairRatios(r.cpUp, r.rawUp), cpDown: pairRatios(r.cpDown, r.rawDown), scpUp: pairRatios(r.scpUp, r.rawUp), scpDown: pairRatios(r.scpDown, r.rawDown), cpuCp: pairRatios(cpu.cp, cpu.raw), cpuScp: pairRatios(cpu.scp, cpu.raw) } }) + '\n');
    if (smallRuns > 0) await smallFiles(agent.cliEnv, work, host.home, smallRuns);
  } finally {
    await stopAllDaemons();
  }
}

/** A 4 KiB upload, `runs` times each way of making it, interleaved (ms). */
async function smallFiles(cliEnv: Record<string, string>, work: string, hostHome: string, runs: number): Promise<void> {
  const sshd = await startSshd();
  const scratch = join(work, 'small');
  mkdirSync(scratch);
  try {
    const agentKey = endpointKeyLine((await runCli(cliEnv, ['host', 'id'])).stdout.trim());
    appendFileSync(sshd.authorizedKeysPath, `${agentKey}\n`);
    const file = join(scratch, 'small');
    writeFileSync(file, randomBytes(4096));
    const env = { ...process.env, ...cliEnv };
    const tcp = `${sshd.user}@127.0.0.1:${sshd.port}`;
    // scp takes ssh's options but names the port -P.
    const cm = sshMasterOpts(sshd, join(scratch, 'cm'), scratch).map((a) => (a === '-p' ? '-P' : a));
    const kinds = {
      iroh: (): Promise<number> => timeRun(BURROW, ['cp', file, `box:${join(hostHome, 'small')}`], env),
      tcp: (): Promise<number> => timeRun(BURROW, ['cp', file, `${tcp}:${join(scratch, 'via-tcp')}`], env),
      node: (): Promise<number> => timeRun(process.execPath, [BURROW_JS, 'cp', file, `box:${join(hostHome, 'small')}`], env),
      scp: (): Promise<number> => timeRun('scp', [...cm, file, `${sshd.user}@127.0.0.1:${join(scratch, 'via-scp')}`], process.env),
    };
    for (const k of Object.values(kinds)) await k(); // warm: masters, pooled connections, lanes
    const t = { iroh: [] as number[], tcp: [] as number[], node: [] as number[], scp: [] as number[] };
    for (let i = 0; i < runs; i++) for (const [name, run] of Object.entries(kinds)) t[name as keyof typeof t].push(await run());
    process.stdout.write(
      [
        `small file (4 KiB) upload, ${runs} warm runs, interleaved; ms`,
        `  scp, OpenSSH ControlMaster   ${fmt(summarize(t.scp), 'ms')}`,
        `  burrow cp -> iroh host       ${fmt(summarize(t.iroh), 'ms')}   ratio to scp ${fmtRatio(pairRatios(t.iroh, t.scp))}`,
        `  burrow cp -> sshd (tcp)      ${fmt(summarize(t.tcp), 'ms')}   ratio to scp ${fmtRatio(pairRatios(t.tcp, t.scp))}`,
        `  Node CLI cp -> iroh host     ${fmt(summarize(t.node), 'ms')}   ratio to scp ${fmtRatio(pairRatios(t.node, t.scp))}   (no native client)`,
      ].join('\n') + '\n',
    );
    process.stdout.write(`${JSON.stringify({ bench: 'cp-small', runs, ms: { scp: summarize(t.scp), iroh: summarize(t.iroh), tcp: summarize(t.tcp), node: summarize(t.node) } })}\n`);
    await runQuiet('ssh', [...sshMasterOpts(sshd, join(scratch, 'cm'), scratch), '-O', 'exit', `${sshd.user}@127.0.0.1`]);
  } finally {
    await sshd.stop();
  }
}

await main();
