// The agent's IPC operations: exec and shell bridge a client session to an SSH channel with
// backpressure both ways; status, check and disconnect read or change the pool.

import type { ClientChannel } from 'ssh2';
import { BurrowError, ErrorCodes, quoteInput } from '../../shared/errors.js';
import { SSH_SIGNALS, sshSignal } from '../../shared/signals.js';
import type { Frame, FrameOf, ResultOf } from '../../shared/ipc/frames.js';
import type { IpcSession } from '../ipc/server.js';
import type { Logger } from '../log.js';
import { bridgeSession } from '../ssh/bridge.js';
import type { OpenedSession, SessionRequest } from '../ssh/channels.js';
import { signalChannel } from '../ssh/private.js';
import { INFO_SUBSYSTEM } from '../ssh/subsystems.js';
import { withTimeout } from '../timeout.js';
import type { Pool, PooledConnection } from './pool.js';
import { resolveTarget } from './resolve.js';

export interface AgentContext {
  pool: Pool;
  state: string;
  defaultUser: string;
  log: Logger;
}

/** exec and shell: open a session channel on the pooled connection and bridge it to the client. */
export async function runSession(ctx: AgentContext, req: FrameOf<'exec'> | FrameOf<'shell'>, session: IpcSession): Promise<void> {
  // Stdin stays at the socket until the channel can take it; frames already read are held by
  // the IPC session until we subscribe below.
  session.pause();

  const target = await resolveTarget(req.target, ctx.state, ctx.defaultUser);
  const within = req.connectTimeout;
  // A caller's connect timeout also bounds its wait on an attempt another request began; either
  // way the message states the wait the caller asked for.
  const late = `no connection to ${target.label} within ${(within ?? 0) / 1000} s (ConnectTimeout)`;
  const conn = await (within === undefined
    ? ctx.pool.get(target)
    : withTimeout(ctx.pool.get(target, within), within, ErrorCodes.ConnectTimeout, late).catch((err: unknown) => {
        throw err instanceof BurrowError && err.code === ErrorCodes.ConnectTimeout ? new BurrowError(ErrorCodes.ConnectTimeout, late, { cause: err }) : err;
      }));
  if (session.closed) return ctx.pool.touch(conn);
  // The client decides, as ssh does (-t, -T, stdin a terminal or not); an old client's shell gets one.
  const wantPty = req.pty ?? req.t === 'shell';
  const sreq: SessionRequest = {
    ...(req.t === 'exec' ? { command: req.command } : {}),
    ...(wantPty ? { pty: { term: req.term ?? 'xterm-256color', cols: req.cols ?? 80, rows: req.rows ?? 24 } } : {}),
    ...(req.env ? { env: req.env } : {}),
  };
  const opened = await ctx.pool.openSession(conn, sreq);
  const ch = opened.channel;
  if (session.closed) {
    ch.close();
    return;
  }
  // opened.connection: another than conn after a reconnect.
  bridgeChannel(opened, session, target.label, opened.connection, req.t === 'exec' ? req.timeout : undefined);
  session.resume();
}

/** A client's resize and signal frames on a session channel; false for any other. */
function control(ch: ClientChannel, session: IpcSession, f: Frame): boolean {
  switch (f.t) {
    case 'resize':
      ch.setWindow(f.rows, f.cols, 0, 0);
      return true;
    case 'signal': {
      // ssh2 throws on a name SSH cannot carry (the library's kill('STOP') sends one).
      const name = sshSignal(f.name);
      if (name === undefined) {
        session.fail(new BurrowError(ErrorCodes.BadArgument, `signal ${quoteInput(f.name)} cannot be sent over SSH (it carries ${[...SSH_SIGNALS].join(', ')})`));
        ch.close();
        return true;
      }
      signalChannel(ch, name);
      return true;
    }
    default:
      return false;
  }
}

/** exec and shell over the bridge, plus what only they have: the timeout, and the exit status or loss that ends them. */
function bridgeChannel(opened: OpenedSession, session: IpcSession, label: string, conn: PooledConnection, timeoutMs?: number): void {
  const ch = opened.channel;
  let timedOut = false;
  if (timeoutMs !== undefined) {
    const timer = setTimeout(() => {
      timedOut = true;
      signalChannel(ch, 'TERM');
      ch.close(); // a burrow host hangs up what is still running
      // Not waiting for the close: OpenSSH's sshd confirms it only once the command has exited.
      session.end({ t: 'error', code: ErrorCodes.CommandTimeout, message: `the command on ${label} ran past its ${timeoutMs / 1000} s timeout and was ended` });
    }, timeoutMs);
    void opened.closed.then(() => clearTimeout(timer));
  }
  // A full client socket holds the channel, whose window then holds the remote process; a full
  // SSH window holds the client.
  const bridge = bridgeSession(session, ch, { stderr: ch.stderr, control: (f) => control(ch, session, f), abort: () => ch.close() });
  void opened.closed.then(() => {
    // Output still buffered in the channel (it may have been paused) goes out before the exit.
    bridge.flush();
    if (timedOut) return; // answered when it timed out
    const exit = opened.exit();
    if (exit) return session.end({ t: 'exit', ...exit });
    void conn.whyLost().then((why) => session.end({ t: 'error', code: ErrorCodes.Disconnected, message: `connection to ${label} was lost before the command finished: ${why}` }));
  });
  session.onClose(() => ch.close());
}

export async function checkTarget(ctx: AgentContext, target: string): Promise<ResultOf<'check'>> {
  const t = await resolveTarget(target, ctx.state, ctx.defaultUser);
  const c = ctx.pool.find(t.key);
  return c && !c.dead ? { alive: true, connection: { ...c.status() } } : { alive: false, key: t.key };
}

export async function disconnectTarget(ctx: AgentContext, target: string): Promise<ResultOf<'disconnect'>> {
  const t = await resolveTarget(target, ctx.state, ctx.defaultUser);
  return { closed: ctx.pool.disconnect(t.key), key: t.key };
}

/** A host's facts from its burrow-info@burrow subsystem (burrow hosts only); the host caches them (host/info.ts). */
export async function infoOf(ctx: AgentContext, target: string): Promise<Record<string, unknown>> {
  const t = await resolveTarget(target, ctx.state, ctx.defaultUser);
  const conn = await ctx.pool.get(t);
  let opened;
  try {
    opened = await ctx.pool.openSubsystem(conn, INFO_SUBSYSTEM);
  } catch (err) {
    throw new BurrowError(ErrorCodes.ChannelRefused, `${t.label} does not serve host info (it is not a burrow host, or is one behind its sshd): ${(err as Error).message}`);
  }
  const chunks: Buffer[] = [];
  opened.channel.on('data', (d: Buffer) => chunks.push(d));
  opened.channel.stderr.resume();
  await opened.closed;
  let value: Record<string, unknown>;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new BurrowError(ErrorCodes.Internal, `${t.label} sent host info that is not JSON`);
  }
  return value;
}
