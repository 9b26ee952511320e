// burrow version (also -V, --version): this client's version, and the daemon's when one answers.
// It never starts a daemon.

import { IpcConnection } from '../../shared/ipc/client.js';
import { packageVersion } from '../../shared/package.js';
import type { CliContext } from '../context.js';

export async function versionCommand(ctx: CliContext, _args: string[]): Promise<number> {
  process.stdout.write(`burrow ${packageVersion()}\n`);
  try {
    const c = await IpcConnection.connect({ socket: ctx.socket, timeoutMs: 1000 });
    const r = await c.request({ t: 'status' });
    process.stdout.write(`burrowd ${r.daemon.version} (pid ${r.daemon.pid}, ${ctx.socket})\n`);
  } catch {
    // no daemon (or one that speaks another protocol): the client's version is the answer
  }
  return 0;
}
