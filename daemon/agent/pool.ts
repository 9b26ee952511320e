// The ControlMaster: one authenticated SSH connection per target, shared by every request.
// Concurrent requests for a target share one connect attempt; a channel the server refuses while
// others are open waits for one to close (busy is not dead); an idle connection is kept for
// `persist` seconds; a dead one is evicted and the next request reconnects. Nothing falls back
// to anything other than what was asked for.

import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { placeText, type Place } from '../../shared/forward.js';
import type { Client as SshClient, ClientChannel, PseudoTtyOptions, SFTPWrapper } from 'ssh2';
import { BurrowError, ErrorCodes, firstLine } from '../../shared/errors.js';
import type { ConnectionStatus } from '../../shared/status.js';
import type { Logger } from '../log.js';
import { connectSsh, type AuthMethod, type HostKeyPolicy } from '../ssh/client.js';
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
}

// Dead-peer detection: an SSH ping after 3 s of silence, and the connection is declared dead when
// the next 3 s bring nothing back. Any packet from the peer (data, window adjust) resets it.
const KEEPALIVE_INTERVAL_MS = 3000;
const KEEPALIVE_COUNT_MAX = 1;
// What a server at its session limit answers: OpenSSH past MaxSessions says CONNECT_FAILED (2,
// "open failed"), burrow's host RESOURCE_SHORTAGE (4), others ADMINISTRATIVELY_PROHIBITED (1).
// Only taken as "busy" while this connection has other channels open.
const BUSY_REASONS = new Set([1, 2, 4]);

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

  constructor(
    readonly target: ResolvedTarget,
    readonly client: SshClient,
    private readonly stream: IrohStream | Socket,
    readonly iroh: IrohConnection | undefined,
  ) {}

  get waiting(): number {
    return this.waiters.length;
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

export interface SessionRequest {
  /** undefined: a login shell. */
  command?: string;
  pty?: PseudoTtyOptions;
  env?: Record<string, string>;
}

/** Emits 'connected' (PooledConnection) and 'closed' (PooledConnection) so forwards can follow reconnects. */
export class Pool extends EventEmitter {
  private readonly live = new Map<string, PooledConnection>();
  private readonly pending = new Map<string, Promise<PooledConnection>>();
  private closing = false;

  constructor(private readonly opts: PoolOptions) {
    super();
  }

  get size(): number {
    return this.live.size;
  }

  find(key: string): PooledConnection | undefined {
    return this.live.get(key);
  }

  list(): ConnectionStatus[] {
    return [...this.live.values()].map((c) => c.status());
  }

  /** The live connection for a target, connecting once however many ask at the same time. */
  async get(t: ResolvedTarget): Promise<PooledConnection> {
    if (this.closing) throw new BurrowError(ErrorCodes.ShuttingDown, 'daemon is shutting down');
    const have = this.live.get(t.key);
    if (have && !have.dead) return have;
    let p = this.pending.get(t.key);
    if (!p) {
      p = this.connect(t).finally(() => this.pending.delete(t.key));
      this.pending.set(t.key, p);
    }
    return p;
  }

  private async connect(t: ResolvedTarget): Promise<PooledConnection> {
    const timeout = this.opts.connectTimeoutMs ?? 15_000;
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
        keepaliveIntervalMs: KEEPALIVE_INTERVAL_MS,
        keepaliveCountMax: KEEPALIVE_COUNT_MAX,
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
    const evict = (why: string): void => {
      if (c.dead) return;
      c.dead = true;
      c.lostReason = why;
      c.setIdleTimer(undefined);
      if (this.live.get(t.key) === c) this.live.delete(t.key);
      c.wakeAll();
      this.opts.log.info({ event: 'disconnected', target: t.label, key: t.key, reason: why }, 'connection closed');
      c.close(why);
      this.emit('closed', c);
    };
    client.on('error', (err: Error) => evict(firstLine(err.message)));
    client.on('close', () => evict('closed'));
    void iroh?.closed.then((r) => evict(r));
    this.touch(c);
    this.emit('connected', c);
    return c;
  }

  /** Note a change in use: arm the persist timer when nothing holds the connection. */
  touch(c: PooledConnection): void {
    c.lastActive = Date.now();
    if (c.channels > 0 || c.holds > 0 || c.dead) return c.setIdleTimer(undefined);
    if (this.opts.persist === 0) return c.setIdleTimer(undefined);
    const t = setTimeout(() => {
      if (c.channels === 0 && c.holds === 0 && !c.dead) {
        this.opts.log.info({ event: 'persist_expired', target: c.target.label, persist: this.opts.persist }, 'idle connection closed');
        this.drop(c, `idle for ${this.opts.persist} s`);
      }
    }, this.opts.persist * 1000);
    t.unref();
    c.setIdleTimer(t);
  }

  /** Open a session channel (exec or shell), waiting while the server says it is busy. */
  openSession(c: PooledConnection, req: SessionRequest): Promise<OpenedSession> {
    return this.openTracked(c, 'session', (client) => openChannel(client, req));
  }

  /** Open a subsystem channel (e.g. burrow-info@burrow) on the pooled connection. */
  openSubsystem(c: PooledConnection, name: string): Promise<{ channel: ClientChannel; closed: Promise<void> }> {
    return this.openTracked(c, `subsystem ${name}`, (client) => new Promise((resolve, reject) => {
      client.subsys(name, (err, ch) => {
        if (err) return reject(err);
        resolve({ channel: ch, closed: new Promise<void>((r) => ch.once('close', () => r())) });
      });
    }));
  }

  /** Open an SFTP channel on the pooled connection. */
  openSftp(c: PooledConnection): Promise<OpenedSftp> {
    return this.openTracked(c, 'sftp', (client) => openSftpChannel(client));
  }

  /**
   * Count a channel from the attempt on (so the persist timer cannot fire under it), wait for a
   * free slot when the server says it is busy while others are open, and release it on close.
   */
  private async openTracked<T extends { closed: Promise<void> }>(c: PooledConnection, what: string, open: (client: SshClient) => Promise<T>): Promise<T> {
    for (;;) {
      if (c.dead) throw new BurrowError(ErrorCodes.Disconnected, `connection to ${c.target.label} was lost`);
      c.channels++;
      c.setIdleTimer(undefined);
      try {
        const opened = await open(c.client);
        void opened.closed.then(() => {
          c.channels--;
          c.wakeOne();
          this.touch(c);
        });
        return opened;
      } catch (err) {
        c.channels--;
        const reason = (err as { reason?: number }).reason;
        if (!c.dead && reason !== undefined && BUSY_REASONS.has(reason) && c.channels > 0) {
          await c.waitForSlot();
          continue;
        }
        this.touch(c);
        if (c.dead) throw new BurrowError(ErrorCodes.Disconnected, `connection to ${c.target.label} was lost`);
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
      this.drop(c, 'disconnect requested');
      closed = true;
    }
    return closed;
  }

  private drop(c: PooledConnection, why: string): void {
    if (c.dead) return;
    c.dead = true;
    c.lostReason = why;
    this.live.delete(c.target.key);
    c.wakeAll();
    this.opts.log.info({ event: 'disconnected', target: c.target.label, key: c.target.key, reason: why }, 'connection closed');
    c.close(why);
    this.emit('closed', c);
  }

  /** Open a forwarding channel (direct-tcpip or direct-streamlocal), counted like a session. */
  openForward(c: PooledConnection, to: Place, from: { host: string; port: number }): Promise<{ channel: ClientChannel; closed: Promise<void> }> {
    return this.openTracked(c, `forward to ${placeText(to)}`, (client) => new Promise((resolve, reject) => {
      const cb = (err: Error | undefined, ch: ClientChannel): void => {
        if (err) return reject(err);
        const closed = new Promise<void>((r) => ch.once('close', () => r()));
        resolve({ channel: ch, closed });
      };
      try {
        if (to.kind === 'unix') client.openssh_forwardOutStreamLocal(to.path, cb);
        else client.forwardOut(from.host, from.port, to.host, to.port, cb);
      } catch (err) {
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    }));
  }

  closeAll(reason: string): void {
    this.closing = true;
    for (const c of [...this.live.values()]) this.drop(c, reason);
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

/** A channel with its exit status and close captured from the moment it opened. */
export interface OpenedSession {
  channel: ClientChannel;
  /** Set once the remote sends exit-status or exit-signal. */
  exit(): { code: number } | { signal: string } | undefined;
  closed: Promise<void>;
}

function openChannel(client: SshClient, req: SessionRequest): Promise<OpenedSession> {
  return new Promise((resolve, reject) => {
    // ssh2 may deliver exit-status and close in the same chunk as the open confirmation, before
    // any promise continuation runs: listeners go on here, synchronously, or those events are lost.
    const cb = (err: Error | undefined, ch: ClientChannel): void => {
      if (err) return reject(err);
      let exit: { code: number } | { signal: string } | undefined;
      ch.on('exit', (code: number | null, signal?: string) => {
        exit = signal ? { signal: signal.replace(/^SIG/, '') } : { code: code ?? 255 };
      });
      const closed = new Promise<void>((r) => ch.once('close', () => r()));
      resolve({ channel: ch, exit: () => exit, closed });
    };
    try {
      if (req.command === undefined) client.shell(req.pty ?? false, { env: req.env ?? {} }, cb);
      else client.exec(req.command, { ...(req.pty ? { pty: req.pty } : {}), env: req.env ?? {} }, cb);
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

export interface OpenedSftp {
  sftp: SFTPWrapper;
  closed: Promise<void>;
}

function openSftpChannel(client: SshClient): Promise<OpenedSftp> {
  return new Promise((resolve, reject) => {
    try {
      client.sftp((err, sftp) => {
        if (err) return reject(err);
        // As with sessions: listen for close at once, before any continuation runs.
        const closed = new Promise<void>((r) => sftp.once('close', () => r()));
        resolve({ sftp, closed });
      });
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}
