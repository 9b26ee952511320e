// File transfer: 64 MiB up and down with `burrow cp` and with `scp` through burrow's ProxyCommand,
// to an iroh host on loopback, each stated as a ratio of the raw iroh stream (bench/transport)
// measured in the same round: rounds interleave raw and burrow, and the ratio's spread is over rounds.
//   node dist/bench/cp.js [--mib 64] [--rounds 5]

import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, runCli, startDaemon, stopAllDaemons } from '../test/helpers/daemon.js';
import { keygen } from '../test/helpers/sshd.js';
import { fmt, fmtRatio, pairRatios, summarize } from './stats.js';
import { timeRun } from './run.js';
import { openRawStream } from './transport.js';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { mib: { type: 'string', default: '64' }, rounds: { type: 'string', default: '5' } } });
  const mib = Number(values.mib);
  const rounds = Number(values.rounds);
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
    try {
      for (let i = 0; i < rounds; i++) {
        const base = await raw.round(mib);
        r.rawUp.push(base.up);
        r.rawDown.push(base.down);
        r.cpUp.push(mib * 1000 / await timeRun(BURROW, ['cp', local, `box:${remote}`], env));
        r.cpDown.push(mib * 1000 / await timeRun(BURROW, ['cp', `box:${remote}`, join(work, 'down')], env));
        rmSync(remote);
        r.scpUp.push(mib * 1000 / await timeRun('scp', ['-F', config, local, `box.burrow:${remote}`], env));
        r.scpDown.push(mib * 1000 / await timeRun('scp', ['-F', config, `box.burrow:${remote}`, join(work, 'down')], env));
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
      ].join('\n') + '\n',
    );
    process.stdout.write(JSON.stringify({ bench: 'cp', mib, rounds, ratio: { cpUp: pairRatios(r.cpUp, r.rawUp), cpDown: pairRatios(r.cpDown, r.rawDown), scpUp: pairRatios(r.scpUp, r.rawUp), scpDown: pairRatios(r.scpDown, r.rawDown) } }) + '\n');
  } finally {
    await stopAllDaemons();
  }
}

await main();
