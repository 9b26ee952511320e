// The host side of persistent sessions: the burrow-session@burrow subsystem, served only on an
// authenticated SSH connection. It finds keepers by their sockets in one private directory (so a
// restarted daemon finds the ones it started before), starts new ones, and relays an attached
// channel to its keeper.

import { spawn } from 'node:child_process';
import { existsSync, readdirSync, unlinkSync } from 'node:fs';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ServerChannel } from 'ssh2';
import { BurrowError, ErrorCodes, isErrorCode, toBurrowError } from '../../shared/errors.js';
import { ensurePrivateDir } from '../../shared/fsutil.js';
import { encodeFrame } from '../../shared/ipc/codec.js';
import type { Frame, FrameOf } from '../../shared/ipc/frames.js';
import type { Logger } from '../log.js';
import { envAllowed, type SessionUser } from '../host/session.js';
import type { SessionInfo } from '../../shared/sessions.js';
import type { KeeperSpec } from './keeper.js';
import { KeeperUnreachable, askKeeper, openKeeper, readFrames, sessionInfoFrom, type WriterPolicy } from './wire.js';
import { pump, streamSink, throttle } from '../ssh/bridge.js';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
// The keeper as one bundled CommonJS file (`npm run bundle:keeper`, part of the build): no ES module
// loader and no module graph to resolve, which is most of what a bare node process does not pay
// (docs/ARCHITECTURE.md, "Keeper memory"). keeper.js is the same code, when only tsc has run.
const KEEPER_BUNDLE = fileURLToPath(new URL('./keeper.cjs', import.meta.url));
const KEEPER = existsSync(KEEPER_BUNDLE) ? KEEPER_BUNDLE : fileURLToPath(new URL('./keeper.js', import.meta.url));
const KEEPER_START_MS = 10_000;
// A keeper is small and mostly idle (docs/ARCHITECTURE.md, "Keeper memory"): a small young
// generation; a tier-up budget high enough that building xterm's parser tables at start-up does
// not wake the optimizing compiler (3-4 MiB of RSS), while heavy output still gets it; one V8
// worker thread and no parallel GC threads.
const NODE_BAD_OPTION_EXIT = 9;
const BAD_OPTION = 'bad-option';
let KEEPER_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--max-old-space-size=64', '--interrupt-budget=1048576', '--v8-pool-size=1', '--single-threaded-gc'];

export interface SessionSettings {
  /** Where the keepers' sockets live (0700). */
  dir: string;
  /** Sessions this user may hold at once. */
  cap: number;
  /** Seconds an unattached session lives on; 0: for ever. */
  lingerSeconds: number;
  /** Bytes of output each session keeps for reattaching clients. */
  ringBytes: number;
  /** Who writes when several clients are attached; a session keeps the policy it was created with. */
  writer: WriterPolicy;
}

export function checkSessionName(name: string): void {
  if (!NAME.test(name)) throw new BurrowError(ErrorCodes.BadArgument, `session name ${JSON.stringify(name.slice(0, 80))} must be 1-64 letters, digits, '.', '_' or '-', not starting with a punctuation mark`);
}

export class SessionKeepers {
  /** Attached channels, ended (not the sessions) when the daemon stops. */
  private readonly attached = new Set<ServerChannel>();
  /** Set once the daemon stops: no new attachments to hold the stop up. */
  private stopping = false;

  constructor(
    private readonly settings: SessionSettings,
    private readonly user: SessionUser,
    private readonly acceptEnv: readonly string[],
    private readonly log: Logger,
  ) {
    ensurePrivateDir(settings.dir);
  }

  private socketOf(name: string): string {
    return join(this.settings.dir, `${name}.sock`);
  }

  /** Serve one subsystem channel: the first frame says what is wanted. */
  serve(ch: ServerChannel, remote: string): void {
    let first = true;
    const fail = (err: unknown): void => {
      const e = toBurrowError(err);
      try {
        ch.end(encodeFrame({ t: 'error', code: e.code, message: e.message }));
      } catch {
        // channel already gone
      }
    };
    const reply = (value: Record<string, unknown>): void => {
      ch.write(encodeFrame({ t: 'result', value }));
      ch.exit(0);
      ch.end();
    };
    ch.on('error', () => undefined);
    readFrames(
      ch,
      (f) => {
        if (!first) return;
        first = false;
        switch (f.t) {
          case 'sessions':
            this.list().then((sessions) => reply({ sessions }), fail);
            return;
          case 'session_kill':
            this.kill(f.name, remote).then(reply, fail);
            return;
          case 'session_open':
            ch.pause(); // frames after the request wait until the keeper is reached
            this.open(f, remote, ch).catch(fail);
            return;
          default:
            fail(new BurrowError(ErrorCodes.UnexpectedFrame, `${f.t} is not a session request`));
        }
      },
      (err) => fail(err),
    );
  }

  /** Every live session, oldest first; sockets nobody answers on are removed. */
  async list(): Promise<SessionInfo[]> {
    const names = readdirSync(this.settings.dir)
      .filter((f) => f.endsWith('.sock'))
      .map((f) => f.slice(0, -5));
    const found = await Promise.all(
      names.map(async (name) => {
        try {
          return sessionInfoFrom(await askKeeper(this.socketOf(name), { t: 'sessions', target: '' }, 3000));
        } catch (err) {
          this.forgetStale(name, err);
          this.logMismatch(name, err);
          return undefined;
        }
      }),
    );
    return found.filter((s): s is SessionInfo => s !== undefined).sort((a, b) => a.created - b.created);
  }

  private forgetStale(name: string, err: unknown): void {
    if (!(err instanceof KeeperUnreachable) || err.errno !== 'ECONNREFUSED') return;
    try {
      unlinkSync(this.socketOf(name));
      this.log.info({ event: 'session_stale', name }, 'removed the socket of a keeper that is gone');
    } catch {
      // raced with someone else
    }
  }

  /** A keeper of another build that we cannot speak with: said once per request, its shell untouched. */
  private logMismatch(name: string, err: unknown): void {
    if (err instanceof BurrowError && err.code === ErrorCodes.VersionMismatch) {
      this.log.warn({ event: 'session_version', name, why: err.message }, 'session keeper speaks another keeper protocol; left running');
    }
  }

  private async kill(name: string, remote: string): Promise<Record<string, unknown>> {
    checkSessionName(name);
    try {
      const r = await askKeeper(this.socketOf(name), { t: 'session_kill', target: '', name }, 15_000);
      this.log.info({ event: 'session_killed', name, remote }, 'persistent session killed');
      return r;
    } catch (err) {
      if (err instanceof KeeperUnreachable) {
        this.forgetStale(name, err);
        throw new BurrowError(ErrorCodes.NotFound, `no session named ${name}`);
      }
      this.logMismatch(name, err);
      throw err;
    }
  }

  /** Attach the channel to NAME's keeper, starting one first when asked to create it. */
  private async open(req: FrameOf<'session_open'>, remote: string, ch: ServerChannel): Promise<void> {
    if (this.stopping) throw new BurrowError(ErrorCodes.ShuttingDown, 'the host is restarting; the session lives on');
    checkSessionName(req.name);
    const path = this.socketOf(req.name);
    const reach = (): Promise<Socket> =>
      openKeeper(path).then(
        (k) => k.sock,
        (err: unknown) => {
          this.logMismatch(req.name, err);
          throw err;
        },
      );
    let sock = await reach().catch((err: unknown) => {
      if (!(err instanceof KeeperUnreachable)) throw err;
      this.forgetStale(req.name, err);
      return undefined;
    });
    if (!sock) {
      if (!req.create) throw new BurrowError(ErrorCodes.NotFound, `no session named ${req.name}`);
      await this.start(req, remote);
      sock = await reach();
    }
    sock.on('error', () => undefined);
    this.attached.add(ch);
    // The keeper's frames go to the channel as they are; the client's are checked on the way in.
    // Each way over the bridge: a full channel window holds the keeper, a full keeper socket the channel.
    sock.write(encodeFrame({ ...req, target: '' }));
    pump(sock, ch); // resumes it (paused after the hello)
    const toKeeper = throttle(streamSink(sock), ch);
    readFrames(
      ch,
      (f: Frame) => {
        if (f.t === 'stdin' || f.t === 'resize') toKeeper(encodeFrame(f));
      },
      () => sock.destroy(),
    );
    ch.resume();
    const close = (): void => {
      this.attached.delete(ch);
      sock.destroy();
    };
    ch.once('close', close);
    sock.once('close', () => {
      this.attached.delete(ch);
      try {
        ch.exit(0);
        ch.end();
      } catch {
        // channel already gone
      }
    });
  }

  /** Start a keeper for a new session; false when another client created it first. */
  private async start(req: FrameOf<'session_open'>, remote: string): Promise<boolean> {
    const live = await this.list();
    if (live.length >= this.settings.cap) {
      throw new BurrowError(ErrorCodes.ChannelRefused, `session limit of ${this.settings.cap} reached (burrow session list shows them; burrow session kill ends one)`);
    }
    const term = req.term ?? 'xterm-256color';
    const env: Record<string, string> = {
      HOME: this.user.home,
      USER: this.user.name,
      LOGNAME: this.user.name,
      SHELL: this.user.shell,
      PATH: this.user.path,
      BURROW_REMOTE: remote,
      BURROW_SESSION: req.name,
    };
    for (const [k, v] of Object.entries(req.env ?? {})) if (envAllowed(k, this.acceptEnv)) env[k] = v;
    env['TERM'] = term;
    const spec: KeeperSpec = {
      name: req.name,
      socket: this.socketOf(req.name),
      shell: this.user.shell,
      args: req.command === undefined ? ['-l'] : ['-c', req.command],
      ...(req.command !== undefined ? { command: req.command } : {}),
      cwd: this.user.home,
      env,
      term,
      cols: req.cols || 80,
      rows: req.rows || 24,
      ringBytes: this.settings.ringBytes,
      lingerSeconds: req.linger ?? this.settings.lingerSeconds,
      writer: this.settings.writer,
    };
    let { line, pid } = await this.spawnKeeper(KEEPER_FLAGS, spec);
    if (line === BAD_OPTION) {
      // A node whose V8 no longer knows a tuning flag refuses to start (exit 9): run the keeper
      // untuned rather than not at all.
      this.log.warn({ event: 'keeper_flags_refused', flags: KEEPER_FLAGS }, 'node refused the keeper memory flags; starting keepers without them');
      KEEPER_FLAGS = [];
      ({ line, pid } = await this.spawnKeeper(KEEPER_FLAGS, spec));
    }
    if (line === 'ready') {
      this.log.info({ event: 'session_created', name: req.name, remote, keeperPid: pid, command: req.command?.slice(0, 200) }, 'persistent session created');
      return true;
    }
    const m = /^error (\S+) (.*)$/.exec(line);
    if (m?.[1] === ErrorCodes.AlreadyRunning) return false;
    throw new BurrowError(m && isErrorCode(m[1]) ? m[1] : ErrorCodes.Internal, m?.[2] ?? `session keeper said ${line.slice(0, 200)}`);
  }

  /** Starts a keeper and returns its first line (`ready` or `error CODE message`, or BAD_OPTION) and pid. */
  private async spawnKeeper(flags: readonly string[], spec: KeeperSpec): Promise<{ line: string; pid: number | undefined }> {
    // Detached, in a session of its own, holding none of our pipes once ready: our stop or
    // restart does not reach it.
    const child = spawn(process.execPath, [...flags, KEEPER, JSON.stringify(spec)], { detached: true, stdio: ['ignore', 'pipe', 'ignore'] });
    child.unref();
    const line = await new Promise<string>((resolve) => {
      const timer = setTimeout(() => resolve('error Internal session keeper did not start in time'), KEEPER_START_MS);
      const rl = createInterface({ input: child.stdout! });
      rl.once('line', (l) => {
        clearTimeout(timer);
        resolve(l);
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        resolve(code === NODE_BAD_OPTION_EXIT && flags.length > 0 ? BAD_OPTION : `error Internal session keeper exited with ${code}`);
      });
    });
    child.removeAllListeners('exit');
    return { line, pid: child.pid };
  }

  /** Daemon stopping: end the attached channels (their clients reconnect later); sessions live on. */
  detachAll(): void {
    this.stopping = true;
    for (const ch of this.attached) {
      try {
        ch.close();
      } catch {
        // already gone
      }
    }
    this.attached.clear();
  }
}
