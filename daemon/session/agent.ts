// The agent side of persistent sessions: each request opens a burrow-session@burrow subsystem
// channel on the pooled connection and speaks the frame codec over it; an attach then relays
// frames both ways with backpressure, as exec does.

import { BurrowError, ErrorCodes, firstLine } from '../../shared/errors.js';
import { encodeFrame } from '../../shared/ipc/codec.js';
import { errorFromFrame, type FrameOf } from '../../shared/ipc/frames.js';
import type { AgentContext } from '../agent/ops.js';
import type { PooledConnection } from '../agent/pool.js';
import { resolveTarget } from '../agent/resolve.js';
import type { IpcSession } from '../ipc/server.js';
import { sessionSink, streamSink, throttle } from '../ssh/bridge.js';
import { SESSION_SUBSYSTEM } from '../ssh/subsystems.js';
import { readFrames } from './wire.js';

async function openChannel(ctx: AgentContext, target: string): Promise<{ opened: Awaited<ReturnType<AgentContext['pool']['openSubsystem']>>; conn: PooledConnection; label: string }> {
  const t = await resolveTarget(target, ctx.state, ctx.defaultUser);
  const conn = await ctx.pool.get(t);
  try {
    return { opened: await ctx.pool.openSubsystem(conn, SESSION_SUBSYSTEM), conn, label: t.label };
  } catch (err) {
    if (err instanceof BurrowError && err.code === ErrorCodes.ChannelRefused) {
      throw new BurrowError(ErrorCodes.ChannelRefused, `${t.label} does not keep persistent sessions (it is not a burrow host with the built-in server): ${firstLine(err.message)}`);
    }
    throw err;
  }
}

/** `sessions` and `session_kill`: one request, one answer. */
export async function askSessions(ctx: AgentContext, req: FrameOf<'sessions'> | FrameOf<'session_kill'>): Promise<Record<string, unknown>> {
  const { opened, label } = await openChannel(ctx, req.target);
  const ch = opened.channel;
  ch.stderr.resume();
  return new Promise((resolve, reject) => {
    let answered = false;
    readFrames(
      ch,
      (f) => {
        if (answered) return;
        answered = true;
        ch.close();
        if (f.t === 'result') resolve(f.value);
        else if (f.t === 'error') reject(errorFromFrame(f));
        else reject(new BurrowError(ErrorCodes.UnexpectedFrame, `${label} answered ${f.t} to ${req.t}`));
      },
      (err) => reject(err),
    );
    void opened.closed.then(() => {
      if (!answered) reject(new BurrowError(ErrorCodes.Disconnected, `${label} closed the session channel before answering`));
    });
    ch.write(encodeFrame({ ...req, target: '' }));
  });
}

/** `session_open`: attach the client to a persistent session on the target, relaying frames both ways. */
export async function attachSession(ctx: AgentContext, req: FrameOf<'session_open'>, session: IpcSession): Promise<void> {
  session.pause();
  const { opened, conn, label } = await openChannel(ctx, req.target);
  const ch = opened.channel;
  if (session.closed) {
    ch.close();
    return;
  }
  ch.stderr.resume();
  let ended = false;
  // The bridge's two directions, over frames: a full client socket holds the channel, whose
  // window then holds the keeper; a full channel window holds the client.
  const toClient = throttle(sessionSink(session), ch);
  const toKeeper = throttle(streamSink(ch), session);
  readFrames(
    ch,
    (f) => {
      if (ended) return;
      switch (f.t) {
        case 'attached':
        case 'stdout':
          toClient(f);
          return;
        case 'exit':
        case 'error':
          ended = true;
          session.end(f);
          return;
        default:
          return;
      }
    },
    (err) => {
      ended = true;
      session.fail(err);
      ch.close();
    },
  );
  session.onFrame((f) => {
    if (f.t === 'stdin' || f.t === 'resize') toKeeper(encodeFrame(f));
  });
  session.onClose(() => ch.close());
  void opened.closed.then(async () => {
    if (ended) return;
    ended = true;
    const why = conn.dead ? await conn.whyLost() : 'the host ended the attachment';
    session.end({ t: 'error', code: ErrorCodes.Disconnected, message: `session ${req.name} on ${label}: ${why}` });
  });
  ch.write(encodeFrame({ ...req, target: '' }));
  session.resume();
}
