// The inbound role: each authorized iroh connection carries exactly one SSH stream, served by the
// built-in ssh2 server or piped to the machine's sshd. Nothing else is served, and nothing at all
// before the transport check (and, for the built-in server, SSH publickey auth) has passed.

import { homedir, userInfo } from 'node:os';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import type { AuthContext, Connection as SshServerConn } from 'ssh2';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { fingerprint } from '../../shared/sshkey.js';
import type { Identity } from '../identity.js';
import type { Logger } from '../log.js';
import { CloseCode, type Authorize, type IrohConnection } from '../transport/iroh.js';
import { dialTcp } from '../transport/tcp.js';
import { bridgeStreams } from '../ssh/bridge.js';
import { pingClient, rejectWithReason } from '../ssh/private.js';
import type { HostAuth } from './auth.js';
import { serveForwarding, type ForwardPolicy } from './forwarding.js';
import { HOST_IDENT, killGroup, serveSession, type RunningProcess, type SessionUser } from './session.js';
import { enableSpares } from './spare.js';
import { SessionKeepers, type SessionSettings } from '../session/host.js';
import { SESSION_SUBSYSTEM } from '../ssh/subsystems.js';

export type HostBackend =
  | { kind: 'builtin'; maxSessions: number; acceptEnv: readonly string[]; forwarding: ForwardPolicy }
  | { kind: 'sshd'; host: string; port: number; open: boolean };

/** sshd's pre-auth limits and ClientAlive*, in burrow's terms. */
export interface HostLimits {
  /** LoginGraceTime: a connection not authenticated by then is closed (0: never). */
  loginGraceMs: number;
  /** MaxStartups start:rate:full over unauthenticated connections, all peers together. */
  maxStartups: { start: number; rate: number; full: number };
  /** Unauthenticated connections one endpoint may hold (PerSourceMaxStartups). */
  perPeerStartups: number;
  /** ClientAliveInterval (0: off) and ClientAliveCountMax: an SSH ping after this much silence. */
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
}

export const DEFAULT_HOST_LIMITS: HostLimits = {
  loginGraceMs: 30_000,
  maxStartups: { start: 10, rate: 30, full: 100 },
  perPeerStartups: 10,
  keepaliveIntervalMs: 5000,
  keepaliveCountMax: 2,
};

export interface HostOptions {
  identity: Identity;
  backend: HostBackend;
  auth: HostAuth;
  log: Logger;
  limits?: HostLimits;
  /** Seconds between SIGHUP and SIGKILL for the processes of a dropped connection. */
  hangupGraceMs?: number;
  /** Persistent sessions (built-in backend only). */
  sessions?: SessionSettings;
}

const MAX_AUTH_TRIES = 6;
const FAILED_AUTH_DELAY_MS = 300;
// SSH_OPEN_RESOURCE_SHORTAGE (RFC 4254 §5.1).
const OPEN_RESOURCE_SHORTAGE = 4;

function servingUser(): SessionUser {
  const u = userInfo();
  return {
    name: u.username,
    home: homedir(), // $HOME first, like the rest of burrow; passwd when unset
    shell: u.shell && u.shell !== '' ? u.shell : process.env['SHELL'] || '/bin/sh',
    path: process.env['PATH'] ?? '/usr/local/bin:/usr/bin:/bin',
  };
}

export class Host {
  private readonly user = servingUser();
  private readonly live = new Set<IrohConnection>();
  private closing = false;

  private readonly idleWaiters: (() => void)[] = [];
  /** Session channels served since start, for status. */
  sessionsServed = 0;
  /** Connections not yet authenticated, by endpoint id (MaxStartups counts them). */
  private readonly unauthenticated = new Map<string, number>();
  /** Startups counted at authorization, taken over by handle(). */
  private readonly reserved = new Map<string, (() => void)[]>();
  private unauthenticatedTotal = 0;
  private limits: HostLimits;

  /** Persistent sessions' keepers, when the built-in backend serves them. */
  private readonly keepers: SessionKeepers | undefined;

  constructor(private readonly opts: HostOptions) {
    enableSpares(true);
    this.limits = opts.limits ?? DEFAULT_HOST_LIMITS;
    if (opts.sessions && opts.backend.kind === 'builtin') this.keepers = new SessionKeepers(opts.sessions, this.user, opts.backend.acceptEnv, opts.log);
  }

  /** Apply reloaded limits to new connections. */
  setLimits(limits: HostLimits): void {
    this.limits = limits;
  }

  /** MaxStartups: refuse while too many connections are unauthenticated (randomly from start, always at full). */
  private startupRefusal(remoteId: string): string | undefined {
    const { start, rate, full } = this.limits.maxStartups;
    const total = this.unauthenticatedTotal;
    if ((this.unauthenticated.get(remoteId) ?? 0) >= this.limits.perPeerStartups) return `too many unauthenticated connections from this endpoint (limit ${this.limits.perPeerStartups})`;
    if (total >= full) return `too many unauthenticated connections (limit ${full})`;
    if (total >= start) {
      // sshd's ramp: rate% at start, rising linearly to 100% at full.
      const p = rate + ((100 - rate) * (total - start)) / Math.max(1, full - start);
      if (Math.random() * 100 < p) return `too many unauthenticated connections (${total}, refusing from ${start})`;
    }
    return undefined;
  }

  /** Count a connection as unauthenticated until `done` is called (once). */
  private startup(remoteId: string): () => void {
    this.unauthenticated.set(remoteId, (this.unauthenticated.get(remoteId) ?? 0) + 1);
    this.unauthenticatedTotal++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.unauthenticatedTotal--;
      const n = (this.unauthenticated.get(remoteId) ?? 1) - 1;
      if (n <= 0) this.unauthenticated.delete(remoteId);
      else this.unauthenticated.set(remoteId, n);
    };
  }

  /** Stopping: attached clients of persistent sessions are let go (they reattach later); the shells live on. */
  detachSessions(): void {
    this.keepers?.detachAll();
  }

  /** Apply a reloaded configuration to new sessions (SIGHUP); live ones keep theirs. */
  setBackend(backend: HostBackend): void {
    if (backend.kind !== this.opts.backend.kind) {
      this.opts.log.warn({ event: 'reload_ignored', key: 'hostBackend' }, 'the host backend changes only with a restart');
      return;
    }
    this.opts.backend = backend;
  }

  /** Refuse new connections; live ones go on. */
  stopAccepting(): void {
    this.closing = true;
  }

  /** Sessions running now, across connections. */
  private running = 0;

  /** Resolves once no session is running (a connection held open only by forwards does not count). */
  idle(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private sessionEnded(): void {
    this.running--;
    if (this.running === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** The transport hook: the endpoint id against authorized_endpoints, before any stream. */
  readonly authorize: Authorize = async (remoteId) => {
    const requireList = this.opts.backend.kind === 'sshd' && !this.opts.backend.open;
    const verdict = this.closing ? { ok: false as const, reason: 'host is shutting down' } : await this.opts.auth.endpointAllowed(remoteId, requireList);
    const crowded = verdict.ok ? this.startupRefusal(remoteId) : undefined;
    if (crowded) {
      this.opts.log.warn({ event: 'connection_refused', remote: remoteId, reason: crowded, unauthenticated: this.unauthenticatedTotal }, 'connection refused: MaxStartups');
      return { ok: false, reason: crowded };
    }
    // Counted from here, in the same tick as the check, so concurrent handshakes cannot overshoot.
    if (verdict.ok) this.reserved.set(remoteId, [...(this.reserved.get(remoteId) ?? []), this.startup(remoteId)]);
    if (verdict.ok) this.opts.log.info({ event: 'connection_accepted', remote: remoteId, backend: this.opts.backend.kind }, 'connection accepted');
    else this.opts.log.warn({ event: 'connection_refused', remote: remoteId, reason: verdict.reason }, 'connection refused');
    return verdict;
  };

  /** Check at start-up that the configuration is safe to serve. */
  async validate(): Promise<void> {
    const b = this.opts.backend;
    if (b.kind === 'sshd' && !b.open && !(await this.opts.auth.hasEndpointList())) {
      throw new BurrowError(
        ErrorCodes.BadArgument,
        'the sshd backend needs a non-empty authorized_endpoints list (burrow host authorize ENDPOINT_ID), or --open to let any endpoint reach sshd',
      );
    }
  }

  /** Serve one authorized connection: its first stream is SSH; any further stream is refused. */
  handle(conn: IrohConnection): void {
    this.live.add(conn);
    const began = Date.now();
    // Unauthenticated until SSH auth succeeds (built-in) or sshd answers (sshd backend, which
    // applies its own LoginGraceTime from there on).
    const mine = this.reserved.get(conn.remoteId);
    const authenticated = mine?.shift() ?? this.startup(conn.remoteId);
    if (mine?.length === 0) this.reserved.delete(conn.remoteId);
    const graceMs = this.limits.loginGraceMs;
    const grace =
      graceMs > 0
        ? setTimeout(() => {
            this.opts.log.warn({ event: 'login_grace_expired', remote: conn.remoteId, graceSeconds: graceMs / 1000 }, 'connection closed: not authenticated within the login grace time');
            conn.close('not authenticated within the login grace time', CloseCode.Refused);
          }, graceMs)
        : undefined;
    const authed = (): void => {
      clearTimeout(grace);
      authenticated();
    };
    void conn.closed.then((reason) => {
      authed();
      this.live.delete(conn);
      this.opts.log.info({ event: 'connection_closed', remote: conn.remoteId, reason, durationMs: Date.now() - began }, 'connection closed');
    });
    void (async () => {
      let stream: Duplex;
      try {
        stream = await conn.acceptStream();
      } catch {
        return; // closed before opening a stream
      }
      stream.once('close', () => conn.close('ssh stream ended'));
      if (this.opts.backend.kind === 'builtin') this.serveBuiltin(conn, stream, this.opts.backend, authed);
      else this.pipeToSshd(conn, stream, this.opts.backend, authed);
      // One SSH stream per connection: anything more is refused, never read.
      for (;;) {
        const extra = await conn.acceptStream().catch(() => null);
        if (!extra) return;
        this.opts.log.warn({ event: 'stream_refused', remote: conn.remoteId }, 'extra stream refused: one SSH stream per connection');
        extra.destroy();
      }
    })();
  }

  private serveBuiltin(conn: IrohConnection, stream: Duplex, backend: Extract<HostBackend, { kind: 'builtin' }>, authed: () => void): void {
    const log = this.opts.log;
    const remote = conn.remoteId;
    const procs = new Set<RunningProcess>();
    // A dropped connection closes no Session object in ssh2: these are ended with the client.
    const openSessions = new Set<() => void>();
    let sessions = 0;
    let authTries = 0;
    const server = new ssh2.Server({ hostKeys: [this.opts.identity.privateKeyOpenSSH], ident: HOST_IDENT });
    server.on('connection', (client: SshServerConn) => {
      client.on('error', (err: Error) => log.debug({ remote, err: err.message }, 'ssh connection error'));
      client.on('authentication', (ctx: AuthContext) => void this.authenticate(ctx, remote, ++authTries, client));
      client.on('ready', () => {
        authed();
        this.keepAlive(conn, stream, client);
        client.on('session', (accept, reject) => {
          if (sessions >= backend.maxSessions) {
            log.warn({ event: 'session_refused', remote, limit: backend.maxSessions }, 'session refused: channel limit');
            rejectWithReason(client, reject, OPEN_RESOURCE_SHORTAGE, `channel limit of ${backend.maxSessions} reached`);
            return;
          }
          sessions++;
          log.debug({ event: 'channel_opened', remote, open: sessions }, 'session channel opened');
          // Counted as served and running once a request starts it: an agent opens a channel
          // ahead of its next command (spare channels), and an idle one must not hold a stop.
          let started = false;
          const onStart = (): void => {
            if (started) return;
            started = true;
            this.sessionsServed++;
            this.running++;
          };
          let ended = false;
          const end = (): void => {
            if (ended) return;
            ended = true;
            sessions--;
            if (started) this.sessionEnded();
          };
          openSessions.add(end);
          const session = accept();
          const keepers = this.keepers;
          const subsystems = keepers ? { [SESSION_SUBSYSTEM]: (ch: import('ssh2').ServerChannel) => keepers.serve(ch, remote) } : undefined;
          serveSession(session, { user: this.user, remote, local: this.opts.identity.endpointId, acceptEnv: backend.acceptEnv, log, onStart, track: (p) => (procs.add(p), void p.done.then(() => procs.delete(p))), ...(subsystems ? { subsystems } : {}) }, () => {
            openSessions.delete(end);
            end();
          });
        });
        serveForwarding(client, remote, backend.forwarding, log);
      });
      client.once('close', () => {
        this.hangUp(procs);
        for (const end of openSessions) end();
        openSessions.clear();
      });
    });
    server.injectSocket(stream as unknown as import('node:net').Socket);
  }

  private async authenticate(ctx: AuthContext, remote: string, tries: number, client: SshServerConn): Promise<void> {
    const log = this.opts.log;
    if (tries > MAX_AUTH_TRIES) {
      log.warn({ event: 'auth_refused', remote, user: ctx.username, reason: 'too many attempts' }, 'auth refused');
      client.end();
      return;
    }
    if (ctx.method !== 'publickey') {
      // Only publickey: no password, no keyboard-interactive. "none" is the client asking what we take.
      if (ctx.method !== 'none') log.info({ event: 'auth_refused', remote, user: ctx.username, method: ctx.method, reason: 'method not allowed' }, 'auth refused');
      ctx.reject(['publickey']);
      return;
    }
    const fp = fingerprint(ctx.key.data);
    const match = await this.opts.auth.findKey(ctx.key.algo, ctx.key.data);
    if (!match) {
      log.warn({ event: 'auth_refused', remote, user: ctx.username, key: fp, reason: 'key not authorized' }, 'auth refused');
      await delay(FAILED_AUTH_DELAY_MS);
      ctx.reject(['publickey']);
      return;
    }
    if (!ctx.signature) {
      ctx.accept(); // the client asks whether this key would do; it signs next
      return;
    }
    if (match.key.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) !== true) {
      log.warn({ event: 'auth_refused', remote, user: ctx.username, key: fp, reason: 'bad signature' }, 'auth refused');
      await delay(FAILED_AUTH_DELAY_MS);
      ctx.reject(['publickey']);
      return;
    }
    log.info({ event: 'auth_accepted', remote, user: ctx.username, key: fp, source: match.source }, 'auth accepted');
    ctx.accept();
  }

  private pipeToSshd(conn: IrohConnection, stream: Duplex, b: Extract<HostBackend, { kind: 'sshd' }>, authed: () => void): void {
    const log = this.opts.log;
    const began = Date.now();
    stream.pause(); // the client's bytes wait in the stream until sshd answers
    dialTcp(b.host, b.port, 10_000).then(
      (sock) => {
        authed();
        log.info({ event: 'session_start', remote: conn.remoteId, kind: 'sshd', sshd: `${b.host}:${b.port}` }, 'session start');
        this.running++;
        this.sessionsServed++;
        // The bridge gives backpressure both ways and carries each half-close across.
        const flow = bridgeStreams(stream, sock);
        const end = (err?: Error): void => {
          sock.destroy();
          stream.destroy();
          conn.close(err ? 'sshd connection failed' : 'sshd session ended');
        };
        sock.once('error', end);
        stream.once('error', end);
        sock.once('close', () => {
          this.sessionEnded();
          if (!stream.writableEnded) stream.end();
          log.info({ event: 'session_end', remote: conn.remoteId, kind: 'sshd', bytesIn: flow.aToB, bytesOut: flow.bToA, durationMs: Date.now() - began }, 'session end');
        });
      },
      (err: unknown) => {
        log.error({ event: 'sshd_unreachable', remote: conn.remoteId, err: (err as Error).message }, 'cannot reach sshd');
        stream.destroy();
        conn.close('host cannot reach its sshd', CloseCode.Protocol);
      },
    );
  }

  /**
   * ClientAlive: after `interval` of silence from the client, an SSH ping (which any SSH client
   * answers); after `count` unanswered ones the client is gone and the connection is closed, so
   * its processes are hung up without waiting for QUIC's idle timeout.
   */
  private keepAlive(conn: IrohConnection, stream: Duplex, client: SshServerConn): void {
    const { keepaliveIntervalMs: interval, keepaliveCountMax: countMax } = this.limits;
    if (interval <= 0) return;
    let lastHeard = Date.now();
    let unanswered = 0;
    const heard = (): void => {
      lastHeard = Date.now();
      unanswered = 0;
    };
    stream.on('data', heard);
    const timer = setInterval(() => {
      if (Date.now() - lastHeard < interval) return;
      if (unanswered >= countMax) {
        clearInterval(timer);
        this.opts.log.warn({ event: 'keepalive_timeout', remote: conn.remoteId, silentMs: Date.now() - lastHeard }, 'client stopped answering: closing the connection');
        client.end();
        stream.destroy();
        conn.close('keepalive timeout');
        return;
      }
      unanswered++;
      lastHeard = Date.now(); // the next check comes one interval after this ping
      pingClient(client);
    }, Math.max(100, Math.floor(interval / 4)));
    timer.unref();
    void conn.closed.then(() => clearInterval(timer));
    stream.once('close', () => clearInterval(timer));
  }

  /** A dropped connection's processes get SIGHUP, then SIGKILL after a grace period. */
  private hangUp(procs: Set<RunningProcess>): void {
    if (procs.size === 0) return;
    const grace = this.opts.hangupGraceMs ?? 5000;
    for (const p of procs) {
      killGroup(p.pid, 'SIGHUP');
      const timer = setTimeout(() => killGroup(p.pid, 'SIGKILL'), grace);
      void p.done.then(() => clearTimeout(timer));
    }
  }

  get connectionCount(): number {
    return this.live.size;
  }

  close(): void {
    this.closing = true;
    enableSpares(false);
    for (const c of this.live) c.close('host is shutting down', CloseCode.Shutdown);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
