// The terminal side of an interactive session (burrow ssh, session attach): raw mode when asked,
// and one list of things to undo, run once in reverse order on the way out.

import { endOnClosedStdout } from './context.js';

export interface TerminalUse {
  /** Undo this at cleanup; the last added runs first. */
  defer(fn: () => void): void;
  /** Undo everything deferred so far; later calls undo only what was deferred since. */
  cleanup(): void;
}

export function useTerminal(raw: boolean): TerminalUse {
  const restore: (() => void)[] = [];
  const cleanup = (): void => {
    for (const fn of restore.splice(0).reverse()) fn();
  };
  // Raw mode is restored on every way out, including a crash.
  process.once('exit', cleanup);
  if (raw) {
    process.stdin.setRawMode(true);
    restore.push(() => process.stdin.setRawMode(false));
  }
  // Writes to a full terminal or pipe block (stdio is synchronous on Linux), which holds the session.
  endOnClosedStdout();
  return { defer: (fn) => void restore.push(fn), cleanup };
}
