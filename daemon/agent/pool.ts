// The ControlMaster: one authenticated SSH connection per target, shared by every request.
// Concurrent requests for a target share one connect attempt; a channel the server refuses while
// others are open waits for one to close (busy is not dead); an idle connection is kept for
// `persist` seconds; a dead one is evicted and the next request reconnects. Nothing falls back
// to anything other than what was asked for.

import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { placeText, type Place } from '../../shared/forward.js';
import type { Client as SshClient } from 'ssh2';
import { BurrowError, ErrorCodes, firstLine } from '../../shared/errors.js';
import { MAX_COMMAND } from '../../shared/ipc/frames.js';
import type { ConnectionStatus } from '../../shared/status.js';
import type { Logger } from '../log.js';
import { longExecSupport, openChannel, SpareChannel, spareChannelSupport, openForwardChannel, openSftpChannel, openSubsystemChannel, type OpenedChannel, type OpenedSession, type OpenedSftp, type SessionRequest } from '../ssh/channels.js';
import { connectSsh, type AuthMethod, type HostKeyPolicy } from '../ssh/client.js';
import { remoteIdentComment, remoteSoftware } from '../ssh/private.js';
import { BOOT_ID_PREFIX } from '../ssh/subsystems.js';
import type { IrohConnection, IrohStream, IrohTransport, PeerAddr } from '../transport/iroh.js';
import { dialTcp } from '../transport/tcp.js';
import { checkKnownHost, type KnownHostsFiles } from './knownhosts.js';

export type ResolvedTarget =
  | { kind: 'iroh'; key: string; label: string; user: string; endpointId: string; peer: PeerAddr }
  | { kind: 'tcp'; key: string; label: string; user: string; host: string; port: number };

/**
 * The lane for bulk work (file copies, forwards) to a target: its own SSH connection (and so its
 * own QUIC connection or TCP socket), so that megabytes queued for a copy never sit in front of a
 * keystroke on the interactive connection (ssh2 multiplexes every channel into one byte stream
 * and lets each channel queue a whole 2 MiB window into it).
 */
export function bulkLane(t: ResolvedTarget): ResolvedTarget {
  return t.key.endsWith(BULK_SUFFIX) ? t : { ...t, key: t.key + BULK_SUFFIX };
}
const BULK_SUFFIX = '#bulk';

export interface PoolOptions {
  transport: IrohTransport;
  log: Logger;
  /** Seconds an idle connection is kept; 0 keeps it forever. */
  persist: number;
  authMethods: () => Promise<AuthMethod[]>;
  knownHosts: KnownHostsFiles;
  connectTimeoutMs?: number;
  /** ServerAliveInterval (0: off) and ServerAliveCountMax. */
  keepalive?: { intervalMs: number; countMax: number };
}

// Dead-peer detection by default: an SSH ping after 5 s of silence, and the connection is declared
// dead when two pings go unanswered (within 15 s). Any packet from the peer resets it.
const DEFAULT_KEEPALIVE = { intervalMs: 5000, countMax: 2 };
// What a server at its session limit answers: OpenSSH past MaxSessions says CONNECT_FAILED (2,
// "open failed"), burrow's host RESOURCE_SHORTAGE (4), others ADMINISTRATIVELY_PROHIBITED (1).
// Only taken as "busy" while this connection has other channels open.
const BUSY_REASONS = new Set([1, 2, 4]);
/** After a busy refusal, how long no spare channel is opened on that connection. */
const SPARE_BACKOFF_MS = 30_000;

/** One try at opening a channel: whether a request went out with the open (a spare's). */
interface Attempt {
  requestSent: boolean;
}

export class PooledConnection {
  channels = 0;
  /** Forwards and other holders that keep the connection open though no channel is. */
  holds = 0;
  dead = false;
  /** Why the connection went away, once it has. */
  lostReason: string | undefined;

  /** The reason it was lost, waiting briefly for the transport to report it. */
  async whyLost(): Promise<string> {
    if (this.iroh) {
      const r = await Promise.race([this.iroh.closed, new Promise<undefined>((res) => setTimeout(() => res(undefined), 300))]);
      if (r) return r;
    }
    return this.lostReason ?? 'the connection closed';
  }
  readonly created = Date.now();
  lastActive = Date.now();
  private idleTimer: NodeJS.Timeout | undefined;
  private readonly waiters: (() => void)[] = [];
  /** A session channel opened ahead of the next command, once this connection has run one. */
  private spare: SpareChannel | undefined;
  /** Set when the host said it was at its session limit. */
  private noSpareUntil = 0;

  constructor(
    readonly target: ResolvedTarget,
    readonly client: SshClient,
    private readonly stream: IrohStream | Socket,
    readonly iroh: IrohConnection | undefined,
  ) {}

  /** Bytes received from the server so far: unchanged means it has answered nothing since. */
  get bytesHeard(): number {
    return 'bytesIn' in this.stream ? this.stream.bytesIn : this.stream.bytesRead;
  }

  /** The server's software version from its SSH ident (e.g. burrow_0.1, OpenSSH_9.6). */
  get serverSoftware(): string {
    return remoteSoftware(this.client);
  }

  /**
   * Start a session or subsystem on the spare channel when one is ready (the attempt notes that
   * its request went out with it: the session waits one round trip, not two), else open it the
   * usual way; then open the next spare in the same tick, so its open leaves with these requests.
   * Spares only to burrow hosts that count a channel once it is started (spareChannelSupport);
   * they are not in `channels`.
   */
  openAhead<T>(attempt: Attempt, onSpare: (s: SpareChannel) => Promise<T>, plain: () => Promise<T>): Promise<T> {
    const spare = !this.dead && this.spare?.ready ? this.spare : undefined;
    if (spare) this.spare = undefined;
    attempt.requestSent = spare !== undefined;
    const opened = spare ? onSpare(spare) : plain();
    this.refillSpare();
    return opened;
  }

  /** Give back an idle spare (the host at its session limit holds a slot for it); false when there was none. */
  closeSpare(): boolean {
    // No spares for a while: at its limit the host would refuse each new one (and log it).
    this.noSpareUntil = Date.now() + SPARE_BACKOFF_MS;
    if (!this.spare?.close()) return false;
    this.spare = undefined;
    return true;
  }

  /** Which start of a burrow host answers (the comment in its SSH ident); '' for other servers. */
  get bootId(): string {
    const c = remoteIdentComment(this.client);
    return c.startsWith(BOOT_ID_PREFIX) ? c : '';
  }

  /** Open a spare for the next session, unless one is open or opening, or the host is near its limit. */
  private refillSpare(): void {
    if (this.spare?.refused) {
      this.noSpareUntil = Date.now() + SPARE_BACKOFF_MS;
      this.spare = undefined;
    }
    if (this.dead || this.spare?.pending || Date.now() < this.noSpareUntil || !spareChannelSupport(this.serverSoftware)) return;
    this.spare = new SpareChannel(this.client);
  }

  /** Wait until a channel closes (or the connection dies). */
  waitForSlot(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  wakeOne(): void {
    this.waiters.shift()?.();
  }

  wakeAll(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  setIdleTimer(t: NodeJS.Timeout | undefined): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = t;
  }

  status(): ConnectionStatus {
    const idle = this.channels === 0 && this.holds === 0;
    const s: ConnectionStatus = {
      target: this.target.label,
      key: this.target.key,
      kind: this.target.kind,
      ...(this.target.key.endsWith(BULK_SUFFIX) ? { lane: 'bulk' as const } : {}),
      path: 'tcp',
      channels: this.channels,
      waiting: this.waiters.length,
      idleSeconds: idle ? Math.floor((Date.now() - this.lastActive) / 1000) : 0,
      ageSeconds: Math.floor((Date.now() - this.created) / 1000),
      bytesIn: 'bytesIn' in this.stream ? this.stream.bytesIn : this.stream.bytesRead,
      bytesOut: 'bytesOut' in this.stream ? this.stream.bytesOut : this.stream.bytesWritten,
    };
    if (this.target.kind === 'iroh' && this.iroh) {
      const p = this.iroh.path();
      s.endpointId = this.target.endpointId;
      s.path = p.kind;
      if (p.remoteAddr !== undefined) s.remote = p.remoteAddr;
      if (p.rttMs !== undefined) s.rttMs = p.rttMs;
    } else if (this.target.kind === 'tcp') {
      s.remote = `${this.target.host}:${this.target.port}`;
    }
    return s;
  }

  close(reason: string): void {
    this.setIdleTimer(undefined);
    this.client.end();
    this.iroh?.close(reason);
    if (!this.iroh) this.stream.destroy();
  }
}

/** Emits 'connected' (PooledConnection) and 'closed' (PooledConnection) so forwards can follow reconnects. */
export class Pool extends EventEmitter {
  private readonly live = new Map<string, PooledConnection>();
  private readonly pending = new Map<string, Promise<PooledConnection>>();
  private closing = false;

  constructor(private readonly opts: PoolOptions) {
    super();
  }

  find(key: string): PooledConnection | undefined {
    return this.live.get(key);
  }

  list(): ConnectionStatus[] {
    return [...this.live.values()].map((c) => c.status());
  }

  /**
   * The live connection for a target, connecting once however many ask at the same time.
   * `timeoutMs` bounds a fresh attempt (default: the daemon's); one already under way keeps its own.
   */
  async get(t: ResolvedTarget, timeoutMs?: number): Promise<PooledConnection> {
    if (this.closing) throw new BurrowError(ErrorCodes.ShuttingDown, 'daemon is shutting down');
    const have = this.live.get(t.key);
    if (have && !have.dead) return have;
    let p = this.pending.get(t.key);
    if (!p) {
      p = this.connect(t, timeoutMs).finally(() => this.pending.delete(t.key));
      this.pending.set(t.key, p);
    }
    return p;
  }

  private async connect(t: ResolvedTarget, timeoutMs?: number): Promise<PooledConnection> {
    const timeout = timeoutMs ?? this.opts.connectTimeoutMs ?? 15_000;
    const began = Date.now();
    let stream: IrohStream | Socket;
    let iroh: IrohConnection | undefined;
    let hostKey: HostKeyPolicy;
    if (t.kind === 'iroh') {
      iroh = await this.opts.transport.dial(t.peer, timeout);
      try {
        stream = await iroh.openStream();
      } catch (err) {
        iroh.close('stream open failed');
        throw err;
      }
      hostKey = { kind: 'endpoint', endpointId: t.endpointId };
    } else {
      stream = await dialTcp(t.host, t.port, timeout);
      const files = this.opts.knownHosts;
      hostKey = { kind: 'check', verify: (key) => checkKnownHost(files, t.host, t.port, key) };
    }
    let client: SshClient;
    try {
      client = await connectSsh({
        stream,
        username: t.user,
        auth: await this.opts.authMethods(),
        hostKey,
        readyTimeoutMs: timeout,
        keepaliveIntervalMs: (this.opts.keepalive ?? DEFAULT_KEEPALIVE).intervalMs,
        keepaliveCountMax: (this.opts.keepalive ?? DEFAULT_KEEPALIVE).countMax,
      });
    } catch (err) {
      iroh?.close('ssh failed');
      stream.destroy();
      this.opts.log.warn({ event: 'connect_failed', target: t.label, code: (err as BurrowError).code, err: (err as Error).message }, 'connect failed');
      throw err;
    }
    if (this.closing) {
      client.end();
      iroh?.close('shutting down');
      throw new BurrowError(ErrorCodes.ShuttingDown, 'daemon is shutting down');
    }
    const c = new PooledConnection(t, client, stream, iroh);
    this.live.set(t.key, c);
    this.opts.log.info({ event: 'connected', target: t.label, key: t.key, kind: t.kind, ms: Date.now() - began, path: c.status().path }, 'connected');
    client.on('error', (err: Error) => this.lose(c, firstLine(err.message)));
    client.on('close', () => this.lose(c, 'closed'));
    // ssh2 stays silent (no keepalive error, no close) once its stream has ended or failed, and
    // then answers every request with "Not connected": the stream's own end is a loss too.
    stream.once('end', () => this.lose(c, 'the SSH stream ended'));
    stream.once('close', () => this.lose(c, 'the SSH stream closed'));
    stream.on('error', (err: Error) => this.lose(c, firstLine(err.message)));
    void iroh?.closed.then((r) => this.lose(c, r));
    this.touch(c);
    this.emit('connected', c);
    return c;
  }

  /** A connection found dead or let go (idle, disconnect, stop): out of the pool, logged once, closed, its waiters woken. */
  private lose(c: PooledConnection, why: string): void {
    if (c.dead) return;
    c.dead = true;
    c.lostReason = why;
    c.setIdleTimer(undefined);
    if (this.live.get(c.target.key) === c) this.live.delete(c.target.key);
    c.wakeAll();
    this.opts.log.info({ event: 'disconnected', target: c.target.label, key: c.target.key, reason: why }, 'connection closed');
    c.close(why);
    this.emit('closed', c);
  }

  /** Note a change in use: arm the persist timer when nothing holds the connection. */
  touch(c: PooledConnection): void {
    c.lastActive = Date.now();
    if (c.channels > 0 || c.holds > 0 || c.dead) return c.setIdleTimer(undefined);
    if (this.opts.persist === 0) return c.setIdleTimer(undefined);
    const t = setTimeout(() => {
      if (c.channels === 0 && c.holds === 0 && !c.dead) {
        this.opts.log.info({ event: 'persist_expired', target: c.target.label, persist: this.opts.persist }, 'idle connection closed');
        this.lose(c, `idle for ${this.opts.persist} s`);
      }
    }, this.opts.persist * 1000);
    t.unref();
    c.setIdleTimer(t);
  }

  /** Open a session channel (exec or shell), waiting while the server says it is busy. */
  openSession(c: PooledConnection, req: SessionRequest): Promise<OpenedSession & Reopened> {
    const bytes = req.command === undefined ? 0 : Buffer.byteLength(req.command);
    if (bytes > MAX_COMMAND) throw new BurrowError(ErrorCodes.BadArgument, `the command is ${bytes} bytes; burrow sends commands of up to ${MAX_COMMAND} bytes (pass more as stdin)`);
    return this.openTracked(c, 'session', (conn, attempt) => {
      // ssh2 (burrow's host) drops any SSH packet over 35,000 bytes, and with it the whole
      // connection; OpenSSH's limit is 256 KiB. A long command goes to a burrow host on stdin.
      const long = req.command !== undefined && bytes > SAFE_EXEC_BYTES;
      const support = long ? longExecSupport(conn.serverSoftware) : 'no';
      if (support === 'yes') return openChannel(conn.client, req, 'stdin');
      // An older burrow host would drop the whole connection on a packet over 35,000 bytes.
      if (support === 'old-burrow') throw new BurrowError(ErrorCodes.BadArgument, `the command is ${bytes} bytes; ${conn.target.label} runs an older burrow (${conn.serverSoftware}), which takes commands of up to ${SAFE_EXEC_BYTES} bytes: update burrow there, or pass the rest as stdin`);
      if (bytes > OPENSSH_EXEC_BYTES) throw new BurrowError(ErrorCodes.BadArgument, `the command is ${bytes} bytes; ${conn.target.label} takes commands of up to ${OPENSSH_EXEC_BYTES} bytes in one SSH packet`);
      return conn.openAhead(attempt, (s) => s.startSession(req), () => openChannel(conn.client, req, 'exec'));
    });
  }

  /** Open a subsystem channel (e.g. burrow-info@burrow) on the pooled connection. */
  openSubsystem(c: PooledConnection, name: string): Promise<OpenedChannel & Reopened> {
    return this.openTracked(c, `subsystem ${name}`, (conn, attempt) => conn.openAhead(attempt, (s) => s.startSubsystem(name), () => openSubsystemChannel(conn.client, name)));
  }

  /** Open an SFTP channel on the pooled connection. */
  openSftp(c: PooledConnection): Promise<OpenedSftp & Reopened> {
    return this.openTracked(c, 'sftp', ({ client }) => openSftpChannel(client));
  }

  /**
   * Count a channel from the attempt on (so the persist timer cannot fire under it), wait for a
   * free slot when the server says it is busy while others are open, and release it on close.
   * A connection found dead before the server answered anything to this open (a host that
   * restarted unnoticed) is replaced once: the command cannot have started. Once the server
   * has answered, a loss is the caller's Disconnected, never a retry.
   */
  private async openTracked<T extends { closed: Promise<void> }>(first: PooledConnection, what: string, open: (c: PooledConnection, attempt: Attempt) => Promise<T>): Promise<T & Reopened> {
    let c = first;
    let reconnected = false;
    for (;;) {
      if (c.dead) throw new BurrowError(ErrorCodes.Disconnected, `connection to ${c.target.label} was lost`);
      c.channels++;
      c.setIdleTimer(undefined);
      const heardBefore = c.bytesHeard;
      const attempt: Attempt = { requestSent: false };
      try {
        const opened = await open(c, attempt);
        const conn = c;
        void opened.closed.then(() => {
          conn.channels--;
          conn.wakeOne();
          this.touch(conn);
        });
        return Object.assign(opened, { connection: c });
      } catch (err) {
        c.channels--;
        if (err instanceof BurrowError && err.code === ErrorCodes.BadArgument) {
          this.touch(c);
          throw err;
        }
        // ssh2's word for a client whose stream is gone though no event said so.
        if (/Not connected/.test((err as Error).message)) this.lose(c, 'the SSH stream is gone');
        const reason = (err as { reason?: number }).reason;
        const busy = !c.dead && reason !== undefined && BUSY_REASONS.has(reason);
        // At its limit the host may be holding a slot for our spare: give it back and ask again.
        if (busy && c.closeSpare()) continue;
        if (busy && c.channels > 0) {
          await c.waitForSlot();
          continue;
        }
        this.touch(c);
        if (c.dead && !reconnected && c.bytesHeard === heardBefore && !this.closing) {
          reconnected = true;
          this.opts.log.info({ event: 'reconnect', target: c.target.label, reason: c.lostReason, what }, 'connection was dead before the server answered: reconnecting once');
          const lost = c;
          c = await this.get(c.target);
          // A request that went out on a spare may have reached the host before the link died:
          // sent again only to another start of the host (its boot id in the SSH ident differs),
          // which cannot have run it. The same host may have: never run a command twice.
          if (attempt.requestSent && !(lost.bootId !== '' && c.bootId !== lost.bootId)) {
            throw new BurrowError(ErrorCodes.Disconnected, `connection to ${lost.target.label} was lost after the ${what} was sent, before the host answered: it may have started, so it is not sent again`);
          }
          continue;
        }
        if (c.dead) throw new BurrowError(ErrorCodes.Disconnected, `connection to ${c.target.label} was lost: ${c.lostReason ?? 'closed'}`);
        throw new BurrowError(ErrorCodes.ChannelRefused, `${c.target.label} refused the ${what}: ${firstLine((err as Error).message)}`, { cause: err });
      }
    }
  }

  /** Close a target's connections (both lanes); false when there was none. */
  disconnect(key: string): boolean {
    let closed = false;
    for (const k of [key, key + BULK_SUFFIX]) {
      const c = this.live.get(k);
      if (!c) continue;
      this.lose(c, 'disconnect requested');
      closed = true;
    }
    return closed;
  }

  /** Open a forwarding channel (direct-tcpip or direct-streamlocal), counted like a session. */
  openForward(c: PooledConnection, to: Place, from: { host: string; port: number }): Promise<OpenedChannel & Reopened> {
    return this.openTracked(c, `forward to ${placeText(to)}`, ({ client }) => openForwardChannel(client, to, from));
  }

  closeAll(reason: string): void {
    this.closing = true;
    for (const c of [...this.live.values()]) this.lose(c, reason);
  }

  /** A reloaded keepalive applies to connections made from now on. */
  setKeepalive(k: { intervalMs: number; countMax: number }): void {
    this.opts.keepalive = k;
  }

  /** A reloaded persist applies from the next idle moment on. */
  setPersist(seconds: number): void {
    this.opts.persist = seconds;
  }

  /** Note that something other than a channel (a forward) keeps `c` open, or stops doing so. */
  hold(c: PooledConnection, delta: 1 | -1): void {
    c.holds += delta;
    this.touch(c);
  }
}

/** The connection a channel was opened on: another than the one asked for after a reconnect. */
export interface Reopened {
  connection: PooledConnection;
}

// An exec request of this many command bytes still fits ssh2's 35,000-byte packet limit.
const SAFE_EXEC_BYTES = 34_000;
// OpenSSH reads packets of up to 256 KiB; leave room for the request's own fields.
const OPENSSH_EXEC_BYTES = 256 * 1024 - 1024;
