// The ONLY module that imports @number0/iroh. Everything above it sees Node Duplex streams,
// hex endpoint ids and plain strings. Each iroh-js pitfall of DESIGN §6 is handled here and
// marked "PITFALL" where it is.

import { createSocket } from 'node:dgram';
import { createRequire } from 'node:module';
import { Duplex } from 'node:stream';
import type * as Iroh from '@number0/iroh';
import { BurrowError, ErrorCodes, firstLine, type ErrorCode } from '../../shared/errors.js';
import { isEndpointId, isTicket } from '../../shared/target.js';
import type { Logger } from '../log.js';
import { withTimeout } from '../timeout.js';

// PITFALL: the binding builds its tokio runtime when it loads and panics, aborting the process,
// on a TOKIO_WORKER_THREADS that is not a positive integer (an empty one included): such a value
// is dropped, so the machine's core count applies.
if (process.env['TOKIO_WORKER_THREADS'] !== undefined && !/^[1-9][0-9]*$/.test(process.env['TOKIO_WORKER_THREADS'])) delete process.env['TOKIO_WORKER_THREADS'];
// PITFALL: the package's `main` points at a file that does not exist; naming index.js directly
// loads it without Node's deprecation warning.
const iroh = createRequire(import.meta.url)('@number0/iroh/index.js') as typeof Iroh;

export const ALPN = 'burrow/ssh/1';
const ALPN_BYTES = Array.from(Buffer.from(ALPN));
/** Pairing by code (daemon/pair/): accepted only while the host has an invitation open. */
export const PAIR_ALPN = 'burrow/pair/1';
const PAIR_ALPN_BYTES = Array.from(Buffer.from(PAIR_ALPN));

/** Close codes we send: the peer sees them with the reason. */
export const CloseCode = { Normal: 0n, Refused: 1n, Protocol: 2n, Shutdown: 3n } as const;

export type RelaySetting = { mode: 'default' } | { mode: 'disabled' } | { mode: 'custom'; urls: string[] };

export interface BindOptions {
  /** 32-byte ed25519 seed: the endpoint's identity. */
  seed: Uint8Array;
  relay: RelaySetting;
  /**
   * Exactly the addresses to bind and advertise (`ip:port`, `[ipv6]:port`, at most one per
   * family); default every interface of both families on random ports.
   */
  bind?: string | string[];
  log: Logger;
}

/** Where to reach a peer: its id plus whatever addresses we know. */
export interface PeerAddr {
  id: string;
  relayUrl?: string;
  direct: string[];
}

export interface PathInfo {
  /** `direct` (UDP to the peer), `relay`, or `none` when no path is open yet. */
  kind: 'direct' | 'relay' | 'none';
  remoteAddr?: string;
  rttMs?: number;
}

export type Authorize = (remoteId: string) => Promise<{ ok: true } | { ok: false; reason: string }>;

// PITFALL: byte APIs take and return Array<number> (a Buffer throws "Failed to get Array
// length"); this conversion is the throughput ceiling, so it lives in exactly these two
// functions for a faster binding to replace. Measured: an index loop into a preallocated
// array is ~6x faster than Array.from; on the arrays read() returns, an index loop into a
// Buffer is ~4x faster than Uint8Array.from and ~5x faster than Buffer.from(array).
export function toIrohBytes(b: Uint8Array): number[] {
  const n = b.length;
  const a = new Array<number>(n);
  for (let i = 0; i < n; i++) a[i] = b[i] as number;
  return a;
}

export function fromIrohBytes(a: number[]): Buffer {
  const n = a.length;
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = a[i] as number;
  return b;
}

const APP_CLOSE = /ApplicationClose \{ error_code: (\d+), reason: b"((?:[^"\\]|\\.)*)" \}/;
const CLOSED_BY_PEER = /closed by peer: (.*) \(code (\d+)\)/;

/** Turn iroh's anyhow text (with its backtrace) into a typed error with one line of message. */
export function irohError(err: unknown, fallback: ErrorCode, context: string, self?: string): BurrowError {
  if (err instanceof BurrowError) return err;
  const text = err instanceof Error ? err.message : String(err);
  const m = APP_CLOSE.exec(text);
  if (m) return closeError(BigInt(m[1] ?? '0'), m[2] ?? '', context, err, self);
  const c = CLOSED_BY_PEER.exec(text);
  if (c) return closeError(BigInt(c[2] ?? '0'), c[1] ?? '', context, err, self);
  if (/ConnectionLost|TimedOut|LocallyClosed|Reset/.test(text)) {
    return new BurrowError(ErrorCodes.Disconnected, `${context}: connection lost (${firstLine(text).slice(0, 120)})`, { cause: err });
  }
  return new BurrowError(fallback, `${context}: ${firstLine(text).slice(0, 200)}`, { cause: err });
}

function closeError(code: bigint, reason: string, context: string, cause: unknown, self?: string): BurrowError {
  // The host's endpoint check said no: tell the user the one command that fixes it.
  if (code === CloseCode.Refused && self && /not authorized|no authorized endpoints/.test(reason)) {
    return new BurrowError(ErrorCodes.PeerRefused, `this host has not authorized endpoint ${self}: on the host run \`burrow host authorize ${self}\``, { cause });
  }
  if (code === CloseCode.Refused) return new BurrowError(ErrorCodes.PeerRefused, `${context}: refused by peer: ${reason}`, { cause });
  return new BurrowError(ErrorCodes.Disconnected, `${context}: closed by peer: ${reason || 'no reason given'}`, { cause });
}

/** Parse a ticket into a PeerAddr (throws BadTarget). */
export function parseTicket(ticket: string): PeerAddr {
  try {
    return peerAddrOf(iroh.EndpointTicket.fromString(ticket).endpointAddr());
  } catch (err) {
    throw new BurrowError(ErrorCodes.BadTarget, `not a valid ticket: ${firstLine(err instanceof Error ? err.message : String(err))}`);
  }
}

/** A ticket naming `peer`: its id and the addresses given (throws BadTarget on a bad id). */
export function ticketOf(peer: PeerAddr): string {
  return iroh.EndpointTicket.fromAddr(endpointAddrOf(peer)).toString();
}

function peerAddrOf(a: Iroh.EndpointAddr): PeerAddr {
  const relayUrl = a.relayUrl();
  return { id: a.id().toString(), direct: a.directAddresses(), ...(relayUrl ? { relayUrl } : {}) };
}

function endpointAddrOf(p: PeerAddr): Iroh.EndpointAddr {
  let id: Iroh.EndpointId;
  try {
    id = iroh.EndpointId.fromString(p.id);
  } catch {
    throw new BurrowError(ErrorCodes.BadTarget, `not a valid endpoint id: ${p.id.slice(0, 80)}`);
  }
  return new iroh.EndpointAddr(id, p.relayUrl ?? null, p.direct);
}

// What crosses the binding at once, each way. PITFALL: the binding converts Array<number> element
// by element on the main thread, so one crossing holds the event loop for as long as its slice
// takes. Measured on loopback (bench/interactive, bench/transport, same runs): 8 KiB slices keep a
// keystroke's echo under bulk load at 1.5-2.7x idle (64 KiB: 6-10x) with no loss of throughput
// (raw stream 9.9-12.0 MiB/s at 8 KiB vs 8.4-11.3 at 64 KiB, interleaved runs).
const READ_SIZE = 8 * 1024;
const WRITE_SLICE = 8 * 1024;
// Bytes taken from writers before the batch waiting for its crossing holds them.
const WRITE_BATCH = 8 * 1024;

/** A Node Duplex over one QUIC bi-stream, with backpressure both ways and half-close. */
export class IrohStream extends Duplex {
  bytesIn = 0;
  bytesOut = 0;
  private reading = false;
  /** Written, not yet handed to iroh. */
  private queued: Buffer[] = [];
  private queuedBytes = 0;
  /** A writeAll is in flight or about to be. */
  private sending = false;
  /** The callback of a write that filled the batch: called once its bytes are on their way. */
  private held: ((err?: Error | null) => void) | undefined;
  /** _final waits for the last batch. */
  private onFlushed: (() => void) | undefined;
  // PITFALL: holding the connection here keeps it (and so its driver) alive for as long as the stream is used.
  constructor(
    readonly connection: IrohConnection,
    private readonly send: Iroh.SendStream,
    private readonly recv: Iroh.RecvStream,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: 256 * 1024, writableHighWaterMark: 256 * 1024 });
  }

  // Writes are taken at once while less than WRITE_BATCH bytes wait, and what is written in one
  // tick crosses the binding as one writeAll: ssh2 sends exit-status, EOF and close as three
  // packets in a row, and Node's default (each write waits for the one before to settle) cost a
  // binding round trip per packet. One writeAll is in flight at a time; a write that fills the
  // batch is held until the batch goes, so a full QUIC send window still holds the writer.
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.queued.push(chunk);
    this.queuedBytes += chunk.length;
    if (!this.sending) {
      this.sending = true;
      queueMicrotask(() => this.flush());
    }
    if (this.queuedBytes < WRITE_BATCH) cb();
    else this.held = cb;
  }

  // Many small writes become one crossing of the binding.
  override _writev(chunks: { chunk: Buffer }[], cb: (err?: Error | null) => void): void {
    this._write(Buffer.concat(chunks.map((c) => c.chunk)), 'binary', cb);
  }

  // Big batches go in slices (WRITE_SLICE), so a keystroke waiting on the event loop waits for one
  // slice's conversion, not a whole batch's. Each writeAll resolves once QUIC has taken the bytes.
  private flush(): void {
    if (this.destroyed) return;
    const batch = this.queued.length === 1 ? (this.queued[0] as Buffer) : Buffer.concat(this.queued, this.queuedBytes);
    this.queued = [];
    this.queuedBytes = 0;
    const held = this.held;
    this.held = undefined;
    held?.();
    let off = 0;
    const next = (): void => {
      const slice = batch.subarray(off, off + WRITE_SLICE);
      off += slice.length;
      this.send.writeAll(toIrohBytes(slice)).then(
        () => {
          this.bytesOut += slice.length;
          if (this.destroyed) return;
          if (off < batch.length) return next();
          if (this.queued.length > 0) return this.flush();
          this.sending = false;
          this.onFlushed?.();
        },
        (err: unknown) => {
          this.sending = false;
          if (!this.destroyed) this.destroy(this.connection.errorFor(err, 'write'));
        },
      );
    };
    next();
  }

  override _final(cb: (err?: Error | null) => void): void {
    const finish = (): void => {
      this.onFlushed = undefined;
      this.send.finish().then(
        () => cb(),
        (err: unknown) => cb(this.connection.errorFor(err, 'finish')),
      );
    };
    if (this.sending) this.onFlushed = finish;
    else finish();
  }

  override _read(): void {
    if (this.reading) return;
    this.reading = true;
    this.pump();
  }

  private pump(): void {
    this.recv.read(READ_SIZE).then(
      (arr) => {
        if (this.destroyed) return;
        // PITFALL: read() returning [] means the peer finished the stream.
        if (arr.length === 0) {
          this.reading = false;
          this.push(null);
          return;
        }
        this.bytesIn += arr.length;
        if (this.push(fromIrohBytes(arr))) this.pump();
        else this.reading = false;
      },
      (err: unknown) => {
        this.reading = false;
        if (!this.destroyed) this.destroy(this.connection.errorFor(err, 'read'));
      },
    );
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // PITFALL: never await these: each waits for the stream's lock, which a pending read or write
    // may hold until the connection closes. Fired and forgotten, they end the stream for the peer.
    if (!this.writableFinished) this.send.reset(0n).catch(() => undefined);
    if (!this.readableEnded) this.recv.stop(0n).catch(() => undefined);
    cb(err);
  }
}

/** One QUIC connection to a peer. */
export class IrohConnection {
  readonly remoteId: string;
  /** Resolves with a one-line reason when the connection is closed by either side. */
  readonly closed: Promise<string>;
  private closedReason: string | undefined;
  private localReason: string | undefined;

  constructor(
    readonly transport: IrohTransport,
    private readonly conn: Iroh.Connection,
  ) {
    this.remoteId = conn.remoteId().toString();
    this.closed = conn.closed().then(
      (r) => (this.closedReason = firstLine(r)),
      (err: unknown) => (this.closedReason = firstLine(String(err))),
    );
  }

  get isClosed(): boolean {
    return this.closedReason !== undefined || this.localReason !== undefined;
  }

  /** Open a bi-stream to the peer. */
  async openStream(): Promise<IrohStream> {
    try {
      const bi = await this.conn.openBi();
      return new IrohStream(this, bi.send, bi.recv);
    } catch (err) {
      throw this.errorFor(err, 'open stream');
    }
  }

  /** Wait for the peer to open a bi-stream. */
  async acceptStream(): Promise<IrohStream> {
    try {
      const bi = await this.conn.acceptBi();
      return new IrohStream(this, bi.send, bi.recv);
    } catch (err) {
      throw this.errorFor(err, 'accept stream');
    }
  }

  close(reason = 'bye', code: bigint = CloseCode.Normal): void {
    if (this.localReason !== undefined) return;
    this.localReason = reason;
    try {
      this.conn.close(code, toIrohBytes(Buffer.from(reason)));
    } catch {
      // already closed
    }
  }

  /** The path in use, read by polling (PITFALL: watchPaths aborts the process). */
  path(): PathInfo {
    let paths: Iroh.PathSnapshot[];
    try {
      paths = this.conn.paths();
    } catch {
      return { kind: 'none' };
    }
    const p = paths.find((x) => x.isSelected) ?? paths[0];
    if (!p) return { kind: 'none' };
    return { kind: p.isRelay ? 'relay' : 'direct', remoteAddr: p.remoteAddr, rttMs: p.rttMs };
  }

  /** A typed error for a failed operation, preferring the connection's own close reason. */
  errorFor(err: unknown, context: string): BurrowError {
    if (this.localReason !== undefined) return new BurrowError(ErrorCodes.Disconnected, `${context}: connection closed locally (${this.localReason})`);
    return irohError(err, ErrorCodes.Disconnected, context, this.transport.endpointId);
  }
}

export interface ServeHooks {
  /** Called with the remote endpoint id before any stream is accepted. */
  authorize: Authorize;
  /** An authorized connection; streams are the caller's to accept. */
  onConnection: (conn: IrohConnection) => void;
  /** A peer on the pairing ALPN (not authorized: it has no id we know yet); false refuses it. */
  pairing?: (conn: IrohConnection) => boolean;
}

const HANDSHAKE_TIMEOUT_MS = 15_000;

/** Whether a UDP socket can bind `ip` (127.0.0.1 or ::1) here: false where that family is disabled. */
function loopbackBindable(ip: '127.0.0.1' | '::1'): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createSocket(ip === '::1' ? 'udp6' : 'udp4');
    s.once('error', () => {
      try {
        s.close();
      } catch {
        // never bound
      }
      resolve(false);
    });
    s.bind(0, ip, () => s.close(() => resolve(true)));
  });
}

/** One bound iroh endpoint: dial peers, accept peers. */
export class IrohTransport {
  // PITFALL: every live Connection is held here; one that V8 collects drops its driver
  // ("endpoint driver future was dropped") and kills its streams.
  private readonly connections = new Set<IrohConnection>();
  private closing = false;
  private serving = false;

  private constructor(
    private readonly endpoint: Iroh.Endpoint,
    private readonly log: Logger,
    /** Set when --bind named addresses: the families the user named, the only ones advertised. */
    private readonly named?: { v4: boolean; v6: boolean },
  ) {}

  static async bind(opts: BindOptions): Promise<IrohTransport> {
    if (opts.seed.length !== 32) throw new BurrowError(ErrorCodes.Internal, 'endpoint seed must be 32 bytes');
    const b = iroh.Endpoint.builder();
    switch (opts.relay.mode) {
      case 'default':
        iroh.presetN0(b); // n0 relays + DNS discovery: the users' default
        break;
      case 'disabled':
        iroh.presetMinimal(b); // fully offline: no relay, no discovery; peers come from tickets
        b.relayMode(iroh.RelayMode.disabled());
        break;
      case 'custom':
        iroh.presetN0(b); // self-hosted relays, still with discovery
        b.relayMode(iroh.RelayMode.customFromUrls(opts.relay.urls));
        break;
    }
    b.secretKey(toIrohBytes(opts.seed));
    b.alpns([ALPN_BYTES, PAIR_ALPN_BYTES]);
    const binds = opts.bind === undefined ? [] : typeof opts.bind === 'string' ? [opts.bind] : opts.bind;
    let named: { v4: boolean; v6: boolean } | undefined;
    if (binds.length > 0) {
      named = { v4: binds.some((a) => !a.startsWith('[')), v6: binds.some((a) => a.startsWith('[')) };
      // PITFALL: the binding cannot drop iroh's default socket of the family not named (it has no
      // clear_ip_transports), which would listen on every interface of that family. Pin it to
      // loopback instead, where no other machine reaches it, and never advertise it.
      // iroh makes an explicit bind that fails fatal: a stand-in for a family the machine lacks
      // (IPv6 disabled) is left out, and then iroh's default socket of that family has nowhere to go.
      const standIns: string[] = [];
      for (const [family, addr, ip] of [['v4', '127.0.0.1:0', '127.0.0.1'], ['v6', '[::1]:0', '::1']] as const) {
        if (named[family]) continue;
        if (await loopbackBindable(ip)) standIns.push(addr);
        else opts.log.info({ event: 'bind_standin_skipped', family, addr }, `no ${family === 'v4' ? 'IPv4' : 'IPv6'} loopback here: binding only what --bind names`);
      }
      const all = [...binds, ...standIns];
      try {
        for (const a of all) b.bindAddr(a);
      } catch (err) {
        throw irohError(err, ErrorCodes.BadArgument, `bind ${binds.join(',')}`);
      }
    }
    try {
      return new IrohTransport(await b.bind(), opts.log, named);
    } catch (err) {
      throw irohError(err, ErrorCodes.IoError, `bind ${binds.join(',') || 'endpoint'}`);
    }
  }

  get endpointId(): string {
    return this.endpoint.id().toString();
  }

  boundSockets(): string[] {
    return this.endpoint.boundSockets();
  }

  /**
   * Our address: what iroh reports, plus 127.0.0.1/[::1] on the bound ports. PITFALL: addr()
   * omits loopback when other interfaces exist, and same-host peers need it.
   */
  addr(): PeerAddr {
    const a = peerAddrOf(this.endpoint.addr());
    const direct = new Set(a.direct);
    for (const s of this.endpoint.boundSockets()) {
      const port = s.slice(s.lastIndexOf(':') + 1);
      if (s.startsWith('0.0.0.0:') || s.startsWith('127.0.0.1:')) direct.add(`127.0.0.1:${port}`);
      else if (s.startsWith('[::]:') || s.startsWith('[::1]:')) direct.add(`[::1]:${port}`);
    }
    // With --bind, only the named families are advertised (the other is a loopback stand-in).
    const named = this.named;
    const advertised = named ? [...direct].filter((d) => (d.startsWith('[') ? named.v6 : named.v4)) : [...direct];
    return { ...a, direct: advertised.sort() };
  }

  ticket(): string {
    return ticketOf(this.addr());
  }

  /** Dial a peer by ticket, endpoint id or PeerAddr, within `timeoutMs` (on the SSH ALPN unless told). */
  async dial(target: string | PeerAddr, timeoutMs: number, alpn: string = ALPN): Promise<IrohConnection> {
    if (this.closing) throw new BurrowError(ErrorCodes.ShuttingDown, 'endpoint is closing');
    let peer: PeerAddr;
    if (typeof target !== 'string') peer = target;
    else if (isEndpointId(target)) peer = { id: target, direct: [] }; // needs discovery to find addresses
    else if (isTicket(target)) peer = parseTicket(target);
    else throw new BurrowError(ErrorCodes.BadTarget, `not a ticket or endpoint id: ${target.slice(0, 80)}`);
    const addr = endpointAddrOf(peer);
    const short = peer.id.slice(0, 10);
    // PITFALL: connect() has no timeout of its own. A connection that arrives after we gave up is closed.
    const conn = await withTimeout(
      this.endpoint.connect(addr, alpn === PAIR_ALPN ? PAIR_ALPN_BYTES : ALPN_BYTES).catch((err: unknown) => {
        const e = irohError(err, ErrorCodes.ConnectFailed, `connect to ${short}`, this.endpointId);
        // An id alone is dialable only through discovery or a relay; say so, not iroh's words.
        if (e.code === ErrorCodes.ConnectFailed && peer.direct.length === 0 && !peer.relayUrl) {
          throw new BurrowError(ErrorCodes.ConnectFailed, `no address is known for endpoint ${peer.id} (relay and discovery are disabled here, or found nothing): dial it by a ticket, which carries its addresses (\`burrow host ticket\` on that machine)`, { cause: err });
        }
        throw e;
      }),
      timeoutMs,
      ErrorCodes.ConnectTimeout,
      `connect to ${short}: no answer within ${timeoutMs / 1000} s`,
      (late) => late.close(CloseCode.Normal, toIrohBytes(Buffer.from('gave up'))),
    );
    return this.track(new IrohConnection(this, conn));
  }

  private track(c: IrohConnection): IrohConnection {
    this.connections.add(c);
    void c.closed.then(() => this.connections.delete(c));
    return c;
  }

  /** Run the accept loop: authorize each peer by endpoint id before any stream is accepted. */
  serve(hooks: ServeHooks): void {
    if (this.serving) throw new BurrowError(ErrorCodes.Internal, 'serve() called twice');
    this.serving = true;
    void this.acceptLoop(hooks);
  }

  private async acceptLoop(hooks: ServeHooks): Promise<void> {
    for (;;) {
      let incoming: Iroh.Incoming | null;
      try {
        incoming = await this.endpoint.acceptNext();
      } catch (err) {
        if (!this.closing) this.log.error({ err: firstLine(String(err)) }, 'accept failed; accept loop ends');
        return;
      }
      if (incoming === null) return; // endpoint closed
      void this.handshake(incoming, hooks);
    }
  }

  private async handshake(incoming: Iroh.Incoming, hooks: ServeHooks): Promise<void> {
    let conn: Iroh.Connection;
    try {
      const accepting = await incoming.accept();
      // PITFALL: the handshake has no timeout of its own; a silent peer would hold it forever.
      conn = await withTimeout(accepting.connect(), HANDSHAKE_TIMEOUT_MS, ErrorCodes.ConnectTimeout, 'handshake timed out', (late) =>
        late.close(CloseCode.Protocol, toIrohBytes(Buffer.from('handshake timed out'))),
      );
    } catch (err) {
      this.log.info({ event: 'handshake_failed', err: firstLine(err instanceof Error ? err.message : String(err)) }, 'incoming handshake failed');
      return;
    }
    const c = this.track(new IrohConnection(this, conn));
    if (Buffer.from(conn.alpn()).toString() === PAIR_ALPN) {
      if (this.closing || !hooks.pairing?.(c)) c.close('no invitation is open', CloseCode.Refused);
      return;
    }
    if (Buffer.from(conn.alpn()).toString() !== ALPN) {
      c.close('unsupported protocol', CloseCode.Protocol);
      return;
    }
    let verdict: Awaited<ReturnType<Authorize>>;
    try {
      verdict = await hooks.authorize(c.remoteId);
    } catch (err) {
      this.log.error({ remote: c.remoteId, err: String(err) }, 'authorization hook failed; refusing');
      verdict = { ok: false, reason: 'authorization failed' };
    }
    if (!verdict.ok) {
      c.close(verdict.reason, CloseCode.Refused);
      return;
    }
    if (this.closing) {
      c.close('shutting down', CloseCode.Shutdown);
      return;
    }
    hooks.onConnection(c);
  }

  /** PITFALL: close order is connections first, then the endpoint (awaited); then Node exits by itself. */
  async close(reason = 'shutting down'): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const c of this.connections) c.close(reason, CloseCode.Shutdown);
    try {
      await this.endpoint.close();
    } catch (err) {
      this.log.warn({ err: firstLine(String(err)) }, 'endpoint close failed');
    }
    this.connections.clear();
  }
}
