// Every reach into ssh2's private fields, in one place. ssh2 is pinned in package.json; each
// accessor says why the public API does not do, and checks the shape it finds so that a changed
// ssh2 fails loudly (or falls back) here instead of misbehaving somewhere else.

import type { Client as SshClient, ClientChannel, Connection as SshServerConn, SFTPWrapper } from 'ssh2';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';

/** The server's software version from its SSH ident (e.g. burrow_0.2, OpenSSH_9.6): ssh2 keeps it but has no getter. */
export function remoteSoftware(client: SshClient): string {
  return (client as unknown as { _remoteVer?: string })._remoteVer ?? '';
}

/**
 * Send a signal on a client channel. ssh2 drops a signal once our side has sent EOF (state 'eof',
 * not 'open'), though RFC 4254 allows one until the channel closes, and a command whose stdin
 * ended is still running: send it on the protocol directly then. Never throws.
 */
export function signalChannel(ch: ClientChannel, name: string): void {
  const raw = ch as unknown as { outgoing?: { id: number; state: string }; _client?: { _protocol?: { signal(id: number, name: string): void } } };
  try {
    if (raw.outgoing?.state !== 'eof') ch.signal(name);
    else raw._client?._protocol?.signal(raw.outgoing.id, name);
  } catch {
    // closed meanwhile, or a name ssh2 does not know
  }
}

/** The requests a client's protocol sends for a session channel: what the exec@burrow hook rewrites. */
export interface ExecProtocol {
  exec(chan: number, cmd: string, wantReply: boolean): void;
  subsystem(chan: number, name: string, wantReply: boolean): void;
  env(chan: number, key: string, value: string, wantReply: boolean): void;
  pty(chan: number, rows: number, cols: number, height: number, width: number, term: string, modes: unknown, wantReply: boolean): void;
  shell(chan: number, wantReply: boolean): void;
}

/**
 * A client's protocol object, to hook its exec request (ssh2's exec() sends env and pty-req first,
 * its subsys() neither; it cannot open a session channel without a request). A change must fail
 * here, never send a marker as a command.
 */
export function execProtocol(client: SshClient): ExecProtocol {
  const proto = (client as unknown as { _protocol?: ExecProtocol })._protocol;
  if (typeof proto?.exec !== 'function' || typeof proto.subsystem !== 'function' || typeof proto.env !== 'function' || typeof proto.pty !== 'function' || typeof proto.shell !== 'function') throw new BurrowError(ErrorCodes.Internal, 'this ssh2 has no exec/subsystem/env/pty/shell on its protocol: long commands and spare channels need the pinned ssh2');
  return proto;
}

/** The comment after the server's software version in its SSH ident (a burrow host's boot id); '' when none. ssh2 keeps only the raw line. */
export function remoteIdentComment(client: SshClient): string {
  const raw = (client as unknown as { _protocol?: { _remoteIdentRaw?: Buffer } })._protocol?._remoteIdentRaw;
  if (!Buffer.isBuffer(raw)) return '';
  // SSH-protoversion-softwareversion SP comments
  const line = raw.toString('latin1');
  const sp = line.indexOf(' ');
  return sp < 0 ? '' : line.slice(sp + 1).trim();
}

/**
 * The client channel whose server-side id is `remoteId` (what the exec hook is given): ssh2 keys
 * its channel table by our id and has no lookup by theirs. undefined when none is open.
 */
export function clientChannelByRemoteId(client: SshClient, remoteId: number): ClientChannel | undefined {
  const table = (client as unknown as { _chanMgr?: { _channels?: Record<number, unknown> } })._chanMgr?._channels;
  if (!table || typeof table !== 'object') return undefined;
  for (const ch of Object.values(table)) {
    const c = ch as { type?: string; outgoing?: { id?: number }; close?: unknown };
    if (c && typeof c === 'object' && c.type === 'session' && c.outgoing?.id === remoteId && typeof c.close === 'function') return ch as ClientChannel;
  }
  return undefined;
}

/** Send an SSH ping (ClientAlive) to a server-side client: ssh2's server has no keepalive of its own. Never throws. */
export function pingClient(client: SshServerConn): void {
  try {
    (client as unknown as { _protocol?: { ping(): void } })._protocol?.ping();
  } catch {
    // the connection is closing
  }
}

/**
 * ssh2's reject() sends an open failure with reason 1 and an empty description; put a reason in
 * it so the client sees why (e.g. "channel limit of 128 reached") instead of a bare code.
 */
export function rejectWithReason(client: SshServerConn, reject: () => void, reason: number, description: string): void {
  const proto = (client as unknown as { _protocol?: { channelOpenFail: (recipient: number, reason: number, desc: string) => void } })._protocol;
  if (!proto) return reject();
  const orig = proto.channelOpenFail;
  proto.channelOpenFail = (recipient) => orig.call(proto, recipient, reason, description);
  try {
    reject();
  } finally {
    proto.channelOpenFail = orig;
  }
}

/**
 * End a server SFTP channel as sshd does: exit-status 0 and EOF before CLOSE (without the status
 * OpenSSH's ssh exits non-zero and scp reports a failed copy). ssh2's SFTP wrapper has no exit(),
 * so this goes through its channel state and protocol, which it keeps as fields.
 */
export function sftpExitAndEof(sftp: SFTPWrapper): void {
  const ch = sftp as unknown as { outgoing?: { id: number; state: string }; _protocol?: { exitStatus(id: number, code: number): void; channelEOF(id: number): void } };
  if (ch.outgoing?.state === 'open' && ch._protocol) {
    ch._protocol.exitStatus(ch.outgoing.id, 0);
    ch._protocol.channelEOF(ch.outgoing.id);
    ch.outgoing.state = 'eof';
  }
}

/**
 * ssh2 1.17's SFTP server answers INIT with a fixed VERSION packet and has no method for an
 * EXTENDED_REPLY: host/sftp-proto.ts writes both through the channel state and outgoing queue
 * ssh2's own replies use, so they go out in order and within the SSH window.
 */
export interface SftpInternals {
  outgoing: { id: number; state: string; window: number; packetSize: number };
  _protocol: { channelData(id: number, data: Buffer): void };
  /** Payloads waiting for the peer's window, oldest first. */
  _buffer: Buffer[];
  _waitWindow: boolean;
  /** Called by ssh2 when the peer opens its window after _waitWindow was set. */
  _chunkcb: (() => void) | undefined;
}

/** A server SFTP object's internals, or undefined when this ssh2 lacks them. */
export function sftpInternals(sftp: SFTPWrapper): SftpInternals | undefined {
  const s = sftp as unknown as Partial<SftpInternals>;
  const fine = typeof s.outgoing?.window === 'number' && typeof s._protocol?.channelData === 'function' && Array.isArray(s._buffer);
  return fine ? (s as SftpInternals) : undefined;
}
