// burrow daemon run|start|stop.

import { spawn } from 'node:child_process';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { IpcConnection } from '../../shared/ipc/client.js';
import { BURROWD, connectDaemon, usage, type CliContext } from '../context.js';

async function answers(ctx: CliContext): Promise<boolean> {
  try {
    (await IpcConnection.connect({ socket: ctx.socket, timeoutMs: 2000 })).close();
    return true;
  } catch {
    return false;
  }
}

export async function daemonCommand(ctx: CliContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case 'run': {
      // In the foreground, with our terminal: burrowd's own flags may follow.
      const child = spawn(process.execPath, [BURROWD, '--socket', ctx.socket, '--state', ctx.state, ...rest], { stdio: 'inherit' });
      for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
      return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0))));
    }
    case 'start': {
      if (rest.length > 0) usage('usage: burrow daemon start');
      if (await answers(ctx)) {
        process.stdout.write(`burrowd already running at ${ctx.socket}\n`);
        return 0;
      }
      const c = await connectDaemon({ ...ctx, autostart: true });
      const r = await c.request({ t: 'status' });
      process.stdout.write(`burrowd started, pid ${r.daemon.pid}, socket ${ctx.socket}\n`);
      return 0;
    }
    case 'stop': {
      if (rest.length > 0) usage('usage: burrow daemon stop');
      let c: IpcConnection;
      try {
        c = await IpcConnection.connect({ socket: ctx.socket });
      } catch (err) {
        if (err instanceof BurrowError && err.code === ErrorCodes.DaemonUnavailable) {
          process.stdout.write('burrowd is not running\n');
          return 0;
        }
        throw err;
      }
      const r = await c.request({ t: 'stop' });
      const pid = typeof r['pid'] === 'number' ? r['pid'] : undefined;
      const alive = (): boolean => {
        if (pid === undefined) return false;
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      // Stopped means the process is gone, not only the socket: the next start must not race it.
      const deadline = Date.now() + 25_000;
      while (Date.now() < deadline && (alive() || (await answers(ctx)))) await new Promise((res) => setTimeout(res, 50));
      if (alive()) throw new BurrowError(ErrorCodes.Internal, `burrowd (pid ${pid}) did not exit`);
      process.stdout.write('burrowd stopped\n');
      return 0;
    }
    default:
      return usage('usage: burrow daemon run|start|stop');
  }
}
