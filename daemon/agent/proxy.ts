// burrow proxy: raw SSH bytes between a client session and TARGET's SSH server, for OpenSSH's
// ProxyCommand. Each proxy gets its own QUIC connection (a host serves one SSH stream per
// connection); plain host:port targets get a TCP connection, like `ssh -W`.

import type { Duplex } from 'node:stream';
import { ErrorCodes, toBurrowError } from '../../shared/errors.js';
import type { FrameOf } from '../../shared/ipc/frames.js';
import type { IpcSession } from '../ipc/server.js';
import { bridgeSession } from '../ssh/bridge.js';
import type { IrohTransport } from '../transport/iroh.js';
import { dialTcp } from '../transport/tcp.js';
import type { AgentContext } from './ops.js';
import { resolveTarget } from './resolve.js';

const CONNECT_TIMEOUT_MS = 15_000;

export async function runProxy(ctx: AgentContext, transport: IrohTransport, req: FrameOf<'proxy'>, session: IpcSession): Promise<void> {
  session.pause(); // the client's first bytes wait at the socket until the stream is up
  const t = await resolveTarget(req.target, ctx.state, ctx.defaultUser);
  let stream: Duplex;
  let close: () => void;
  if (t.kind === 'iroh') {
    const conn = await transport.dial(t.peer, CONNECT_TIMEOUT_MS);
    try {
      stream = await conn.openStream();
    } catch (err) {
      conn.close('stream open failed');
      throw err;
    }
    close = () => conn.close('proxy ended');
  } else {
    const sock = await dialTcp(t.host, t.port, CONNECT_TIMEOUT_MS);
    stream = sock;
    close = () => sock.destroy();
  }
  if (session.closed) return close();
  ctx.log.info({ event: 'proxy_start', target: t.label, kind: t.kind }, 'proxy start');
  // The stream's end is the session's (exit 0), its error the client's Disconnected.
  bridgeSession(session, stream, { abort: () => stream.destroy() });
  stream.once('end', () => {
    session.end({ t: 'exit', code: 0 });
    close();
  });
  stream.once('error', (err: Error) => {
    session.fail(toBurrowError(err, ErrorCodes.Disconnected));
    close();
  });
  session.onClose(() => {
    stream.destroy();
    close();
  });
  session.resume();
}
