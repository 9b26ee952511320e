// burrow proxy TARGET: for `ssh -o ProxyCommand='burrow proxy %h'`. stdin and stdout carry the
// SSH protocol and nothing else; every diagnostic goes to stderr.

import type { BurrowError } from '../../shared/errors.js';
import { exitCodeFor } from '../../shared/errors.js';
import { openProxy } from '../../shared/lib.js';
import { connectDaemon, endOnClosedStdout, usage, type CliContext } from '../context.js';

export async function proxyCommand(ctx: CliContext, args: string[]): Promise<number> {
  const [target, ...rest] = args;
  if (target === undefined || rest.length > 0) usage('usage: burrow proxy TARGET   (for ssh -o ProxyCommand="burrow proxy %h")');
  const p = await openProxy(target, { connection: await connectDaemon(ctx) });
  endOnClosedStdout();
  p.stdout.on('data', (d: Buffer) => process.stdout.write(d));
  process.stdin.on('data', (d: Buffer) => {
    if (!p.stdin.write(d)) {
      process.stdin.pause();
      p.stdin.once('drain', () => process.stdin.resume());
    }
  });
  process.stdin.once('end', () => p.stdin.end());
  return new Promise((resolve) => {
    const done = (code: number): void => {
      process.stdin.pause();
      process.stdin.unref?.();
      resolve(code);
    };
    p.once('exit', () => done(0));
    p.once('error', (err: BurrowError) => {
      process.stderr.write(`burrow: ${err.code}: ${err.message}\n`);
      done(exitCodeFor(err.code));
    });
  });
}
