// The daemon's requests: one small function per request type of the frame table
// (shared/ipc/frames.ts), each over the agent's or the host's API. main.ts wires the roles and
// hands them here as a DaemonContext; the IPC server calls dispatch() once per connection.

import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { parseForward } from '../../shared/forward.js';
import { resultFrame, type FrameOf, type RequestFrame, type RequestType } from '../../shared/ipc/frames.js';
import type { DaemonStatusReport } from '../../shared/status.js';
import { runCopy } from '../agent/cp.js';
import type { ForwardManager } from '../agent/forward.js';
import { listRemote } from '../agent/ls.js';
import { checkTarget, disconnectTarget, infoOf, runSession, type AgentContext } from '../agent/ops.js';
import { runProxy } from '../agent/proxy.js';
import { resolveTarget } from '../agent/resolve.js';
import type { DaemonOptions } from '../config.js';
import type { Host } from '../host/server.js';
import type { Identity } from '../identity.js';
import type { Invitations } from '../pair/invitations.js';
import { joinByCode } from '../pair/join.js';
import type { Rendezvous } from '../pair/rendezvous.js';
import { askSessions, attachSession } from '../session/agent.js';
import type { IrohTransport } from '../transport/iroh.js';
import type { IpcServer, IpcSession } from './server.js';

/** What the handlers work over: the roles main.ts has set up. */
export interface DaemonContext {
  readonly version: string;
  /** Date.now() at start, for uptime. */
  readonly started: number;
  readonly opts: DaemonOptions;
  readonly agent: AgentContext;
  readonly transport: IrohTransport;
  readonly identity: Identity;
  readonly forwards: ForwardManager;
  readonly rendezvous: Rendezvous;
  readonly ipc: IpcServer;
  /** Set when this daemon has the host role. */
  readonly host: Host | undefined;
  readonly invitations: Invitations | undefined;
  shutdown(why: string): Promise<void>;
}

type Handler<T extends RequestType> = (ctx: DaemonContext, req: FrameOf<T>, s: IpcSession) => void | Promise<void>;

/** What `status` answers: the daemon, its pooled connections and its forwards. */
export function statusReport(ctx: DaemonContext): DaemonStatusReport {
  const { opts, transport, host, ipc } = ctx;
  return {
    daemon: {
      version: ctx.version,
      pid: process.pid,
      uptimeSeconds: Math.floor((Date.now() - ctx.started) / 1000),
      endpointId: transport.endpointId,
      ticket: transport.ticket(),
      relay: opts.relay.mode,
      sockets: transport.boundSockets(),
      socket: opts.socket,
      persist: opts.persist,
      host: opts.host,
      ...(host ? { hostBackend: opts.hostBackend.kind, hostConnections: host.connectionCount, sessionsServed: host.sessionsServed } : {}),
      ...(transport.addr().relayUrl ? { homeRelay: transport.addr().relayUrl } : {}),
      ipcSessions: ipc.sessionCount,
      ipcBufferedBytes: ipc.bufferedBytes,
    },
    connections: ctx.agent.pool.list(),
    forwards: ctx.forwards.list(),
  };
}

async function forward(ctx: DaemonContext, req: FrameOf<'forward'>, s: IpcSession): Promise<void> {
  if (req.type !== 'local' && req.type !== 'remote' && req.type !== 'dynamic') throw new BurrowError(ErrorCodes.BadArgument, `forward type ${req.type} is not local, remote or dynamic`);
  const spec = parseForward(req.type, req.spec);
  const f = await ctx.forwards.add(await resolveTarget(req.target, ctx.opts.state, ctx.agent.defaultUser), spec, req.detach === true);
  if (req.detach) return s.end(resultFrame('forward', f));
  // Held by this connection: it goes when the client does. Nothing may follow the request (the
  // frame table's follows is empty: the IPC server refuses any frame with UnexpectedFrame).
  s.onClose(() => ctx.forwards.cancelId(f.id));
  s.send(resultFrame('forward', f));
}

async function invite(ctx: DaemonContext, req: FrameOf<'invite'>, s: IpcSession): Promise<void> {
  const invitations = ctx.invitations;
  if (!invitations) throw new BurrowError(ErrorCodes.BadArgument, 'this daemon is not a host: invitations need burrowd --host (or burrow system install --host)');
  const inv = await invitations.create({ ...(req.name !== undefined ? { name: req.name } : {}), ...(req.ttl !== undefined ? { ttlSeconds: req.ttl } : {}), detach: req.detach === true });
  const frame = { t: 'invitation', code: inv.code, nameplate: inv.nameplate, expiresAt: inv.expiresAt, name: inv.name, where: inv.where } as const;
  if (req.detach) return s.end(frame);
  // Held by this client: it goes when the client does (Ctrl-C on burrow invite cancels it).
  const ended = invitations.wait(inv.nameplate);
  s.onClose(() => void invitations.cancel(inv.nameplate));
  s.send(frame);
  invitations.onWarning(inv.nameplate, (w) => s.send({ t: 'stderr', data: Buffer.from(`burrow: warning: ${w}\n`) }));
  const done = await ended;
  if (done.state === 'joined') return s.end({ t: 'result', value: { ...done } });
  throw new BurrowError(ErrorCodes.PairingFailed, done.outcome ?? done.state);
}

/** One handler per request of the frame table; the type makes a missing one a compile error. */
export const HANDLERS: { readonly [T in RequestType]: Handler<T> } = {
  exec: (ctx, req, s) => runSession(ctx.agent, req, s),
  shell: (ctx, req, s) => runSession(ctx.agent, req, s),
  proxy: (ctx, req, s) => runProxy(ctx.agent, ctx.transport, req, s),
  cp: (ctx, req, s) => runCopy(ctx.agent, req, s),
  forward,
  forwards: (ctx, _req, s) => s.end(resultFrame('forwards', { forwards: ctx.forwards.list() })),
  forward_cancel: (ctx, req, s) => s.end(resultFrame('forward_cancel', { cancelled: ctx.forwards.cancel(req.which) })),
  info: async (ctx, req, s) => s.end({ t: 'result', value: await infoOf(ctx.agent, req.target) }),
  status: (ctx, _req, s) => s.end(resultFrame('status', statusReport(ctx))),
  check: async (ctx, req, s) => s.end(resultFrame('check', await checkTarget(ctx.agent, req.target))),
  disconnect: async (ctx, req, s) => s.end(resultFrame('disconnect', await disconnectTarget(ctx.agent, req.target))),
  stop: (ctx, _req, s) => {
    s.end(resultFrame('stop', { stopping: true, pid: process.pid }));
    return ctx.shutdown('stop requested');
  },
  ls: async (ctx, req, s) => s.end({ t: 'result', value: await listRemote(ctx.agent, req) }),
  invite,
  invitations: (ctx, _req, s) => s.end({ t: 'result', value: { invitations: ctx.invitations?.list() ?? [] } }),
  invite_cancel: async (ctx, req, s) => s.end({ t: 'result', value: { cancelled: (await ctx.invitations?.cancel(req.which)) ?? 0 } }),
  join: async (ctx, req, s) => s.end({ t: 'result', value: { ...(await joinByCode({ transport: ctx.transport, rendezvous: ctx.rendezvous, keyLine: ctx.identity.publicKeyLine, code: req.code, log: ctx.agent.log })) } }),
  session_open: (ctx, req, s) => attachSession(ctx.agent, req, s),
  sessions: async (ctx, req, s) => s.end({ t: 'result', value: await askSessions(ctx.agent, req) }),
  session_kill: async (ctx, req, s) => s.end({ t: 'result', value: await askSessions(ctx.agent, req) }),
};

/** Run the handler of `req`'s type. */
export function dispatch<T extends RequestType>(ctx: DaemonContext, req: FrameOf<T> & RequestFrame, s: IpcSession): void | Promise<void> {
  const h: Handler<T> = HANDLERS[req.t as T];
  return h(ctx, req, s);
}
