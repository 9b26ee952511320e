// Opening channels on an ssh2 client, each as a promise that settles once: session (exec or
// shell, including burrow's exec@burrow for long commands), subsystem, SFTP and forwarding
// channels. What an open means for a pooled connection (counting, busy waits, reconnects) is the
// agent's pool; this is only the SSH side.

import { randomUUID } from 'node:crypto';
import type { Client as SshClient, ClientChannel, PseudoTtyOptions, SFTPWrapper } from 'ssh2';
import type { Place } from '../../shared/forward.js';
import { bareSignal } from '../../shared/signals.js';
import { clientChannelByRemoteId, execProtocol, type ExecProtocol } from './private.js';
import { LONG_EXEC_SUBSYSTEM } from './subsystems.js';

export interface SessionRequest {
  /** undefined: a login shell. */
  command?: string;
  pty?: PseudoTtyOptions;
  env?: Record<string, string>;
}

/** A channel with its exit status and close captured from the moment it opened. */
export interface OpenedSession {
  channel: ClientChannel;
  /** Set once the remote sends exit-status or exit-signal. */
  exit(): { code: number } | { signal: string } | undefined;
  closed: Promise<void>;
}

/** A channel and its close, listened for from the moment it opened. */
export interface OpenedChannel {
  channel: ClientChannel;
  closed: Promise<void>;
}

export interface OpenedSftp {
  sftp: SFTPWrapper;
  closed: Promise<void>;
}

/** The burrow version in a server's SSH software version (burrow_0.3 → [0, 3]); undefined for other servers. */
function burrowVersion(software: string): [number, number] | undefined {
  const m = /^burrow_(\d+)\.(\d+)/.exec(software);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

const atLeast = (v: [number, number], major: number, minor: number): boolean => v[0] > major || (v[0] === major && v[1] >= minor);

/** What a server's SSH software version says about long commands: burrow's exec@burrow from 0.2 on. */
export function longExecSupport(software: string): 'yes' | 'old-burrow' | 'no' {
  const v = burrowVersion(software);
  if (!v) return 'no';
  return atLeast(v, 0, 2) ? 'yes' : 'old-burrow';
}

/**
 * Whether a session channel may be opened ahead of time (SpareChannel): burrow hosts from 0.3 on
 * count a channel as a session only once a request starts it. An older host, or OpenSSH, would
 * count an idle one against its limits and wait for it before a graceful stop.
 */
export function spareChannelSupport(software: string): boolean {
  const v = burrowVersion(software);
  return v !== undefined && atLeast(v, 0, 3);
}

type SessionCallback = (err: Error | undefined, ch: ClientChannel) => void;

/**
 * The callback that turns ssh2's answer to a session request into an OpenedSession. ssh2 may
 * deliver exit-status and close in the same chunk as the confirmation, before any promise
 * continuation runs: listeners go on here, synchronously, or those events are lost.
 */
function sessionCallback(req: SessionRequest, how: 'exec' | 'stdin', resolve: (o: OpenedSession) => void, reject: (err: Error) => void): SessionCallback {
  return (err, ch) => {
    if (err) return reject(err);
    let exit: { code: number } | { signal: string } | undefined;
    ch.on('exit', (code: number | null, signal?: string) => {
      exit = signal ? { signal: bareSignal(signal) } : { code: code ?? 255 };
    });
    const closed = closeOf(ch);
    if (how === 'stdin') {
      const cmd = Buffer.from(req.command ?? '');
      const len = Buffer.alloc(4);
      len.writeUInt32BE(cmd.length);
      ch.write(Buffer.concat([len, cmd]));
    }
    resolve({ channel: ch, exit: () => exit, closed });
  };
}

/**
 * Open a session channel and start the command: as an exec request, or (`stdin`) as burrow's
 * exec subsystem, where the command goes first on the channel as a 4-byte length and its bytes.
 */
export function openChannel(client: SshClient, req: SessionRequest, how: 'exec' | 'stdin' = 'exec'): Promise<OpenedSession> {
  return new Promise((resolve, reject) => {
    const cb = sessionCallback(req, how, resolve, reject);
    try {
      if (req.command === undefined) client.shell(req.pty ?? false, { env: req.env ?? {} }, cb);
      else if (how === 'stdin') openLongExec(client, req, cb);
      else client.exec(req.command, { ...(req.pty ? { pty: req.pty } : {}), env: req.env ?? {} }, cb);
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

/**
 * A session channel opened ahead of time, so that the next command skips the open's round trip:
 * its env and exec requests go out at once, and the exec's answer is the first the command waits
 * for (two round trips become one). ssh2 has no public way to open a bare session channel, so
 * this is its exec() with a one-time marker that the protocol hook holds back instead of sending:
 * the channel stays open, requested nothing, until start() sends the real requests under it.
 */
export class SpareChannel {
  /** The channel's id once its open was confirmed. */
  private id: number | undefined;
  private handler: SessionCallback | undefined;
  private gone = false;

  constructor(private readonly client: SshClient) {
    const marker = `\0burrow-spare ${randomUUID()}`;
    let hooks: ExecHooks | undefined;
    try {
      hooks = execHooks(client);
      hooks.held.set(marker, (chan) => (this.id = chan));
      // No env, no pty: those are the started session's, sent by startSession().
      client.exec(marker, {}, (err, ch) => {
        hooks?.held.delete(marker);
        if (this.handler) return this.handler(err, ch);
        // Before a start: the open failed, or the channel closed while idle (ssh2 fails its
        // pending request then), or a server answered what was never asked: done, and closed.
        this.gone = true;
        if (!err) ch.close();
      });
    } catch {
      hooks?.held.delete(marker);
      this.gone = true;
    }
  }

  /**
   * Close an idle spare (the host holds a session slot for it). A burrow host frees the slot when
   * the close arrives; ssh2's server sends no close back for a channel that never started, so
   * ours stays half closed until the connection ends. False when there was none to close.
   */
  close(): boolean {
    if (!this.ready || this.id === undefined) return false;
    this.gone = true;
    const ch = clientChannelByRemoteId(this.client, this.id);
    ch?.close();
    return ch !== undefined;
  }

  /** Open, idle and not yet taken. */
  get ready(): boolean {
    return !this.gone && this.id !== undefined && this.handler === undefined;
  }

  /** Its open was refused (or the connection ended first). */
  get refused(): boolean {
    return this.gone && this.id === undefined;
  }

  /** Still opening, or ready. */
  get pending(): boolean {
    return !this.gone && this.handler === undefined;
  }

  /**
   * Start a session on this channel, once (check `ready` first): its env and pty-req go first
   * without a reply asked (a burrow host refuses neither before a start; OpenSSH's client does
   * not wait for them either), then the exec or shell whose answer completes this.
   */
  startSession(req: SessionRequest): Promise<OpenedSession> {
    // The answer runs the callback ssh2 queued for the marker's exec, whose error says "exec".
    const what = req.command === undefined ? 'Unable to open shell' : 'Unable to exec';
    return new Promise((resolve, reject) =>
      this.use(sessionCallback(req, 'exec', resolve, (err) => reject(renamed(err, what))), reject, (proto, exec, id) => {
        for (const [k, v] of Object.entries(req.env ?? {})) proto.env(id, k, v, false);
        const p = req.pty;
        if (p) proto.pty(id, p.rows ?? 24, p.cols ?? 80, p.height ?? 480, p.width ?? 640, p.term ?? 'vt100', p.modes ?? null, false);
        if (req.command === undefined) proto.shell(id, true);
        else exec.call(proto, id, req.command, true);
      }),
    );
  }

  /** Start a subsystem (e.g. burrow-session) on this channel, once (check `ready` first). */
  startSubsystem(name: string): Promise<OpenedChannel> {
    return new Promise((resolve, reject) =>
      this.use(
        (err, ch) => (err ? reject(renamed(err, `Unable to start subsystem: ${name}`)) : resolve({ channel: ch, closed: closeOf(ch) })),
        reject,
        (proto, _exec, id) => proto.subsystem(id, name, true),
      ),
    );
  }

  /**
   * The answer to the request `send` sends runs the callback ssh2 queued for the marker's exec:
   * `handler`. A refused request leaves the channel open in ssh2 (its own exec() does too): it is
   * closed here, so the host lets go of its slot.
   */
  private use(handler: SessionCallback, reject: (err: Error) => void, send: (proto: ExecProtocol, exec: ExecProtocol['exec'], id: number) => void): void {
    const id = this.id;
    if (id === undefined || !this.ready) return reject(new Error('the spare channel is not ready'));
    this.handler = (err, ch) => {
      if (err) clientChannelByRemoteId(this.client, id)?.close();
      handler(err, ch);
    };
    const { proto, exec } = execHooks(this.client);
    try {
      send(proto, exec, id);
    } catch (err) {
      this.gone = true;
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  }
}

/** Open a subsystem channel (e.g. burrow-info@burrow). */
export function openSubsystemChannel(client: SshClient, name: string): Promise<OpenedChannel> {
  return new Promise((resolve, reject) => {
    client.subsys(name, (err, ch) => {
      if (err) return reject(err);
      resolve({ channel: ch, closed: closeOf(ch) });
    });
  });
}

/** Open a forwarding channel: direct-tcpip, or direct-streamlocal for a Unix socket. */
export function openForwardChannel(client: SshClient, to: Place, from: { host: string; port: number }): Promise<OpenedChannel> {
  return new Promise((resolve, reject) => {
    const cb = (err: Error | undefined, ch: ClientChannel): void => {
      if (err) return reject(err);
      resolve({ channel: ch, closed: closeOf(ch) });
    };
    try {
      if (to.kind === 'unix') client.openssh_forwardOutStreamLocal(to.path, cb);
      else client.forwardOut(from.host, from.port, to.host, to.port, cb);
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
}

/** Open an SFTP channel. */
export function openSftpChannel(client: SshClient): Promise<OpenedSftp> {
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

const closeOf = (ch: ClientChannel): Promise<void> => new Promise<void>((r) => ch.once('close', () => r()));

/**
 * ssh2's exec() sends env and pty-req before its exec request; its subsys() sends neither. So the
 * long command goes through exec() with a one-time marker that our hook on the protocol turns
 * into the subsystem request, for that channel only (other channels may be opening meanwhile).
 */
function openLongExec(client: SshClient, req: SessionRequest, cb: SessionCallback): void {
  const { held } = execHooks(client);
  const marker = `\0burrow-long-exec ${randomUUID()}`;
  held.set(marker, function (this: ExecProtocol, chan, wantReply) {
    this.subsystem(chan, LONG_EXEC_SUBSYSTEM, wantReply);
  });
  try {
    client.exec(marker, { ...(req.pty ? { pty: req.pty } : {}), env: req.env ?? {} }, (err, ch) => {
      held.delete(marker); // used, or the channel never got that far
      cb(err, ch);
    });
  } catch (err) {
    held.delete(marker);
    throw err;
  }
}

/** ssh2's own refusal ("Unable to exec") named for what was asked; another error as it is. */
function renamed(err: Error, what: string): Error {
  return err.message === 'Unable to exec' ? new Error(what) : err;
}

/** What a marker's exec request does instead of being sent. */
type HeldExec = (this: ExecProtocol, chan: number, wantReply: boolean) => void;

interface ExecHooks {
  proto: ExecProtocol;
  /** The protocol's own exec, for requests sent under a held channel. */
  exec: ExecProtocol['exec'];
  /** Pending markers, each used once. */
  held: Map<string, HeldExec>;
}

const hooked = new WeakMap<ExecProtocol, ExecHooks>();

/** A client's exec hooks, hooking its protocol's exec request once. */
function execHooks(client: SshClient): ExecHooks {
  const proto = execProtocol(client);
  const known = hooked.get(proto);
  if (known) return known;
  const hooks: ExecHooks = { proto, exec: proto.exec, held: new Map() };
  proto.exec = function (this: ExecProtocol, chan: number, cmd: string, wantReply: boolean): void {
    const held = hooks.held.get(cmd);
    if (held) {
      hooks.held.delete(cmd);
      return held.call(this, chan, wantReply);
    }
    hooks.exec.call(this, chan, cmd, wantReply);
  };
  hooked.set(proto, hooks);
  return hooks;
}
