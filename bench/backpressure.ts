// Memory under volume: `burrow exec TARGET -- cat < FILE > OUT` with a 1 GiB file, sampling the
// agent daemon's RSS. Backpressure holds each side to the other's pace, so the peak must not
// grow with the volume. Runs against a real sshd on loopback (TCP target) and, with --iroh-mib,
// a smaller volume through an iroh host (iroh-js moves ~10 MiB/s on this machine).
//   node dist/bench/backpressure.js [--mib 1024] [--iroh-mib 128]

import { spawn } from 'node:child_process';
import { appendFileSync, closeSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, runCli, startDaemon, stopAllDaemons } from '../test/helpers/daemon.js';
import { startSshd } from '../test/helpers/sshd.js';

function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

async function run(target: string, env: NodeJS.ProcessEnv, daemonPid: number, input: string, output: string): Promise<{ peak: number; base: number; seconds: number }> {
  const base = rss(daemonPid);
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, rss(daemonPid))), 20);
  const t0 = performance.now();
  const inFd = openSync(input, 'r');
  const outFd = openSync(output, 'w');
  const p = spawn(BURROW, ['exec', target, '--', 'cat'], { env, stdio: [inFd, outFd, 'inherit'] });
  const code = await new Promise((r) => p.once('close', r));
  clearInterval(timer);
  closeSync(inFd);
  closeSync(outFd);
  if (code !== 0) throw new Error(`burrow exec exited ${code}`);
  if (statSync(output).size !== statSync(input).size) throw new Error('output size differs from input');
  return { peak, base, seconds: (performance.now() - t0) / 1000 };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { mib: { type: 'string', default: '1024' }, 'iroh-mib': { type: 'string', default: '128' } } });
  const dir = mkdtempSync(join(tmpdir(), 'burrow-bp-'));
  const sshd = await startSshd();
  const agent = await startDaemon();
  const host = await startDaemon({ args: ['--host'] });
  try {
    const key = endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim());
    appendFileSync(sshd.authorizedKeysPath, key + '\n');
    host.authorizeKey(key);
    const env = { ...process.env, ...agent.cliEnv };
    const mib = (n: number): string => `${(n / 1048576).toFixed(0)} MiB`;
    for (const [label, target, size] of [
      ['sshd over TCP', `${sshd.user}@127.0.0.1:${sshd.port}`, Number(values.mib)],
      ['iroh host', host.ticket, Number(values['iroh-mib'])],
    ] as const) {
      const input = join(dir, 'in');
      const fd = openSync(input, 'w');
      ftruncateSync(fd, size * 1048576); // sparse: reading it costs no disk
      closeSync(fd);
      const r = await run(target, env, agent.proc.pid!, input, join(dir, 'out'));
      process.stdout.write(
        `${label}: ${size} MiB through cat in ${r.seconds.toFixed(1)} s (${(size / r.seconds).toFixed(1)} MiB/s); agent RSS ${mib(r.base)} before, peak ${mib(r.peak)} (+${mib(r.peak - r.base)})\n`,
      );
      rmSync(join(dir, 'out'));
    }
  } finally {
    await stopAllDaemons();
    await sshd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
