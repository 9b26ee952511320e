// One -L forward: 64 MiB pushed through it and 64 MiB pulled through it, to an iroh host on
// loopback, as a ratio of the raw iroh stream (bench/transport) measured in the same round: rounds
// interleave raw and forward, and the ratio's spread is over rounds.
//   node dist/bench/forward.js [--mib 64] [--rounds 5]

import { parseArgs } from 'node:util';
import { endpointKeyLine } from '../shared/sshkey.js';
import { runCli, startDaemon, stopAllDaemons } from '../test/helpers/daemon.js';
import { freePort } from '../test/helpers/sshd.js';
import { fmt, fmtRatio, pairRatios, summarize } from './stats.js';
import { echoBack, through } from './forward-io.js';
import { openRawStream } from './transport.js';

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { mib: { type: 'string', default: '64' }, rounds: { type: 'string', default: '5' } } });
  const mib = Number(values.mib);
  const rounds = Number(values.rounds);
  const bytes = mib * 1024 * 1024;
  // Host-side service: read everything, then send the same amount back.
  const svc = echoBack();
  const svcPort = await freePort();
  await new Promise<void>((r) => svc.listen(svcPort, '127.0.0.1', r));
  const agent = await startDaemon();
  const host = await startDaemon({ args: ['--host'] });
  try {
    host.authorizeKey(endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim()));
    const port = await freePort();
    await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-L', `${port}:127.0.0.1:${svcPort}`]);
    const raw = await openRawStream();
    const r = { rawUp: [] as number[], rawDown: [] as number[], up: [] as number[], down: [] as number[] };
    try {
      for (let i = 0; i < rounds; i++) {
        const base = await raw.round(mib);
        r.rawUp.push(base.up);
        r.rawDown.push(base.down);
        const [u, d] = await through(port, bytes);
        r.up.push(mib / u);
        r.down.push(mib / d);
      }
    } finally {
      await raw.close();
    }
    process.stdout.write(
      [
        `one -L forward, ${mib} MiB each way, ${rounds} rounds, iroh host on loopback; MiB/s, and the ratio to the raw stream of the same round`,
        `  raw iroh stream  up   ${fmt(summarize(r.rawUp), 'MiB/s')}`,
        `  raw iroh stream  down ${fmt(summarize(r.rawDown), 'MiB/s')}`,
        `  -L forward       up   ${fmt(summarize(r.up), 'MiB/s')}   ratio ${fmtRatio(pairRatios(r.up, r.rawUp))}`,
        `  -L forward       down ${fmt(summarize(r.down), 'MiB/s')}   ratio ${fmtRatio(pairRatios(r.down, r.rawDown))}`,
      ].join('\n') + '\n',
    );
    process.stdout.write(JSON.stringify({ bench: 'forward', mib, rounds, ratio: { up: pairRatios(r.up, r.rawUp), down: pairRatios(r.down, r.rawDown) } }) + '\n');
  } finally {
    svc.close();
    await stopAllDaemons();
  }
}

await main();
