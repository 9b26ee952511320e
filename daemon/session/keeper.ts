// A session keeper: one process per persistent shell, started detached by the host daemon, so
// that stopping or upgrading burrowd kills no shell. It holds the PTY, a headless terminal that
// knows what the screen shows, and a ring of recent output with absolute offsets; clients (the
// host daemon relaying an SSH channel) attach over a private Unix socket. Protocol and handshake:
// docs/ARCHITECTURE.md, "Persistent sessions".

import { existsSync, statSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import * as nodePty from '@lydell/node-pty';
import xtermHeadless from '@xterm/headless';
import { BurrowError, ErrorCodes, toBurrowError } from '../../shared/errors.js';
import { encodeFrame } from '../../shared/ipc/codec.js';
import { MAX_CHUNK, MAX_FRAME, type Frame, type FrameOf } from '../../shared/ipc/frames.js';
import type { SessionInfo } from '../../shared/sessions.js';
import { OutputRing } from './ring.js';
import { KEEPER_PROTOCOL, OLDEST_KEEPER_PROTOCOL, answerHello, connectKeeper, readFrames, type WriterPolicy } from './wire.js';
import { bareSignal } from '../../shared/signals.js';

/** What the host daemon tells a new keeper (one JSON argument). */
export interface KeeperSpec {
  name: string;
  socket: string;
  shell: string;
  args: string[];
  /** The command as the user gave it, for `session list`; undefined for a login shell. */
  command?: string;
  cwd: string;
  env: Record<string, string>;
  term: string;
  cols: number;
  rows: number;
  ringBytes: number;
  /** Seconds with no client attached after which the session ends; 0: never. */
  lingerSeconds: number;
  /** Who writes when several clients are attached. */
  writer: WriterPolicy;
}

// Lines of history the headless terminal keeps for redraws; the ring holds the raw bytes.
const SCREEN_SCROLLBACK = 1000;
// A viewer this far behind is dropped (it may reattach from its offset) rather than buffered.
const MAX_CLIENT_BACKLOG = 8 * 1024 * 1024;
const KILL_GRACE_MS = 3000;
const SOCKET_CHECK_MS = 5000;

interface Client {
  sock: Socket;
  readOnly: boolean;
  cols: number;
  rows: number;
  live: boolean;
}

const { Terminal } = xtermHeadless;
type Serializer = InstanceType<(typeof import('@xterm/addon-serialize'))['SerializeAddon']>;

class Keeper {
  private readonly ring: OutputRing;
  private readonly term: InstanceType<typeof Terminal>;
  /** Loaded at the first attach that needs a screen: a session may never be attached again. */
  private serializer: Promise<Serializer> | undefined;
  private readonly pty: nodePty.IPty;
  /** The same PTY: node-pty writes a Buffer as it is, though its typings say string only. */
  private readonly ptyBytes: { write(data: string | Buffer): void };
  private readonly clients = new Set<Client>();
  private writer: Client | undefined;
  private exit: { code?: number; signal?: string } | undefined;
  private readonly created = Date.now();
  private lastAttached: number | null = null;
  private lingerTimer: NodeJS.Timeout | undefined;
  /** The writer whose full socket holds the shell's output, if any. */
  private pausedFor: Client | undefined;
  private server!: Server;
  private socketIno = 0;
  private ending = false;
  private ended = false;
  private readonly exitWaiters: (() => void)[] = [];

  constructor(private readonly spec: KeeperSpec) {
    this.ring = new OutputRing(spec.ringBytes);
    this.term = new Terminal({ cols: spec.cols, rows: spec.rows, scrollback: SCREEN_SCROLLBACK, allowProposedApi: true });
    this.pty = nodePty.spawn(spec.shell, spec.args, { name: spec.term, cols: spec.cols, rows: spec.rows, cwd: spec.cwd, env: spec.env, encoding: null });
    this.ptyBytes = this.pty;
    this.pty.onData((d: string | Buffer) => this.output(typeof d === 'string' ? Buffer.from(d) : d));
    this.pty.onExit(({ exitCode, signal }) => {
      // node-pty may report the exit before the last output has been read: let it drain first.
      setTimeout(() => this.shellEnded(exitCode, signal), 100);
    });
  }

  async listen(): Promise<void> {
    const path = this.spec.socket;
    if (existsSync(path)) {
      // Another keeper of the same name wins; a socket nobody answers on is stale.
      const alive = await connectKeeper(path, 1000).then(
        (s) => (s.destroy(), true),
        () => false,
      );
      if (alive) throw new BurrowError(ErrorCodes.AlreadyRunning, `session ${this.spec.name} already exists`);
      unlinkSync(path);
    }
    this.server = createServer((s) => this.accept(s));
    const oldMask = process.umask(0o177); // the socket is born 0600
    try {
      await new Promise<void>((resolve, reject) => {
        this.server.once('error', (err: NodeJS.ErrnoException) =>
          // Another keeper of this name bound it first (two creators racing): it wins.
          reject(err.code === 'EADDRINUSE' ? new BurrowError(ErrorCodes.AlreadyRunning, `session ${this.spec.name} already exists`) : err),
        );
        this.server.listen(path, () => resolve());
      });
    } finally {
      process.umask(oldMask);
    }
    this.socketIno = statSync(path).ino;
    // A keeper whose socket was removed (its state dir deleted) can never be reached again.
    setInterval(() => {
      let ino = 0;
      try {
        ino = statSync(path).ino;
      } catch {
        // gone
      }
      if (ino !== this.socketIno) this.end('socket removed');
    }, SOCKET_CHECK_MS).unref();
    this.armLinger();
  }

  private output(b: Buffer): void {
    this.ring.append(b);
    this.term.write(b);
    for (let off = 0; off < b.length; off += MAX_CHUNK) {
      const frame = encodeFrame({ t: 'stdout', data: b.subarray(off, off + MAX_CHUNK) });
      for (const c of this.clients) this.sendTo(c, frame);
    }
  }

  /** Send to one client; the writer's backpressure holds the shell, a viewer far behind is dropped. */
  private sendTo(c: Client, frame: Buffer): void {
    if (!c.live) return;
    const ok = c.sock.write(frame);
    if (ok) return;
    if (c === this.writer) {
      if (!this.pausedFor) {
        this.pausedFor = c;
        this.pty.pause();
        c.sock.once('drain', () => this.resumeFor(c));
      }
    } else if (c.sock.writableLength > MAX_CLIENT_BACKLOG) {
      c.sock.destroy();
    }
  }

  /**
   * The screen once the terminal has parsed every byte written so far, and the offset it stands
   * for. Serialized inside the parser's callback: later chunks may be parsed in the same turn.
   */
  private async snapshot(): Promise<{ at: number; screen: Buffer }> {
    const serializer = await this.loadSerializer();
    const at = this.ring.end;
    return new Promise((r) =>
      this.term.write('', () => {
        const b = this.term.buffer.active;
        // The serializer's own cursor placement can be off by a column; say it absolutely.
        const cursor = `\x1b[${b.cursorY + 1};${b.cursorX + 1}H`;
        let screen = Buffer.from(serializer.serialize({ scrollback: SCREEN_SCROLLBACK }) + cursor, 'utf8');
        // History that would not fit in one frame is left out: the screen itself always fits.
        if (screen.length > MAX_FRAME - 1024) screen = Buffer.from(serializer.serialize({ scrollback: 0 }) + cursor, 'utf8');
        r({ at, screen });
      }),
    );
  }

  private loadSerializer(): Promise<Serializer> {
    this.serializer ??= import('@xterm/addon-serialize').then((m) => {
      // A CommonJS package: its exports are the default export under node, named ones when bundled.
      const { SerializeAddon } = 'SerializeAddon' in m ? m : (m as { default: typeof m }).default;
      const s = new SerializeAddon();
      this.term.loadAddon(s);
      return s;
    });
    return this.serializer;
  }

  private info(): SessionInfo {
    return {
      name: this.spec.name,
      command: this.spec.command ?? null,
      created: this.created,
      lastAttached: this.lastAttached,
      clients: [...this.clients].filter((c) => c.live).length,
      cols: this.pty.cols,
      rows: this.pty.rows,
      running: this.exit === undefined,
      exit: this.exit ?? null,
      pid: this.pty.pid,
      keeperPid: process.pid,
      scrollbackBytes: this.ring.size,
    };
  }

  private accept(sock: Socket): void {
    sock.on('error', () => undefined);
    let client: Client | undefined;
    /** The daemon's keeper protocol: its hello's, or 0 for a daemon from before the hello. */
    let peer: number | undefined;
    /** Set once this connection is refused: nothing after that is served. */
    let refused = false;
    const refuse = (answer: Frame): void => {
      refused = true;
      sock.end(encodeFrame(answer));
    };
    readFrames(
      sock,
      (f) => {
        if (refused) return;
        if (client) return this.clientFrame(client, f);
        if (f.t === 'hello' && peer === undefined && KEEPER_PROTOCOL > 0) {
          const answer = answerHello(f);
          peer = f.v;
          if (answer.t === 'hello') sock.write(encodeFrame(answer));
          else refuse(answer);
          return;
        }
        if (peer === undefined) {
          peer = 0;
          if (OLDEST_KEEPER_PROTOCOL > 0) return refuse(answerHello({ t: 'hello', v: 0 }));
        }
        switch (f.t) {
          case 'sessions':
            // Spread: the interface becomes a plain object type, which a frame's map accepts.
            sock.end(encodeFrame({ t: 'result', value: { ...this.info() } }));
            return;
          case 'session_kill':
            void this.kill().then((exit) => sock.end(encodeFrame({ t: 'result', value: { killed: true, ...exit } })));
            return;
          case 'session_open':
            client = { sock, readOnly: f.readOnly === true, cols: f.cols ?? this.pty.cols, rows: f.rows ?? this.pty.rows, live: false };
            this.attach(client, f).catch(() => sock.destroy());
            return;
          default:
            refuse({ t: 'error', code: ErrorCodes.UnexpectedFrame, message: `${f.t} is not a session keeper request` });
        }
      },
      () => sock.destroy(),
    );
    sock.once('close', () => {
      if (!client) return;
      client.live = false;
      this.clients.delete(client);
      if (this.writer === client) {
        this.writer = undefined;
        // last-attach: the client that attached latest of those left takes over.
        const next = this.spec.writer === 'last-attach' ? [...this.clients].reverse().find((c) => c.live && !c.readOnly) : undefined;
        if (next) this.becomeWriter(next);
      }
      this.resumeFor(client);
      this.armLinger();
    });
  }

  /**
   * The attach handshake: once the terminal has parsed all output so far (offset O), the client
   * gets `attached` with O, then the bytes it missed when its offset is still in the ring, else
   * the serialized screen; then live output. All of it is sent in one turn of the event loop, so
   * no output can fall between the snapshot and the live stream.
   */
  private async attach(c: Client, req: FrameOf<'session_open'>): Promise<void> {
    const missed = req.offset !== undefined ? this.ring.since(req.offset) : undefined;
    const snap = missed === undefined ? await this.snapshot() : undefined;
    if (c.sock.destroyed) return;
    const writer = !c.readOnly;
    // From here to joining the live clients nothing yields, so no output falls in between.
    let rest: Buffer | undefined;
    if (snap) {
      c.sock.write(encodeFrame({ t: 'attached', name: this.spec.name, offset: snap.at, screen: snap.screen, writer, pid: this.pty.pid }));
      rest = this.ring.since(snap.at); // output that came while the terminal caught up
    } else {
      c.sock.write(encodeFrame({ t: 'attached', name: this.spec.name, offset: req.offset as number, writer, pid: this.pty.pid }));
      rest = this.ring.since(req.offset as number);
    }
    if (rest) for (let off = 0; off < rest.length; off += MAX_CHUNK) c.sock.write(encodeFrame({ t: 'stdout', data: rest.subarray(off, off + MAX_CHUNK) }));
    this.lastAttached = Date.now();
    if (this.exit) {
      // The status is collected by this client: the session ends here.
      c.sock.end(encodeFrame({ t: 'exit', ...this.exit }));
      this.end('exit status collected');
      return;
    }
    c.live = true;
    this.clients.add(c);
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if (writer) this.becomeWriter(c);
  }

  private resumeFor(c: Client): void {
    if (this.pausedFor !== c) return;
    this.pausedFor = undefined;
    this.pty.resume();
  }

  private becomeWriter(c: Client): void {
    // Only the writer holds the shell back: a writer replaced (perhaps on a dead link) lets go.
    if (this.pausedFor && this.pausedFor !== c) this.resumeFor(this.pausedFor);
    this.writer = c;
    this.resize(c.cols, c.rows);
  }

  private resize(cols: number, rows: number): void {
    if (cols <= 0 || rows <= 0 || this.exit) return;
    if (cols === this.pty.cols && rows === this.pty.rows) return;
    this.pty.resize(cols, rows);
    this.term.resize(cols, rows);
  }

  private clientFrame(c: Client, f: Frame): void {
    if (!c.live) return;
    switch (f.t) {
      case 'stdin':
        if (c.readOnly || this.exit) return; // a viewer's keys never reach the shell
        if (this.writer !== c) {
          // last-attach: a client is a viewer once another attached after it, until it attaches again.
          if (this.spec.writer === 'last-attach') return;
          this.becomeWriter(c);
        }
        this.ptyBytes.write(Buffer.from(f.data));
        return;
      case 'resize':
        c.cols = f.cols;
        c.rows = f.rows;
        if (this.writer === c) this.resize(f.cols, f.rows);
        return;
      default:
        return; // eof and the rest mean nothing to a shell that outlives its clients
    }
  }

  private shellEnded(code: number, signal: number | undefined): void {
    const name = signal ? Object.entries(osConstants.signals).find(([, v]) => v === signal)?.[0] : undefined;
    this.exit = name ? { signal: bareSignal(name) } : { code };
    for (const w of this.exitWaiters.splice(0)) w();
    const live = [...this.clients].filter((c) => c.live);
    if (live.length === 0 && !this.ending) {
      this.armLinger();
      return; // kept until a client collects it, or it expires
    }
    const frame = encodeFrame({ t: 'exit', ...this.exit });
    for (const c of live) c.sock.end(frame);
    this.end('shell ended');
  }

  /**
   * Signal the shell. Its jobs follow: a shell hung up passes SIGHUP on to them, and when the
   * session leader dies the kernel hangs up the terminal's foreground group.
   */
  private signal(sig: 'SIGHUP' | 'SIGKILL'): void {
    try {
      this.pty.kill(sig);
    } catch {
      // already gone
    }
  }

  /** Hang the shell up (SIGHUP to its process group, SIGKILL after a grace), and wait for it. */
  private async kill(): Promise<{ code?: number; signal?: string }> {
    this.ending = true;
    if (!this.exit) {
      this.signal('SIGHUP');
      const timer = setTimeout(() => this.signal('SIGKILL'), KILL_GRACE_MS);
      await new Promise<void>((r) => this.exitWaiters.push(r));
      clearTimeout(timer);
    }
    this.end('killed');
    return this.exit ?? {};
  }

  /** With no client attached, a linger time set ends the session when it runs out. */
  private armLinger(): void {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    if (this.spec.lingerSeconds <= 0 || [...this.clients].some((c) => c.live)) return;
    this.lingerTimer = setTimeout(() => (this.exit ? this.end('expired') : void this.kill()), this.spec.lingerSeconds * 1000);
  }

  end(_why: string): void {
    if (this.ended) return;
    this.ended = true;
    this.ending = true;
    if (!this.exit) this.signal('SIGHUP');
    this.server.close();
    try {
      if (statSync(this.spec.socket).ino === this.socketIno) unlinkSync(this.spec.socket);
    } catch {
      // already gone
    }
    // Let the last frames reach the clients before the process goes.
    setTimeout(() => process.exit(0), 200);
  }
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '') as KeeperSpec;
  process.title = `burrow-keeper ${spec.name}`;
  // The host daemon may go away at any time: nothing here may die of its pipes closing.
  process.on('SIGPIPE', () => undefined);
  process.on('SIGHUP', () => undefined);
  // The keeper's death would take the user's shell with it: a failure serving one client is that
  // client's (its socket is closed by then), never the session's.
  process.on('uncaughtException', () => undefined);
  process.on('unhandledRejection', () => undefined);
  const keeper = new Keeper(spec);
  await keeper.listen();
  process.on('SIGTERM', () => keeper.end('SIGTERM'));
  // Tell the host we listen, then let go of the pipe: we outlive it.
  process.stdout.write('ready\n', () => process.stdout.destroy());
}

main().catch((err: unknown) => {
  const e = toBurrowError(err);
  process.stdout.write(`error ${e.code} ${e.message}\n`, () => process.exit(1));
});
