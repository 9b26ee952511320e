// What every CLI command gets: where the daemon and state are, how to reach the daemon, and how
// to end with ssh-like exit codes (`burrow: <code>: <message>` and 255 for connection trouble).

import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { join } from 'node:path';
import { BurrowError, ErrorCodes, exitCodeFor, printable, toBurrowError } from '../shared/errors.js';
import { ensurePrivateDir } from '../shared/fsutil.js';
import { IpcConnection } from '../shared/ipc/client.js';
import type { FrameOf, RequestFrame, RequestType, ResultOf } from '../shared/ipc/frames.js';
import { packagePath } from '../shared/package.js';
import { socketPath, stateDir } from '../shared/paths.js';

export interface CliContext {
  socket: string;
  state: string;
  autostart: boolean;
}

export function defaultContext(env: NodeJS.ProcessEnv = process.env): CliContext {
  return { socket: socketPath(env), state: stateDir(env), autostart: env['BURROW_NO_AUTOSTART'] !== '1' };
}

export const BURROWD = packagePath('bin/burrowd.js');
export const BURROW_BIN = packagePath('bin/burrow.js');
/** The native client (cli/native/burrow.c), when the build had a C compiler. */
export const NATIVE_BIN = packagePath('dist/native/burrow');

/** Print one typed line on stderr and exit with the code's status. */
export function fail(err: unknown): never {
  const e = toBurrowError(err);
  // One line, whatever the message holds (a usage hint after a newline joins it).
  // Messages may quote what a peer sent: no control character reaches the terminal.
  process.stderr.write(`burrow: ${e.code}: ${printable(e.message.split('\n').map((l) => l.trim()).filter(Boolean).join('; '))}\n`);
  process.exit(exitCodeFor(e.code));
}

/**
 * When our reader goes away (EPIPE), end as a filter killed by SIGPIPE would: 141 to a shell, like
 * the native client. Node ignores SIGPIPE, and the write error would otherwise crash with a trace.
 */
export function endOnClosedStdout(): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(128 + osConstants.signals.SIGPIPE);
    fail(new BurrowError(ErrorCodes.IoError, `cannot write stdout: ${err.message}`));
  });
}

export function usage(text: string): never {
  throw new BurrowError(ErrorCodes.BadArgument, text);
}

/** Start a daemon in the background; its log goes to burrowd.log in the state dir. */
export function spawnDaemon(ctx: CliContext): number | undefined {
  ensurePrivateDir(ctx.state);
  const logFd = openSync(join(ctx.state, 'burrowd.log'), 'a', 0o600);
  const child = spawn(process.execPath, [BURROWD, '--socket', ctx.socket, '--state', ctx.state], {
    detached: true,
    stdio: ['ignore', 'ignore', logFd],
  });
  closeSync(logFd);
  child.unref();
  return child.pid;
}

/**
 * Reach the daemon; when none answers, start one (like ControlMaster=auto) unless told not to.
 * Two CLIs racing here both spawn, the daemons' socket lock keeps one, and both connect to it.
 */
export async function connectDaemon(ctx: CliContext): Promise<IpcConnection> {
  try {
    return await IpcConnection.connect({ socket: ctx.socket });
  } catch (err) {
    if (!(err instanceof BurrowError) || err.code !== ErrorCodes.DaemonUnavailable || !ctx.autostart) throw err;
  }
  spawnDaemon(ctx);
  const deadline = Date.now() + 15_000;
  let last: unknown;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    try {
      return await IpcConnection.connect({ socket: ctx.socket });
    } catch (err) {
      // Only "nothing answers yet" is worth waiting out (an UnsafeSocket stays unsafe).
      if (!(err instanceof BurrowError) || err.code !== ErrorCodes.DaemonUnavailable) throw err;
      last = err;
    }
  }
  throw new BurrowError(ErrorCodes.DaemonUnavailable, `started a daemon but it did not answer at ${ctx.socket} (see ${join(ctx.state, 'burrowd.log')}): ${(last as Error).message}`);
}

/** One request/response exchange with the daemon. */
export async function ask<T extends RequestType>(ctx: CliContext, frame: FrameOf<T> & RequestFrame): Promise<ResultOf<T>> {
  const c = await connectDaemon(ctx);
  return c.request(frame);
}
