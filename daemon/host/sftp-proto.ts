// SFTP protocol plumbing shared by the session (sftp.ts) and the OpenSSH extensions (sftp-ext.ts):
// replies and status codes, decoding of EXTENDED requests, and the two things ssh2's SFTP server
// cannot send by itself: extensions in the VERSION hello and SSH_FXP_EXTENDED_REPLY packets.

import ssh2 from 'ssh2';
import type { Attributes, FileEntry, SFTPWrapper } from 'ssh2';
import { sftpInternals, type SftpInternals } from '../ssh/private.js';

export const { STATUS_CODE } = ssh2.utils.sftp;

export type Reply =
  | { kind: 'status'; code: number; message: string }
  | { kind: 'handle'; handle: Buffer }
  | { kind: 'data'; data: Buffer }
  | { kind: 'name'; names: FileEntry[] }
  | { kind: 'attrs'; attrs: Attributes }
  /** An SSH_FXP_EXTENDED_REPLY: its body after the request id. */
  | { kind: 'extended'; body: Buffer };

// Like OpenSSH's sftp-server: packets up to 256 KiB, and a READ reply must fit that with its header.
export const MAX_PACKET = 256 * 1024;
export const MAX_READ = MAX_PACKET - 1024;

export const status = (code: number, message: string): Reply => ({ kind: 'status', code, message });
export const ok = (): Reply => status(STATUS_CODE.OK, 'Success');
export const eof = (): Reply => status(STATUS_CODE.EOF, 'End of file');

// ssh2 sends only the attribute fields that are present; names without attributes (REALPATH, READLINK) send none.
const NO_ATTRS = {} as Attributes;
export const bareName = (p: string): Reply => ({ kind: 'name', names: [{ filename: p, longname: p, attrs: NO_ATTRS }] });

/** A failure an operation reports with a chosen status code. */
export class SftpStatus extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

// errno to status as OpenSSH's sftp-server maps it (errno_to_portable), so clients print the same.
const ERRNO_STATUS: Record<string, number> = {
  ENOENT: STATUS_CODE.NO_SUCH_FILE,
  ENOTDIR: STATUS_CODE.NO_SUCH_FILE,
  EBADF: STATUS_CODE.NO_SUCH_FILE,
  ELOOP: STATUS_CODE.NO_SUCH_FILE,
  EPERM: STATUS_CODE.PERMISSION_DENIED,
  EACCES: STATUS_CODE.PERMISSION_DENIED,
  EFAULT: STATUS_CODE.PERMISSION_DENIED,
  ENAMETOOLONG: STATUS_CODE.BAD_MESSAGE,
  EINVAL: STATUS_CODE.BAD_MESSAGE,
  ENOSYS: STATUS_CODE.OP_UNSUPPORTED,
};

/** Map a thrown error to a status reply; system errors lose their path ("ENOENT: no such file, open '/x'"). */
export function errorReply(err: unknown): Reply {
  if (err instanceof SftpStatus) return status(err.code, err.message);
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOENT') return status(STATUS_CODE.NO_SUCH_FILE, 'No such file or directory');
  if (e.code === 'EACCES' || e.code === 'EPERM') return status(STATUS_CODE.PERMISSION_DENIED, 'Permission denied');
  const described = typeof e.code === 'string' ? /^[A-Z0-9]+: ([^,]+)/.exec(e.message)?.[1] : undefined;
  const message = described ? described[0]!.toUpperCase() + described.slice(1) : String(e.message ?? err);
  return status((typeof e.code === 'string' && ERRNO_STATUS[e.code]) || STATUS_CODE.FAILURE, message);
}

const ATTR = { SIZE: 0x1, UIDGID: 0x2, PERMISSIONS: 0x4, ACMODTIME: 0x8, EXTENDED: 0x80000000 } as const;

/** Reads an EXTENDED request's data; a field running past the end is BAD_MESSAGE. */
export class Reader {
  private at = 0;
  constructor(private readonly buf: Buffer = Buffer.alloc(0)) {}

  private take(n: number): Buffer {
    if (this.at + n > this.buf.length) throw new SftpStatus(STATUS_CODE.BAD_MESSAGE, 'Bad message');
    const b = this.buf.subarray(this.at, this.at + n);
    this.at += n;
    return b;
  }
  left(): number {
    return this.buf.length - this.at;
  }
  u32(): number {
    return this.take(4).readUInt32BE(0);
  }
  u64(): bigint {
    return this.take(8).readBigUInt64BE(0);
  }
  bytes(): Buffer {
    return this.take(this.u32());
  }
  string(): string {
    return this.bytes().toString('utf8');
  }
  /** SFTP v3 ATTRS: only the fields present are set. */
  attrs(): Partial<Attributes> {
    const flags = this.u32();
    const a: Partial<Attributes> = {};
    if (flags & ATTR.SIZE) a.size = Number(this.u64());
    if (flags & ATTR.UIDGID) [a.uid, a.gid] = [this.u32(), this.u32()];
    if (flags & ATTR.PERMISSIONS) a.mode = this.u32();
    if (flags & ATTR.ACMODTIME) [a.atime, a.mtime] = [this.u32(), this.u32()];
    if (flags & ATTR.EXTENDED) for (let n = this.u32(); n > 0; n--) (this.bytes(), this.bytes());
    return a;
  }
}

/** Builds an EXTENDED_REPLY body. */
export class Writer {
  private readonly parts: Buffer[] = [];
  u64(v: number | bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(v));
    this.parts.push(b);
    return this;
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    this.parts.push(b);
    return this;
  }
  bytes(v: Buffer): this {
    this.u32(v.length);
    this.parts.push(v);
    return this;
  }
  string(v: string): this {
    return this.bytes(Buffer.from(v, 'utf8'));
  }
  done(): Buffer {
    return Buffer.concat(this.parts);
  }
}

// --- ssh2 internals -------------------------------------------------------------------------------
// ssh2 1.17's SFTP server answers INIT with a fixed VERSION packet and has no method for an
// EXTENDED_REPLY. Both are written here through the same channel state and outgoing queue ssh2's
// own replies use (fields of its SFTP object, reached through ssh/private.ts), so they go out in
// order and within the SSH window.

const FXP_VERSION = 2;
const FXP_EXTENDED_REPLY = 201;

/** Write as much of `buf` as the peer's window allows; returns what is left. */
function writeWhatFits(s: SftpInternals, buf: Buffer): Buffer | undefined {
  let p = 0;
  while (p < buf.length && s.outgoing.window > 0) {
    const n = Math.min(buf.length - p, s.outgoing.window, s.outgoing.packetSize);
    s.outgoing.window -= n;
    s._protocol.channelData(s.outgoing.id, n === buf.length ? buf : buf.subarray(p, p + n));
    p += n;
  }
  return p < buf.length ? buf.subarray(p) : undefined;
}

/** Send the queue once the window opens; ssh2's own queued replies are in it too, in order. */
function drain(s: SftpInternals): void {
  s._chunkcb = undefined;
  while (s._buffer.length > 0) {
    if (s.outgoing.state !== 'open') return void (s._buffer = []);
    const left = writeWhatFits(s, s._buffer[0]!);
    if (left) {
      s._buffer[0] = left;
      s._waitWindow = true;
      s._chunkcb = () => drain(s);
      return;
    }
    s._buffer.shift();
  }
}

function sendPacket(s: SftpInternals, packet: Buffer): void {
  if (s.outgoing.state !== 'open') return; // like ssh2: nothing more goes out on a closing channel
  // Anything queued is waiting for the window, and ssh2 has armed _chunkcb to send it: queue behind it.
  if (s._buffer.length > 0) return void s._buffer.push(packet);
  const left = writeWhatFits(s, packet);
  if (left) {
    s._buffer.push(left);
    s._waitWindow = true;
    s._chunkcb = () => drain(s);
  }
}

/** Whether this ssh2 exposes what advertising and extended replies need; without it, advertise nothing. */
export const canExtend = (sftp: SFTPWrapper): boolean => sftpInternals(sftp) !== undefined;

/** Send an SSH_FXP_EXTENDED_REPLY for request `id`. */
export function sendExtendedReply(sftp: SFTPWrapper, id: number, body: Buffer): void {
  const s = sftpInternals(sftp);
  if (!s) throw new Error('ssh2 internals changed: cannot send EXTENDED_REPLY');
  const packet = Buffer.allocUnsafe(9 + body.length);
  packet.writeUInt32BE(5 + body.length, 0);
  packet[4] = FXP_EXTENDED_REPLY;
  packet.writeUInt32BE(id, 5);
  body.copy(packet, 9);
  sendPacket(s, packet);
}

/**
 * Make the VERSION packet ssh2 sends in answer to INIT list `extensions` (name, version), as
 * OpenSSH's sftp-server does. Call right after accepting the subsystem, before INIT arrives.
 */
export function advertise(sftp: SFTPWrapper, extensions: readonly (readonly [string, string])[]): void {
  const s = sftpInternals(sftp);
  if (!s) return;
  const w = new Writer().u32(3);
  for (const [name, version] of extensions) w.string(name).string(version);
  const body = w.done();
  const hello = Buffer.allocUnsafe(5 + body.length);
  hello.writeUInt32BE(1 + body.length, 0);
  hello[4] = FXP_VERSION;
  body.copy(hello, 5);
  // ssh2 writes its 9-byte VERSION as the channel's first data; swap ours in at that write, then
  // step aside. Only this channel's view of the connection's protocol object is wrapped.
  const real = s._protocol;
  s._protocol = new Proxy(real, {
    get(target, key) {
      if (key === 'channelData') {
        return (id: number, data: Buffer): void => {
          s._protocol = real;
          const extra = hello.length - data.length;
          if (data.length === 9 && data[4] === FXP_VERSION && s.outgoing.window >= extra && hello.length <= s.outgoing.packetSize) {
            s.outgoing.window -= extra; // ssh2 has counted its own 9 bytes already
            return real.channelData(id, hello);
          }
          real.channelData(id, data);
        };
      }
      const v: unknown = Reflect.get(target, key);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
