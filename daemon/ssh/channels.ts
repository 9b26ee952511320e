// Opening channels on an ssh2 client, each as a promise that settles once: session (exec or
// shell, including burrow's exec@burrow for long commands), subsystem, SFTP and forwarding
// channels. What an open means for a pooled connection (counting, busy waits, reconnects) is the
// agent's pool; this is only the SSH side.

import { randomUUID } from 'node:crypto';
import type { Client as SshClient, ClientChannel, PseudoTtyOptions, SFTPWrapper } from 'ssh2';
import type { Place } from '../../shared/forward.js';
import { bareSignal } from '../../shared/signals.js';
import { execProtocol, type ExecProtocol } from './private.js';
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

/** What a server's SSH software version says about long commands: burrow's exec@burrow from 0.2 on. */
export function longExecSupport(software: string): 'yes' | 'old-burrow' | 'no' {
  const m = /^burrow_(\d+)\.(\d+)/.exec(software);
  if (!m) return 'no';
  return Number(m[1]) > 0 || Number(m[2]) >= 2 ? 'yes' : 'old-burrow';
}

/**
 * Open a session channel and start the command: as an exec request, or (`stdin`) as burrow's
 * exec subsystem, where the command goes first on the channel as a 4-byte length and its bytes.
 */
export function openChannel(client: SshClient, req: SessionRequest, how: 'exec' | 'stdin' = 'exec'): Promise<OpenedSession> {
  return new Promise((resolve, reject) => {
    // ssh2 may deliver exit-status and close in the same chunk as the open confirmation, before
    // any promise continuation runs: listeners go on here, synchronously, or those events are lost.
    const cb = (err: Error | undefined, ch: ClientChannel): void => {
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
    try {
      if (req.command === undefined) client.shell(req.pty ?? false, { env: req.env ?? {} }, cb);
      else if (how === 'stdin') openLongExec(client, req, cb);
      else client.exec(req.command, { ...(req.pty ? { pty: req.pty } : {}), env: req.env ?? {} }, cb);
    } catch (err) {
      reject(err instanceof Error ? err : new Error(String(err)));
    }
  });
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
function openLongExec(client: SshClient, req: SessionRequest, cb: (err: Error | undefined, ch: ClientChannel) => void): void {
  const markers = longExecMarkers(client);
  const marker = `\0burrow-long-exec ${randomUUID()}`;
  markers.add(marker);
  try {
    client.exec(marker, { ...(req.pty ? { pty: req.pty } : {}), env: req.env ?? {} }, (err, ch) => {
      markers.delete(marker); // used, or the channel never got that far
      cb(err, ch);
    });
  } catch (err) {
    markers.delete(marker);
    throw err;
  }
}

const hooked = new WeakMap<ExecProtocol, Set<string>>();

/** The pending markers of a client, hooking its protocol's exec request once. */
function longExecMarkers(client: SshClient): Set<string> {
  const proto = execProtocol(client);
  let markers = hooked.get(proto);
  if (markers) return markers;
  const pending = new Set<string>();
  const orig = proto.exec;
  proto.exec = function (this: ExecProtocol, chan: number, cmd: string, wantReply: boolean): void {
    if (pending.delete(cmd)) return this.subsystem(chan, LONG_EXEC_SUBSYSTEM, wantReply);
    orig.call(this, chan, cmd, wantReply);
  };
  hooked.set(proto, pending);
  markers = pending;
  return markers;
}
