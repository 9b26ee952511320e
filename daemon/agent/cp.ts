// burrow cp: files and trees between this machine and TARGET over the pooled connection's SFTP
// channel. The daemon runs as the CLI's user (the socket is private), so it does the local file
// I/O itself and streams progress frames to the CLI.
//
// Each file goes to a ".NAME.burrow-part" beside its destination and is renamed into place on
// success. Reads run ahead of writes; writes are issued in order and at most WINDOW are in
// flight, each issued only after the oldest completed, so an interrupted transfer can only have
// holes in its last WINDOW chunks: --resume rewinds by that much, checks samples of the prefix
// against the source, and continues (or starts over when they differ).

import { constants as fsc } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, readlink, rename, stat, symlink, utimes, type FileHandle } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, posix } from 'node:path';
import type { InputAttributes, SFTPWrapper, Stats } from 'ssh2';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import type { FrameOf } from '../../shared/ipc/frames.js';
import { parseCopySpec } from '../../shared/target.js';
import type { IpcSession } from '../ipc/server.js';
import type { AgentContext } from './ops.js';
import { resolveTarget } from './resolve.js';
import { bulkLane } from './pool.js';

// ssh2 caps one SFTP READ/WRITE at 34000 - 2048 bytes unless the server is OpenSSH, and splits a
// larger one into requests sent one after the other's reply: a 32 KiB chunk to burrow's own host
// cost two round trips. 31 KiB is one request, and with its header one 32 KiB SSH packet.
const CHUNK = 31 * 1024;
const WINDOW = 32; // chunks in flight: ~1 MiB
// How far --resume rewinds: holes lie within the last WINDOW chunks, and part files left by
// earlier versions were written in 32 KiB chunks.
const REWIND = WINDOW * 32 * 1024;
const SAMPLE = 64 * 1024;
const PROGRESS_MS = 200;

/** Random access to one side of a copy. */
interface Endpoint {
  read(pos: number, len: number): Promise<Buffer>;
  write(pos: number, data: Buffer): Promise<void>;
  close(): Promise<void>;
}

interface Options {
  recursive: boolean;
  preserve: boolean;
  resume: boolean;
  follow: boolean;
}

const SFTP_EOF = 1;
const SFTP_NO_SUCH_FILE = 2;
const SFTP_PERMISSION_DENIED = 3;

function sftpError(err: unknown, what: string): BurrowError {
  if (err instanceof BurrowError) return err;
  const code = (err as { code?: number }).code;
  const msg = (err as Error).message;
  if (code === SFTP_NO_SUCH_FILE) return new BurrowError(ErrorCodes.NotFound, `${what}: no such file or directory`);
  if (code === SFTP_PERMISSION_DENIED) return new BurrowError(ErrorCodes.IoError, `${what}: permission denied`);
  return new BurrowError(ErrorCodes.IoError, `${what}: ${msg}`);
}

function localError(err: unknown, what: string): BurrowError {
  if (err instanceof BurrowError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new BurrowError(ErrorCodes.NotFound, `${what}: no such file or directory`);
  return new BurrowError(ErrorCodes.IoError, `${what}: ${code ?? (err as Error).message}`);
}

/** A name from a remote listing, made safe to join: "." and ".." are skipped, a "/" is refused. */
export function safeRemoteName(name: string): string | null {
  if (name === '.' || name === '..') return null;
  if (name === '' || name.includes('/') || name.includes('\0')) {
    throw new BurrowError(ErrorCodes.IoError, `refusing remote file name ${JSON.stringify(name)}: it is not a plain name`);
  }
  return name;
}

/** ssh2's SFTP calls as promises. */
class Sftp {
  constructor(
    private readonly s: SFTPWrapper,
    private readonly label: string,
  ) {}
  private call<T>(what: string, fn: (cb: (err: Error | null | undefined, v: T) => void) => void): Promise<T> {
    return new Promise((resolve, reject) => fn((err, v) => (err ? reject(sftpError(err, `${this.label}:${what}`)) : resolve(v))));
  }
  stat = (p: string): Promise<Stats> => this.call(p, (cb) => this.s.stat(p, cb));
  lstat = (p: string): Promise<Stats> => this.call(p, (cb) => this.s.lstat(p, cb));
  async exists(p: string): Promise<Stats | null> {
    try {
      return await this.stat(p);
    } catch (err) {
      if (err instanceof BurrowError && err.code === ErrorCodes.NotFound) return null;
      throw err;
    }
  }
  readdir = (p: string): Promise<{ filename: string; attrs: Stats }[]> => this.call(p, (cb) => this.s.readdir(p, cb as never));
  mkdir = (p: string, attrs: InputAttributes): Promise<void> => this.call(p, (cb) => this.s.mkdir(p, attrs, (e) => cb(e, undefined)));
  readlink = (p: string): Promise<string> => this.call(p, (cb) => this.s.readlink(p, cb));
  symlink = (target: string, p: string): Promise<void> => this.call(p, (cb) => this.s.symlink(target, p, (e) => cb(e, undefined)));
  setstat = (p: string, attrs: InputAttributes): Promise<void> => this.call(p, (cb) => this.s.setstat(p, attrs, (e) => cb(e, undefined)));
  unlink = (p: string): Promise<void> => this.call(p, (cb) => this.s.unlink(p, (e) => cb(e, undefined)));
  async renameOver(from: string, to: string): Promise<void> {
    // posix-rename replaces the target atomically; plain SFTP rename refuses an existing target.
    try {
      await this.call(to, (cb) => this.s.ext_openssh_rename(from, to, (e) => cb(e, undefined)));
      return;
    } catch {
      // no extension: remove, then rename
    }
    if (await this.exists(to)) await this.unlink(to);
    await this.call(to, (cb) => this.s.rename(from, to, (e) => cb(e, undefined)));
  }
  async openFile(p: string, flags: 'r' | 'w' | 'r+', mode?: number): Promise<Endpoint> {
    const handle = await this.call<Buffer>(p, (cb) => this.s.open(p, flags, mode !== undefined ? { mode } : {}, cb));
    return {
      read: (pos, len) =>
        new Promise<Buffer>((resolve, reject) =>
          this.s.read(handle, Buffer.allocUnsafe(len), 0, len, pos, (err, n, buf) => {
            // Reading at or past the end is an EOF status, not a failure.
            if (err && (err as { code?: number }).code === SFTP_EOF) return resolve(Buffer.alloc(0));
            if (err) return reject(sftpError(err, `${this.label}:${p}`));
            resolve(buf.subarray(0, n));
          }),
        ),
      write: (pos, data) => this.call(p, (cb) => this.s.write(handle, data, 0, data.length, pos, (e) => cb(e, undefined))),
      close: () => this.call(p, (cb) => this.s.close(handle, (e) => cb(e, undefined))),
    };
  }
}

async function localFile(p: string, flags: number, mode = 0o666): Promise<Endpoint> {
  let fh: FileHandle;
  try {
    fh = await open(p, flags, mode);
  } catch (err) {
    throw localError(err, p);
  }
  return {
    read: async (pos, len) => {
      const buf = Buffer.allocUnsafe(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      return buf.subarray(0, bytesRead);
    },
    write: async (pos, data) => {
      await fh.write(data, 0, data.length, pos);
    },
    close: () => fh.close(),
  };
}

async function readFull(e: Endpoint, pos: number, len: number, what: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let got = 0;
  while (got < len) {
    const b = await e.read(pos + got, len - got);
    if (b.length === 0) throw new BurrowError(ErrorCodes.IoError, `${what} ended early (it changed during the copy?)`);
    parts.push(b);
    got += b.length;
  }
  return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, len);
}

/** Copy [start, size) from src to dst: reads run ahead, writes go in order through a FIFO window. */
async function pump(src: Endpoint, dst: Endpoint, start: number, size: number, what: string, onBytes: (n: number) => void): Promise<void> {
  const reads: { pos: number; data: Promise<Buffer> }[] = [];
  const writes: Promise<void>[] = [];
  let next = start;
  const fill = (): void => {
    while (reads.length < WINDOW && next < size) {
      const len = Math.min(CHUNK, size - next);
      const data = readFull(src, next, len, what);
      data.catch(() => undefined); // awaited below, in order
      reads.push({ pos: next, data });
      next += len;
    }
  };
  fill();
  try {
    while (reads.length > 0) {
      const r = reads.shift()!;
      const data = await r.data;
      writes.push(dst.write(r.pos, data).then(() => onBytes(data.length)));
      if (writes.length >= WINDOW) await writes.shift();
      fill();
    }
    await Promise.all(writes);
  } catch (err) {
    await Promise.allSettled([...writes, ...reads.map((r) => r.data)]);
    throw err;
  }
}

/** Where to resume a part file of `partSize` bytes, or 0 when its prefix does not match the source. */
async function resumePoint(src: Endpoint, part: Endpoint, partSize: number, srcSize: number): Promise<number> {
  const start = Math.max(0, Math.min(partSize, srcSize) - REWIND);
  if (start === 0) return 0;
  for (const at of [0, Math.max(0, start - SAMPLE)]) {
    const len = Math.min(SAMPLE, start - at);
    const [a, b] = await Promise.all([readFull(src, at, len, 'source'), readFull(part, at, len, 'partial file')]);
    if (!a.equals(b)) return 0;
  }
  return start;
}

class Copier {
  private files = 0;
  private totalBytes = 0;
  private lastProgress = 0;
  private restarted = 0;
  private resumed = 0;

  constructor(
    private readonly sftp: Sftp,
    private readonly session: IpcSession,
    private readonly opts: Options,
  ) {}

  private progress(path: string, bytes: number, size: number, force = false): void {
    const now = Date.now();
    if (!force && now - this.lastProgress < PROGRESS_MS) return;
    this.lastProgress = now;
    // Progress is lossy: when the client is slow to read, a frame is simply not sent.
    if (!this.session.closed) this.session.send({ t: 'progress', path, bytes, size, files: this.files, totalBytes: this.totalBytes });
  }

  private async transfer(src: Endpoint, openPart: (fresh: boolean) => Promise<Endpoint>, partSize: number | null, size: number, label: string): Promise<void> {
    let start = 0;
    let part: Endpoint;
    if (this.opts.resume && partSize !== null && partSize > 0) {
      part = await openPart(false);
      start = await resumePoint(src, part, partSize, size);
      if (start === 0) {
        this.restarted++;
        await part.close();
        part = await openPart(true);
      }
    } else part = await openPart(true);
    let done = start;
    this.totalBytes += start;
    this.resumed += start;
    try {
      await pump(src, part, start, size, label, (n) => {
        done += n;
        this.totalBytes += n;
        this.progress(label, done, size);
      });
    } finally {
      await Promise.allSettled([src.close(), part.close()]);
    }
    this.files++;
    this.progress(label, size, size, true);
  }

  async download(remote: string, local: string, top: boolean): Promise<void> {
    const st = top || this.opts.follow ? await this.sftp.stat(remote) : await this.sftp.lstat(remote);
    if (st.isSymbolicLink()) {
      await symlink(await this.sftp.readlink(remote), local).catch((err: unknown) => {
        throw localError(err, local);
      });
      return;
    }
    if (st.isDirectory()) {
      if (!this.opts.recursive) throw new BurrowError(ErrorCodes.BadArgument, `${remote} is a directory (use -r)`);
      await mkdir(local, { recursive: true, mode: st.mode & 0o7777 }).catch((err: unknown) => {
        throw localError(err, local);
      });
      for (const e of await this.sftp.readdir(remote)) {
        const name = safeRemoteName(e.filename);
        if (name !== null) await this.download(posix.join(remote, name), join(local, name), false);
      }
      if (this.opts.preserve) await this.preserveLocal(local, st);
      return;
    }
    const part = join(dirname(local), `.${basename(local)}.burrow-part`);
    const partSize = await stat(part).then(
      (s) => s.size,
      () => null,
    );
    const src = await this.sftp.openFile(remote, 'r');
    await this.transfer(src, (fresh) => localFile(part, fresh ? fsc.O_WRONLY | fsc.O_CREAT | fsc.O_TRUNC : fsc.O_RDWR, 0o600), partSize, st.size, remote);
    await rename(part, local).catch((err: unknown) => {
      throw localError(err, local);
    });
    // A new file gets the remote's permission bits (umask-like: never more than rwx for others' read).
    await chmod(local, this.opts.preserve ? st.mode & 0o7777 : st.mode & 0o755);
    if (this.opts.preserve) await this.preserveLocal(local, st);
  }

  private async preserveLocal(local: string, st: Stats): Promise<void> {
    await chmod(local, st.mode & 0o7777);
    await utimes(local, st.atime, st.mtime);
  }

  async upload(local: string, remote: string, top: boolean): Promise<void> {
    let st;
    try {
      st = top || this.opts.follow ? await stat(local) : await lstat(local);
    } catch (err) {
      throw localError(err, local);
    }
    if (st.isSymbolicLink()) {
      await this.sftp.symlink(await readlink(local), remote);
      return;
    }
    if (st.isDirectory()) {
      if (!this.opts.recursive) throw new BurrowError(ErrorCodes.BadArgument, `${local} is a directory (use -r)`);
      const there = await this.sftp.exists(remote);
      if (!there) await this.sftp.mkdir(remote, { mode: st.mode & 0o7777 });
      else if (!there.isDirectory()) throw new BurrowError(ErrorCodes.IoError, `${remote} exists and is not a directory`);
      for (const name of await readdir(local)) await this.upload(join(local, name), posix.join(remote, name), false);
      if (this.opts.preserve) await this.sftp.setstat(remote, { mode: st.mode & 0o7777, atime: st.atimeMs / 1000, mtime: st.mtimeMs / 1000 });
      return;
    }
    const part = posix.join(posix.dirname(remote), `.${posix.basename(remote)}.burrow-part`);
    const partSize = this.opts.resume ? ((await this.sftp.exists(part))?.size ?? null) : null;
    const src = await localFile(local, fsc.O_RDONLY);
    await this.transfer(src, (fresh) => this.sftp.openFile(part, fresh ? 'w' : 'r+', 0o600), partSize, st.size, local);
    await this.sftp.renameOver(part, remote);
    await this.sftp.setstat(remote, this.opts.preserve ? { mode: st.mode & 0o7777, atime: st.atimeMs / 1000, mtime: st.mtimeMs / 1000 } : { mode: st.mode & 0o755 });
  }

  summary(seconds: number): Record<string, unknown> {
    return { files: this.files, bytes: this.totalBytes, seconds, resumedBytes: this.resumed, restarted: this.restarted };
  }
}

export async function runCopy(ctx: AgentContext, req: FrameOf<'cp'>, session: IpcSession): Promise<void> {
  const src = parseCopySpec(req.src);
  const dst = parseCopySpec(req.dst);
  if (src.kind === dst.kind) throw new BurrowError(ErrorCodes.BadArgument, 'one side of cp must be TARGET:path and the other a local path');
  const local = src.kind === 'local' ? src : (dst as { kind: 'local'; path: string });
  const remote = src.kind === 'remote' ? src : (dst as { kind: 'remote'; target: string; path: string });
  if (!isAbsolute(local.path)) throw new BurrowError(ErrorCodes.BadArgument, `local path ${local.path} must be absolute (the CLI makes it so)`);
  const opts: Options = { recursive: req.recursive ?? false, preserve: req.preserve ?? false, resume: req.resume ?? false, follow: req.follow ?? false };
  const target = await resolveTarget(remote.target, ctx.state, ctx.defaultUser);
  const conn = await ctx.pool.get(bulkLane(target));
  const opened = await ctx.pool.openSftp(conn);
  const sftp = new Sftp(opened.sftp, remote.target);
  const copier = new Copier(sftp, session, opts);
  const began = Date.now();
  session.onClose(() => opened.sftp.end()); // the CLI went away: stop
  try {
    const remotePath = remote.path === '' ? '.' : remote.path;
    if (src.kind === 'remote') {
      // Into an existing local directory, the file keeps its name.
      const into = await stat(local.path).then(
        (s) => s.isDirectory(),
        () => false,
      );
      await copier.download(remotePath, into ? join(local.path, posix.basename(remotePath)) : local.path, true);
    } else {
      const there = await sftp.exists(remotePath);
      await copier.upload(local.path, there?.isDirectory() ? posix.join(remotePath, basename(local.path)) : remotePath, true);
    }
  } finally {
    opened.sftp.end();
  }
  const summary = copier.summary((Date.now() - began) / 1000);
  ctx.log.info({ event: 'cp_done', target: target.label, direction: src.kind === 'remote' ? 'download' : 'upload', ...summary }, 'copy done');
  session.end({ t: 'result', value: summary });
}
