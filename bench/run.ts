// Timing a command for a benchmark. It is awaited, not spawnSync'd: a bench holds the stderr pipes
// of the daemons it started, and blocking this event loop lets those pipes fill until the daemons
// stall (bench:exec hung after about 80 execs that way).

import { spawn } from 'node:child_process';

// No single run may hang a bench.
const RUN_LIMIT_MS = 120_000;

/** Run CMD ARGS to its end; the milliseconds it took. A non-zero exit throws with its stderr. */
export function timeRun(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), RUN_LIMIT_MS);
    p.on('error', reject);
    p.on('close', (code, signal) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      if (code === 0) resolve(ms);
      else reject(new Error(`${cmd} ${args.join(' ')} failed (${code ?? signal}): ${stderr}`));
    });
  });
}

/** Run CMD ARGS for its side effect, ignoring how it ends (dropping a master that may be gone). */
export function runQuiet(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<void> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env, stdio: 'ignore' });
    p.on('error', () => resolve());
    p.on('close', () => resolve());
  });
}
