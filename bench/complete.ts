// Warm remote completion: the daemon's `ls` (a directory listed over the pooled connection's held
// SFTP channel) against a warm `exec true` on the same connection, in the same run, interleaved.
// Also the whole `burrow __complete` process against `burrow exec TARGET -- true`.
//   node dist/bench/complete.js [--runs 30]

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { IpcConnection } from '../shared/ipc/client.js';
import { exec } from '../shared/lib.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, runCli, startDaemon, stopAllDaemons } from '../test/helpers/daemon.js';
import { fmt, summarize } from './stats.js';
import { timeRun } from './run.js';

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '30' } } });
  const runs = Number(values.runs);
  const host = await startDaemon({ args: ['--host'], logLevel: 'warn' });
  const agent = await startDaemon({ logLevel: 'info' });
  try {
    host.authorizeKey(endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim()));
    mkdirSync(join(host.home, 'proj'));
    for (let i = 0; i < 50; i++) writeFileSync(join(host.home, 'proj', `file-${i}.txt`), 'x');
    const socket = agent.socket;
    const ls = async (): Promise<unknown> => (await IpcConnection.connect({ socket })).request({ t: 'ls', target: host.ticket, path: 'proj/' });
    const execTrue = (): Promise<unknown> => exec(host.ticket, 'true', { socket });
    await execTrue(); // connect
    await ls(); // open the held SFTP channel
    const a: number[] = [];
    const b: number[] = [];
    for (let i = 0; i < runs; i++) {
      a.push(await timed(ls));
      b.push(await timed(execTrue));
    }
    const env = { ...process.env, ...agent.cliEnv };
    const c: number[] = [];
    const d: number[] = [];
    for (let i = 0; i < Math.min(runs, 15); i++) {
      c.push(await timeRun(BURROW, ['__complete', '1', 'cp', `${host.ticket}:proj/file-1`], env));
      d.push(await timeRun(BURROW, ['exec', host.ticket, '--', 'true'], env));
    }
    const [sa, sb, sc, sd] = [summarize(a), summarize(b), summarize(c), summarize(d)];
    console.log(`daemon ls of 50 entries, warm: ${fmt(sa, 'ms', 2)}`);
    console.log(`daemon exec true, warm:        ${fmt(sb, 'ms', 2)}`);
    console.log(`ratio ls / exec true: ${(sa.median / sb.median).toFixed(2)}`);
    console.log(`burrow __complete (Node CLI):  ${fmt(sc, 'ms')}`);
    console.log(`burrow exec true (native):     ${fmt(sd, 'ms')}`);
  } finally {
    await stopAllDaemons();
  }
}

void main();
