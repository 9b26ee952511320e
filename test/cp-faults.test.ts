// burrow cp when the host dies mid-transfer: the host daemon is SIGKILLed for real while a file
// moves, and the CLI must end with a typed Disconnected (exit 255) within the keepalive window,
// leave the destination as it was, and keep the part file so that --resume against the restarted
// host (same state, same endpoint id) finishes with the right digest.
//
// BURROW_TEST_CP_MB sets the file size (default 64 MiB; the figure is 300).

import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BURROW, runCli, startDaemon, stopAllDaemons, type RunningDaemon } from './helpers/daemon.js';
import { cpPair } from './helpers/cp.js';

const SIZE = Number(process.env['BURROW_TEST_CP_MB'] ?? 64) * 1024 * 1024;
/** Bytes across before the host is killed: well into the transfer, well before its end. */
const KILL_AT = Math.min(8 * 1024 * 1024, SIZE / 4);
const DEADLINE_MS = 20_000;

afterAll(stopAllDaemons);

function shaFile(p: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(p)
      .on('data', (d) => h.update(d))
      .on('end', () => resolve(h.digest('hex')))
      .on('error', reject);
  });
}

/** A file of `size` random bytes, written in 1 MiB pieces; returns its digest. */
function writeRandom(p: string, size: number): string {
  const h = createHash('sha256');
  writeFileSync(p, '');
  for (let done = 0; done < size; ) {
    const b = randomBytes(Math.min(1024 * 1024, size - done));
    h.update(b);
    writeFileSync(p, b, { flag: 'a' });
    done += b.length;
  }
  return h.digest('hex');
}

interface Killed {
  code: number | null;
  stderr: string;
  /** From the host's death to the CLI's exit. */
  ms: number;
  bytesBeforeKill: number;
}

/** Run `burrow cp --json ARGS`, SIGKILL the host once KILL_AT bytes are across, and time the CLI's end. */
function cpAndKillHost(env: Record<string, string>, args: string[], kill: () => Promise<void>): Promise<Killed> {
  return new Promise((resolve) => {
    const p = spawn(BURROW, ['cp', '--json', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let bytes = 0;
    let killedAt = 0;
    let buf = '';
    const hardStop = setTimeout(() => p.kill('SIGKILL'), 120_000);
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    p.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        const e = JSON.parse(line) as { event: string; totalBytes?: number };
        if (e.event === 'progress') bytes = Math.max(bytes, e.totalBytes ?? 0);
        if (!killedAt && bytes >= KILL_AT) {
          killedAt = Date.now();
          void kill();
        }
      }
    });
    p.once('close', (code) => {
      clearTimeout(hardStop);
      resolve({ code, stderr, ms: killedAt ? Date.now() - killedAt : -1, bytesBeforeKill: bytes });
    });
  });
}

describe('burrow cp when the host is SIGKILLed mid-transfer', () => {
  let agent: RunningDaemon;
  let host: RunningDaemon;
  let work: string;
  const figures: string[] = [];

  const killHost = async (): Promise<void> => {
    await host.stop('SIGKILL', { keepDir: true });
  };
  /** The host again, on the same state dir (same endpoint id); its new port goes into the alias. */
  const restartHost = async (): Promise<void> => {
    host = await startDaemon({ dir: host.dir, args: ['--host'] });
    expect((await runCli(agent.cliEnv, ['alias', 'add', 'box', host.ticket])).code).toBe(0);
  };

  beforeAll(async () => {
    // The deadline below is 20 s: a keepalive shorter than the default (5 s x 2) leaves room for a loaded machine.
    ({ host, agent, work } = await cpPair(['--keepalive-interval', '2', '--keepalive-count', '2']));
  });
  afterAll(() => {
    if (figures.length > 0) console.log(`cp faults (${SIZE / 1024 / 1024} MiB): ${figures.join('; ')}`);
  });

  it('upload: exit 255 Disconnected within 20 s, no destination file, then --resume completes', async () => {
    const local = join(work, 'up.bin');
    const digest = writeRandom(local, SIZE);
    const remote = join(host.home, 'up.bin');
    const r = await cpAndKillHost(agent.cliEnv, [local, 'box:up.bin'], killHost);
    figures.push(`upload: typed error ${r.ms} ms after the kill (at ${(r.bytesBeforeKill / 1048576).toFixed(1)} MiB)`);
    expect(r.bytesBeforeKill).toBeGreaterThanOrEqual(KILL_AT);
    expect(r.stderr).toMatch(/^burrow: Disconnected: connection to box was lost during the copy: .+\n$/);
    expect(r.code).toBe(255);
    expect(r.ms).toBeLessThan(DEADLINE_MS);
    expect(existsSync(remote)).toBe(false);
    const parts = readdirSync(host.home).filter((n) => n.startsWith('.up.bin.burrow-part.'));
    expect(parts).toHaveLength(1);

    await restartHost();
    const again = await runCli(agent.cliEnv, ['cp', '--resume', '--json', local, 'box:up.bin'], { timeoutMs: 300_000 });
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
    const done = JSON.parse(again.stdout.trim().split('\n').pop()!) as { resumedBytes: number; restarted: number };
    expect(done.resumedBytes).toBeGreaterThan(0);
    expect(done.restarted).toBe(0);
    expect(await shaFile(remote)).toBe(digest);
    expect(readdirSync(host.home).filter((n) => n.includes('.burrow-part.'))).toEqual([]);
  }, 600_000);

  it('download: exit 255 Disconnected within 20 s, the existing destination unchanged, then --resume completes', async () => {
    const remote = join(host.home, 'down.bin');
    const digest = writeRandom(remote, SIZE);
    const local = join(work, 'down.bin');
    writeFileSync(local, 'the old content\n');
    const r = await cpAndKillHost(agent.cliEnv, ['box:down.bin', local], killHost);
    figures.push(`download: typed error ${r.ms} ms after the kill (at ${(r.bytesBeforeKill / 1048576).toFixed(1)} MiB)`);
    expect(r.bytesBeforeKill).toBeGreaterThanOrEqual(KILL_AT);
    expect(r.stderr).toMatch(/^burrow: Disconnected: connection to box was lost during the copy: .+\n$/);
    expect(r.code).toBe(255);
    expect(r.ms).toBeLessThan(DEADLINE_MS);
    expect(readFileSync(local, 'utf8')).toBe('the old content\n');
    expect(readdirSync(work).filter((n) => n.startsWith('.down.bin.burrow-part.'))).toHaveLength(1);

    await restartHost();
    const again = await runCli(agent.cliEnv, ['cp', '--resume', '--json', 'box:down.bin', local], { timeoutMs: 300_000 });
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
    const done = JSON.parse(again.stdout.trim().split('\n').pop()!) as { resumedBytes: number; restarted: number };
    expect(done.resumedBytes).toBeGreaterThan(0);
    expect(done.restarted).toBe(0);
    expect(await shaFile(local)).toBe(digest);
    expect(readdirSync(work).filter((n) => n.includes('.burrow-part.'))).toEqual([]);
  }, 600_000);
});
