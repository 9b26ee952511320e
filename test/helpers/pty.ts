// A command line run by bash in a real PTY, and a bounded wait for what it prints.

import * as nodePty from '@lydell/node-pty';
import { vi } from 'vitest';

export interface PtyRun {
  term: nodePty.IPty;
  /** Everything printed so far, escapes and all. */
  screen(): string;
  /** Wait until the output matches `re`; throws, with the tail of the output, after `ms`. */
  until(re: RegExp, ms?: number): Promise<void>;
}

/** `bash -c script` without rc files, in an xterm of cols x rows, with `env` added to ours and PS1 `$ `. */
export function bashInPty(script: string, env: Record<string, string>, cols = 80, rows = 24): PtyRun {
  const term = nodePty.spawn('bash', ['--norc', '--noprofile', '-c', script], {
    name: 'xterm',
    cols,
    rows,
    env: { ...process.env, ...env, PS1: '$ ' } as Record<string, string>,
  });
  let screen = '';
  term.onData((d) => (screen += d));
  return {
    term,
    screen: () => screen,
    async until(re, ms = 15_000) {
      await vi.waitFor(
        () => {
          if (!re.test(screen)) throw new Error(`no ${re} on screen: ${JSON.stringify(screen.slice(-600))}`);
        },
        { timeout: ms, interval: 25 },
      );
    },
  };
}
