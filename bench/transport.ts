// The reference figure: one iroh bi-stream between two processes on loopback, 64 MiB each way.
// Every later throughput figure is stated as a ratio of this one, measured in the same run.
//   node dist/bench/transport.js [--mib 64] [--rounds 3]

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createLogger } from '../daemon/log.js';
import { IrohTransport, type IrohStream } from '../daemon/transport/iroh.js';
import { fmt, summarize, type Summary } from './stats.js';

const CHUNK = 64 * 1024;
const log = createLogger('silent');
const bindLoopback = (): Promise<IrohTransport> => IrohTransport.bind({ seed: randomBytes(32), relay: { mode: 'disabled' }, bind: '127.0.0.1:0', log });

/** Write `bytes` bytes of one reused buffer, honouring backpressure. */
async function sendBytes(s: IrohStream, bytes: number): Promise<void> {
  const buf = randomBytes(CHUNK);
  for (let sent = 0; sent < bytes; sent += CHUNK) {
    if (!s.write(buf)) await new Promise((r) => s.once('drain', r));
  }
  await new Promise<void>((r) => s.end(r));
}

/** Count bytes to end of stream; resolves with the time the first and last byte arrived. */
function drain(s: IrohStream): Promise<{ bytes: number; first: number; last: number }> {
  return new Promise((resolve, reject) => {
    let bytes = 0;
    let first = 0;
    s.on('data', (c: Buffer) => {
      if (bytes === 0) first = performance.now();
      bytes += c.length;
    });
    s.once('end', () => resolve({ bytes, first, last: performance.now() }));
    s.once('error', reject);
  });
}

/** Server process: for each stream, read to end, then send the same amount back. */
async function serve(): Promise<void> {
  const t = await bindLoopback();
  t.serve({
    authorize: () => Promise.resolve({ ok: true }),
    onConnection: (c) => {
      void (async () => {
        for (;;) {
          const s = await c.acceptStream().catch(() => null);
          if (!s) return;
          const got = await drain(s);
          await sendBytes(s, got.bytes);
        }
      })();
    },
  });
  process.stdout.write(`${t.ticket()}\n`);
  process.stdin.resume();
  process.stdin.once('end', () => void t.close());
}

export interface TransportFigure {
  up: Summary;
  down: Summary;
}

/** The raw stream as a reference: a server process held open, measured round by round between other runs. */
export interface RawStream {
  /** One round of `mib` MiB up, then down, on a fresh stream (MiB/s each way). */
  round(mib: number): Promise<{ up: number; down: number }>;
  close(): Promise<void>;
  /** The server process, whose CPU a bench may count. */
  pid: number;
}

export async function openRawStream(): Promise<RawStream> {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
  const ticket = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`bench server exited with ${code}`)));
  });
  const client = await bindLoopback();
  const conn = await client.dial(ticket, 10_000);
  return {
    pid: child.pid ?? 0,
    async round(mib) {
      const bytes = mib * 1024 * 1024;
      const s = await conn.openStream();
      const t0 = performance.now();
      const back = drain(s);
      await sendBytes(s, bytes);
      const r = await back;
      if (r.bytes !== bytes) throw new Error(`got ${r.bytes} bytes back, sent ${bytes}`);
      // Upload ends when the server starts answering (it reads to end first); download is the rest.
      return { up: mib / ((r.first - t0) / 1000), down: mib / ((r.last - r.first) / 1000) };
    },
    async close() {
      conn.close();
      await client.close();
      child.stdin.end();
      await new Promise((r) => child.once('exit', r));
    },
  };
}

/** Measure `rounds` rounds of `mib` MiB up then down against a server in another process (MiB/s). */
export async function measureTransport(mib: number, rounds: number): Promise<TransportFigure> {
  const raw = await openRawStream();
  const up: number[] = [];
  const down: number[] = [];
  try {
    for (let i = 0; i < rounds; i++) {
      const r = await raw.round(mib);
      up.push(r.up);
      down.push(r.down);
    }
  } finally {
    await raw.close();
  }
  return { up: summarize(up), down: summarize(down) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { serve: { type: 'boolean' }, mib: { type: 'string', default: '64' }, rounds: { type: 'string', default: '3' } } });
  if (values.serve) return serve();
  const mib = Number(values.mib);
  const rounds = Number(values.rounds);
  const f = await measureTransport(mib, rounds);
  process.stdout.write(`transport (iroh bi-stream, loopback, two processes, ${mib} MiB each way):\n`);
  process.stdout.write(`  upload   ${fmt(f.up, 'MiB/s')}\n  download ${fmt(f.down, 'MiB/s')}\n`);
  process.stdout.write(`${JSON.stringify({ bench: 'transport', mib, ...f })}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
