// Forwards held by the daemon: -L and -D listen here and open a channel per connection on the
// pooled connection (reconnecting as needed); -R asks the host to listen and connects here for
// each connection it sends back. A forward holds its pooled connection open past `persist`, and
// after the connection is lost and re-made, remote forwards are asked for again.

import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Client as SshClient, ClientChannel, TcpConnectionDetails, UNIXConnectionDetails } from 'ssh2';
import { BurrowError, ErrorCodes, firstLine } from '../../shared/errors.js';
import { cancelCandidates, forwardText, placeText, sameForward, type ForwardSpec, type Place } from '../../shared/forward.js';
import type { ForwardStatus } from '../../shared/status.js';
import { splice } from '../ssh/bridge.js';
import type { Logger } from '../log.js';
import { bulkLane, type Pool, type PooledConnection, type ResolvedTarget } from './pool.js';
import { readSocksRequest } from './socks.js';

class Forward {
  connections = 0;
  active = 0;
  bytesIn = 0;
  bytesOut = 0;
  lastError: string | undefined;
  listener: Server | undefined;
  boundPort: number | undefined;
  held: PooledConnection | undefined;
  /** The remote listen address as sent in tcpip-forward (for matching incoming connections). */
  remoteBind: { addr: string; port: number } | undefined;

  constructor(
    readonly id: string,
    readonly target: ResolvedTarget,
    readonly spec: ForwardSpec,
    readonly detached: boolean,
  ) {}

  status(): ForwardStatus {
    return {
      id: this.id,
      target: this.target.label,
      forward: forwardText(this.spec),
      detached: this.detached,
      state: this.held && !this.held.dead ? 'active' : 'reconnecting',
      ...(this.boundPort !== undefined ? { boundPort: this.boundPort } : {}),
      connections: this.connections,
      active: this.active,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      ...(this.lastError ? { lastError: this.lastError } : {}),
    };
  }
}

function listen(server: Server, place: Place): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      const what = placeText(place);
      reject(new BurrowError(ErrorCodes.BadArgument, err.code === 'EADDRINUSE' ? `${what} is already in use` : `cannot listen on ${what}: ${err.code ?? err.message}`));
    });
    const onListening = (): void => {
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : undefined);
    };
    if (place.kind === 'unix') server.listen(place.path, onListening);
    else server.listen(place.port, place.host, onListening);
  });
}

export class ForwardManager {
  private readonly forwards = new Map<string, Forward>();
  private readonly watched = new WeakSet<SshClient>();
  private nextId = 1;
  private readonly retry = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly pool: Pool,
    private readonly log: Logger,
  ) {
    pool.on('closed', (c: PooledConnection) => this.lost(c));
  }

  list(): ForwardStatus[] {
    return [...this.forwards.values()].map((f) => f.status());
  }

  /** Set a forward up; nothing is left half-made when it fails. */
  async add(target: ResolvedTarget, spec: ForwardSpec, detached: boolean): Promise<ForwardStatus> {
    const f = new Forward(String(this.nextId++), bulkLane(target), spec, detached);
    const conn = await this.pool.get(target);
    if (spec.type === 'remote') await this.requestRemote(f, conn);
    else {
      // Half-open: a client that has finished sending still gets the rest of the answer.
      const server = createServer({ allowHalfOpen: true }, (sock) => void this.incoming(f, sock));
      f.listener = server;
      try {
        f.boundPort = await listen(server, spec.listen);
      } catch (err) {
        server.close();
        throw err;
      }
    }
    f.held = conn;
    this.pool.hold(conn, 1);
    this.forwards.set(f.id, f);
    this.log.info({ event: 'forward_added', id: f.id, target: target.label, forward: forwardText(spec), detached }, 'forward added');
    return f.status();
  }

  /** Cancel by id, or by spec as typed at add or as listed (see cancelCandidates); returns how many. */
  cancel(which: string): number {
    const byId = this.forwards.get(which.trim());
    if (byId) {
      this.remove(byId);
      return 1;
    }
    const specs = cancelCandidates(which);
    let n = 0;
    for (const f of [...this.forwards.values()]) {
      if (specs.some((s) => sameForward(s, f.spec))) {
        this.remove(f);
        n++;
      }
    }
    return n;
  }

  cancelId(id: string): void {
    const f = this.forwards.get(id);
    if (f) this.remove(f);
  }

  private remove(f: Forward): void {
    this.forwards.delete(f.id);
    f.listener?.close();
    const t = this.retry.get(f.id);
    if (t) clearTimeout(t);
    if (f.held && !f.held.dead) {
      // The host closes its listener (and removes a socket file) as the held connection stays up.
      if (f.spec.type === 'remote') {
        const c = f.held.client;
        if (f.spec.listen.kind === 'unix') c.openssh_unforwardInStreamLocal(f.spec.listen.path, () => undefined);
        else if (f.remoteBind) c.unforwardIn(f.remoteBind.addr, f.remoteBind.port, () => undefined);
      }
      this.pool.hold(f.held, -1);
    }
    f.held = undefined;
    this.log.info({ event: 'forward_cancelled', id: f.id, forward: forwardText(f.spec) }, 'forward cancelled');
  }

  closeAll(): void {
    for (const f of [...this.forwards.values()]) this.remove(f);
  }

  /** -L and -D: one channel per local connection, on the pooled connection (re-made if lost). */
  private async incoming(f: Forward, sock: Socket): Promise<void> {
    sock.pause();
    sock.on('error', () => undefined);
    f.connections++;
    let to: Place;
    let reply: ((ok: boolean) => void) | undefined;
    if (f.spec.type === 'dynamic') {
      const req = await readSocksRequest(sock);
      if (!req) return;
      to = { kind: 'tcp', host: req.host, port: req.port };
      reply = req.reply;
    } else to = (f.spec as Extract<ForwardSpec, { type: 'local' }>).connect;
    let ch: ClientChannel;
    const from = { host: sock.remoteAddress ?? '127.0.0.1', port: sock.remotePort ?? 0 };
    try {
      // A connection that died unnoticed (its close never arrived) fails the open: one retry on
      // a fresh one, since a failed open means nothing was sent to the destination yet.
      for (let attempt = 0; ; attempt++) {
        const conn = await this.pool.get(f.target);
        this.rehold(f, conn);
        try {
          const o = await this.pool.openForward(conn, to, from);
          ch = o.channel;
          // The pool may have replaced a dead connection inside the open: hold the one in use.
          this.rehold(f, o.connection);
          break;
        } catch (err) {
          if (attempt > 0 || !(err instanceof BurrowError) || err.code !== ErrorCodes.Disconnected) throw err;
        }
      }
    } catch (err) {
      f.lastError = firstLine((err as Error).message);
      this.log.info({ event: 'forward_connect_failed', id: f.id, to: placeText(to), err: f.lastError }, 'forward connect failed');
      reply?.(false);
      sock.end();
      return;
    }
    reply?.(true);
    this.track(f, sock, ch);
    sock.resume();
  }

  private track(f: Forward, sock: Socket, ch: Duplex): void {
    f.active++;
    splice(sock, ch, (fromSock, fromChannel) => {
      f.active--;
      f.bytesOut += fromSock;
      f.bytesIn += fromChannel;
    });
  }

  /** Move the forward's hold to the connection now in use. */
  private rehold(f: Forward, conn: PooledConnection): void {
    if (f.held === conn) return;
    if (f.held && !f.held.dead) this.pool.hold(f.held, -1);
    f.held = conn;
    this.pool.hold(conn, 1);
  }

  /** -R: ask the host to listen; its connections arrive as channels on this client. */
  private async requestRemote(f: Forward, conn: PooledConnection): Promise<void> {
    const spec = f.spec as Extract<ForwardSpec, { type: 'remote' }>;
    this.watch(conn.client);
    if (spec.listen.kind === 'unix') {
      const path = spec.listen.path;
      await new Promise<void>((resolve, reject) =>
        conn.client.openssh_forwardInStreamLocal(path, (err) =>
          err ? reject(new BurrowError(ErrorCodes.ChannelRefused, `the host refused to listen on ${path}: ${firstLine(err.message)}`)) : resolve(),
        ),
      );
      return;
    }
    const { host, port } = spec.listen;
    const bound = await new Promise<number>((resolve, reject) =>
      conn.client.forwardIn(host, port, (err, p) =>
        err ? reject(new BurrowError(ErrorCodes.ChannelRefused, `the host refused to listen on ${host}:${port}: ${firstLine(err.message)}`)) : resolve(p || port),
      ),
    );
    f.remoteBind = { addr: host, port: bound };
    f.boundPort = bound;
  }

  /** Route the host's forwarded connections on this client to their -R forward. */
  private watch(client: SshClient): void {
    if (this.watched.has(client)) return;
    this.watched.add(client);
    client.on('tcp connection', (info: TcpConnectionDetails, accept, reject) => {
      const f = [...this.forwards.values()].find((x) => x.held?.client === client && x.remoteBind?.port === info.destPort && x.spec.listen.kind === 'tcp');
      if (!f) return reject();
      this.connectBack(f, accept, reject);
    });
    client.on('unix connection', (info: UNIXConnectionDetails, accept, reject) => {
      const f = [...this.forwards.values()].find((x) => x.held?.client === client && x.spec.type === 'remote' && x.spec.listen.kind === 'unix' && x.spec.listen.path === info.socketPath);
      if (!f) return reject();
      this.connectBack(f, accept, reject);
    });
  }

  private connectBack(f: Forward, accept: () => Duplex, reject: () => void): void {
    const to = (f.spec as Extract<ForwardSpec, { type: 'remote' }>).connect;
    f.connections++;
    const sock = to.kind === 'unix' ? connect({ path: to.path, allowHalfOpen: true }) : connect({ port: to.port, host: to.host, allowHalfOpen: true });
    const onError = (err: NodeJS.ErrnoException): void => {
      f.lastError = `connect to ${placeText(to)}: ${err.code ?? err.message}`;
      reject();
    };
    sock.once('error', onError);
    sock.once('connect', () => {
      sock.off('error', onError);
      this.track(f, sock, accept());
    });
  }

  /** A pooled connection went away: forwards on it reconnect, with backoff. */
  private lost(c: PooledConnection): void {
    for (const f of this.forwards.values()) {
      if (f.held !== c) continue;
      f.held = undefined;
      this.reconnect(f, 500);
    }
  }

  private reconnect(f: Forward, delayMs: number): void {
    if (this.retry.has(f.id) || !this.forwards.has(f.id)) return;
    const t = setTimeout(() => {
      this.retry.delete(f.id);
      if (!this.forwards.has(f.id)) return;
      void (async () => {
        try {
          const conn = await this.pool.get(f.target);
          if (f.spec.type === 'remote') await this.requestRemote(f, conn);
          this.rehold(f, conn);
          f.lastError = undefined;
          this.log.info({ event: 'forward_restored', id: f.id, forward: forwardText(f.spec) }, 'forward restored');
        } catch (err) {
          f.lastError = firstLine((err as Error).message);
          this.reconnect(f, Math.min(delayMs * 2, 30_000));
        }
      })();
    }, delayMs);
    t.unref();
    this.retry.set(f.id, t);
  }
}
