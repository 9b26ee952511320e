// File transfer: 64 MiB up and down with `burrow cp` and with `scp` through burrow's ProxyCommand,
// to an iroh host on loopback, each stated as a ratio of the raw iroh stream (bench/transport)
// measured in the same run.
//   node dist/bench/cp.js [--mib 64] [--rounds 3]

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, runCli, startDaemon, stopAllDaemons } from '../test/helpers/daemon.js';
import { keygen } from '../test/helpers/sshd.js';
import { fmt, summarize } from './stats.js';
import { measureTransport } from './transport.js';

function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv): number {
  const t0 = performance.now();
  const r = spawnSync(cmd, args, { env, encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return (performance.now() - t0) / 1000;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { mib: { type: 'string', default: '64' }, rounds: { type: 'string', default: '3' } } });
  const mib = Number(values.mib);
  const rounds = Number(values.rounds);
  const agent = await startDaemon();
  const agentId = (await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim();
  const host = await startDaemon({ args: ['--host'] });
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

    const raw = await measureTransport(mib, rounds);
    const r = { cpUp: [] as number[], cpDown: [] as number[], scpUp: [] as number[], scpDown: [] as number[] };
    for (let i = 0; i < rounds; i++) {
      r.cpUp.push(mib / timed(BURROW, ['cp', local, `box:${remote}`], env));
      r.cpDown.push(mib / timed(BURROW, ['cp', `box:${remote}`, join(work, 'down')], env));
      rmSync(remote);
      r.scpUp.push(mib / timed('scp', ['-F', config, local, `box.burrow:${remote}`], env));
      r.scpDown.push(mib / timed('scp', ['-F', config, `box.burrow:${remote}`, join(work, 'down')], env));
      rmSync(remote);
    }
    const ratio = (xs: number[], ref: number): string => (summarize(xs).median / ref).toFixed(2);
    const up = raw.up.median;
    const down = raw.down.median;
    process.stdout.write(
      [
        `file transfer, ${mib} MiB, ${rounds} rounds, iroh host on loopback; MiB/s and ratio to the raw stream`,
        `  raw iroh stream  up   ${fmt(raw.up, 'MiB/s')}`,
        `  raw iroh stream  down ${fmt(raw.down, 'MiB/s')}`,
        `  burrow cp        up   ${fmt(summarize(r.cpUp), 'MiB/s')}   ratio ${ratio(r.cpUp, up)}`,
        `  burrow cp        down ${fmt(summarize(r.cpDown), 'MiB/s')}   ratio ${ratio(r.cpDown, down)}`,
        `  scp via proxy    up   ${fmt(summarize(r.scpUp), 'MiB/s')}   ratio ${ratio(r.scpUp, up)}`,
        `  scp via proxy    down ${fmt(summarize(r.scpDown), 'MiB/s')}   ratio ${ratio(r.scpDown, down)}`,
      ].join('\n') + '\n',
    );
  } finally {
    await stopAllDaemons();
  }
}

await main();
