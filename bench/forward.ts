// One -L forward: 64 MiB pushed through it and 64 MiB pulled through it, to an iroh host on
// loopback, as a ratio of the raw iroh stream (bench/transport) measured in the same run.
//   node dist/bench/forward.js [--mib 64] [--rounds 3]

import { randomBytes } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { endpointKeyLine } from '../shared/sshkey.js';
import { runCli, startDaemon, stopAllDaemons } from '../test/helpers/daemon.js';
import { freePort } from '../test/helpers/sshd.js';
import { fmt, summarize } from './stats.js';
import { measureTransport } from './transport.js';

const CHUNK = randomBytes(64 * 1024);

/** Write `n` bytes (in CHUNK pieces) honouring backpressure, then end. */
function sendAndEnd(s: Socket, n: number): void {
  let sent = 0;
  const pump = (): void => {
    while (sent < n) {
      sent += CHUNK.length;
      if (!s.write(CHUNK)) return void s.once('drain', pump);
    }
    s.end();
  };
  pump();
}

/** Connect through the forward; send `up` bytes, then read to end; returns [upSeconds, downSeconds]. */
function through(port: number, up: number): Promise<[number, number]> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const t0 = performance.now();
    let tUp = 0;
    let got = 0;
    s.on('data', (d: Buffer) => {
      if (got === 0) tUp = performance.now();
      got += d.length;
    });
    s.once('end', () => resolve([(tUp - t0) / 1000, (performance.now() - tUp) / 1000]));
    s.once('error', reject);
    s.once('connect', () => sendAndEnd(s, up));
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { mib: { type: 'string', default: '64' }, rounds: { type: 'string', default: '3' } } });
  const mib = Number(values.mib);
  const rounds = Number(values.rounds);
  const bytes = mib * 1024 * 1024;
  // Host-side service: read everything, then send the same amount back.
  const svc = createServer({ allowHalfOpen: true }, (s) => {
    let n = 0;
    s.on('data', (d: Buffer) => (n += d.length));
    s.once('end', () => sendAndEnd(s, n));
  });
  const svcPort = await freePort();
  await new Promise<void>((r) => svc.listen(svcPort, '127.0.0.1', r));
  const agent = await startDaemon();
  const host = await startDaemon({ args: ['--host'] });
  try {
    host.authorizeKey(endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim()));
    const port = await freePort();
    await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-L', `${port}:127.0.0.1:${svcPort}`]);
    const raw = await measureTransport(mib, rounds);
    const up: number[] = [];
    const down: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const [u, d] = await through(port, bytes);
      up.push(mib / u);
      down.push(mib / d);
    }
    const r = (xs: number[], ref: number): string => (summarize(xs).median / ref).toFixed(2);
    process.stdout.write(
      [
        `one -L forward, ${mib} MiB each way, ${rounds} rounds, iroh host on loopback; MiB/s and ratio to the raw stream`,
        `  raw iroh stream  up   ${fmt(raw.up, 'MiB/s')}`,
        `  raw iroh stream  down ${fmt(raw.down, 'MiB/s')}`,
        `  -L forward       up   ${fmt(summarize(up), 'MiB/s')}   ratio ${r(up, raw.up.median)}`,
        `  -L forward       down ${fmt(summarize(down), 'MiB/s')}   ratio ${r(down, raw.down.median)}`,
      ].join('\n') + '\n',
    );
  } finally {
    svc.close();
    await stopAllDaemons();
  }
}

await main();
