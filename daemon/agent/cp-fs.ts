// The two filesystems of burrow cp, local and remote (SFTP), behind one interface whose writing
// calls never follow a symbolic link: new files are created exclusively, existing ones opened
// without following, modes and times set through the open handle, and renames replace a link
// rather than write through it. Every error names the path the user sees, given by the caller.

import { constants as fsc, type Stats as LocalStats } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, realpath, rename, stat, symlink, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, posix } from 'node:path';
import type { InputAttributes, SFTPWrapper, Stats as SftpStats } from 'ssh2';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import type { Sftp } from '../ssh/sftp.js';

/** Random access to one open file of a copy. */
export interface Endpoint {
  read(pos: number, len: number): Promise<Buffer>;
  write(pos: number, data: Buffer): Promise<void>;
  /** Mode and times through the handle, never through a path. */
  setAttrs(a: Attrs): Promise<void>;
  close(): Promise<void>;
}

export interface Attrs {
  mode: number;
  /** Seconds; both or neither. */
  atime?: number;
  mtime?: number;
}

export type Kind = 'file' | 'dir' | 'link' | 'other';
export interface Meta {
  kind: Kind;
  size: number;
  mode: number;
  uid: number;
  atime: number;
  mtime: number;
}

/** Entries one directory listing may hold: a server cannot make the copy keep a list without end. */
export const MAX_DIR_ENTRIES = 1_000_000;

/** One side of a copy. Paths are that side's own; `show` is how a message names one. */
export interface Tree {
  show(p: string): string;
  join(dir: string, name: string): string;
  dirname(p: string): string;
  basename(p: string): string;
  /** lstat (follow false) or stat; null when nothing is there. */
  meta(p: string, follow: boolean): Promise<Meta | null>;
  list(dir: string): Promise<string[]>;
  /** The uid this side's files are written as (this user's, or the serving user's on the host). */
  ownUid(): Promise<number>;
  /** What identifies directory `p` (followed), to find a loop of links under -L. */
  dirId(p: string): Promise<string>;
  readlink(p: string): Promise<string>;
  realpath(p: string): Promise<string>;
  openRead(p: string): Promise<Endpoint>;
  /** Create a new file; fails if anything, a dangling link included, is at `p`. */
  createExclusive(p: string, shown: string): Promise<Endpoint>;
  /** Open an existing regular file for update; null when `p` is not one (a link is not). */
  openExisting(p: string): Promise<{ file: Endpoint; size: number } | null>;
  mkdir(p: string, mode: number): Promise<void>;
  symlink(target: string, p: string, shown: string): Promise<void>;
  /** Rename within a directory, replacing a file or link at `to` (never a directory). */
  rename(from: string, to: string, shown: string): Promise<void>;
  /** Remove a file or link (not a directory). */
  remove(p: string): Promise<void>;
  /** Mode and times of a directory this copy verified with lstat. */
  setDirAttrs(p: string, a: Attrs): Promise<void>;
}

const SFTP_EOF = 1;
const SFTP_NO_SUCH_FILE = 2;
const SFTP_PERMISSION_DENIED = 3;

function sftpError(err: unknown, shown: string): BurrowError {
  if (err instanceof BurrowError) return err;
  const code = (err as { code?: number }).code;
  if (code === SFTP_NO_SUCH_FILE) return new BurrowError(ErrorCodes.NotFound, `${shown}: no such file or directory`);
  if (code === SFTP_PERMISSION_DENIED) return new BurrowError(ErrorCodes.IoError, `${shown}: permission denied`);
  return new BurrowError(ErrorCodes.IoError, `${shown}: ${(err as Error).message}`);
}

const LOCAL_MESSAGES: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EEXIST: 'already exists',
  EISDIR: 'is a directory',
  ENOTDIR: 'not a directory',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EROFS: 'read-only file system',
  ENAMETOOLONG: 'file name too long',
  ELOOP: 'is a symbolic link',
};

function localError(err: unknown, shown: string): BurrowError {
  if (err instanceof BurrowError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new BurrowError(ErrorCodes.NotFound, `${shown}: ${LOCAL_MESSAGES[code]}`);
  return new BurrowError(ErrorCodes.IoError, `${shown}: ${(code && LOCAL_MESSAGES[code]) ?? code ?? (err as Error).message}`);
}

const isNotFound = (err: unknown): boolean => err instanceof BurrowError && err.code === ErrorCodes.NotFound;

function kindOf(s: { isFile(): boolean; isDirectory(): boolean; isSymbolicLink(): boolean }): Kind {
  return s.isSymbolicLink() ? 'link' : s.isDirectory() ? 'dir' : s.isFile() ? 'file' : 'other';
}

// --- local ---

function localMeta(s: LocalStats): Meta {
  return { kind: kindOf(s), size: s.size, mode: s.mode, uid: s.uid, atime: s.atimeMs / 1000, mtime: s.mtimeMs / 1000 };
}

function localEndpoint(fh: FileHandle): Endpoint {
  return {
    read: async (pos, len) => {
      const buf = Buffer.allocUnsafe(len);
      const { bytesRead } = await fh.read(buf, 0, len, pos);
      return buf.subarray(0, bytesRead);
    },
    write: async (pos, data) => {
      for (let done = 0; done < data.length; ) done += (await fh.write(data, done, data.length - done, pos + done)).bytesWritten;
    },
    setAttrs: async (a) => {
      await fh.chmod(a.mode);
      if (a.atime !== undefined && a.mtime !== undefined) await fh.utimes(a.atime, a.mtime);
    },
    close: () => fh.close(),
  };
}

export class LocalTree implements Tree {
  show = (p: string): string => p;
  join = join;
  dirname = dirname;
  basename = basename;

  async meta(p: string, follow: boolean): Promise<Meta | null> {
    try {
      return localMeta(follow ? await stat(p) : await lstat(p));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw localError(err, p);
    }
  }
  list = (dir: string): Promise<string[]> => readdir(dir).catch((err: unknown) => Promise.reject(localError(err, dir)));
  ownUid = (): Promise<number> => Promise.resolve(process.getuid?.() ?? 0);
  dirId = (p: string): Promise<string> =>
    stat(p).then(
      (st) => `${st.dev}:${st.ino}`,
      (err: unknown) => Promise.reject(localError(err, p)),
    );
  readlink = (p: string): Promise<string> => readlink(p).catch((err: unknown) => Promise.reject(localError(err, p)));
  realpath = (p: string): Promise<string> => realpath(p).catch((err: unknown) => Promise.reject(localError(err, p)));

  async openRead(p: string): Promise<Endpoint> {
    try {
      return localEndpoint(await open(p, fsc.O_RDONLY));
    } catch (err) {
      throw localError(err, p);
    }
  }
  async createExclusive(p: string, shown: string): Promise<Endpoint> {
    try {
      return localEndpoint(await open(p, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600));
    } catch (err) {
      throw localError(err, shown);
    }
  }
  async openExisting(p: string): Promise<{ file: Endpoint; size: number } | null> {
    let fh: FileHandle;
    try {
      fh = await open(p, fsc.O_RDWR | fsc.O_NOFOLLOW);
    } catch {
      return null;
    }
    // A hard link could reach a file elsewhere: only a plain file of one name, this user's, is updated.
    const st = await fh.stat();
    if (!st.isFile() || st.nlink !== 1 || st.uid !== (await this.ownUid())) {
      await fh.close();
      return null;
    }
    return { file: localEndpoint(fh), size: st.size };
  }
  mkdir = (p: string, mode: number): Promise<void> => mkdir(p, { mode }).catch((err: unknown) => Promise.reject(localError(err, p)));
  symlink = (target: string, p: string, shown: string): Promise<void> => symlink(target, p).catch((err: unknown) => Promise.reject(localError(err, shown)));
  rename = (from: string, to: string, shown: string): Promise<void> => rename(from, to).catch((err: unknown) => Promise.reject(localError(err, shown)));
  remove = (p: string): Promise<void> => unlink(p).catch((err: unknown) => Promise.reject(localError(err, p)));
  async setDirAttrs(p: string, a: Attrs): Promise<void> {
    let fh: FileHandle;
    try {
      fh = await open(p, fsc.O_RDONLY | fsc.O_DIRECTORY | fsc.O_NOFOLLOW);
    } catch (err) {
      throw localError(err, p);
    }
    try {
      await localEndpoint(fh).setAttrs(a);
    } catch (err) {
      throw localError(err, p);
    } finally {
      await fh.close();
    }
  }
}

// --- remote, over SFTP ---

function remoteMeta(s: SftpStats): Meta {
  return { kind: kindOf(s), size: s.size, mode: s.mode, uid: s.uid, atime: s.atime, mtime: s.mtime };
}

export class RemoteTree implements Tree {
  constructor(
    private readonly sftp: Sftp,
    /** The target as the user wrote it, for messages: `box:/path`. */
    private readonly label: string,
  ) {}
  private get s(): SFTPWrapper {
    return this.sftp.s;
  }
  show = (p: string): string => `${this.label}:${p}`;
  join = (dir: string, name: string): string => posix.join(dir, name);
  dirname = posix.dirname;
  basename = posix.basename;

  private async do<T>(shown: string, fn: (cb: (err: Error | null | undefined, v: T) => void) => void): Promise<T> {
    try {
      return await this.sftp.call(fn);
    } catch (err) {
      throw sftpError(err, shown);
    }
  }
  private done = (cb: (err: Error | null | undefined, v: undefined) => void) => (err?: Error | null): void => cb(err, undefined);

  async meta(p: string, follow: boolean): Promise<Meta | null> {
    try {
      return remoteMeta(await this.do<SftpStats>(this.show(p), (cb) => (follow ? this.s.stat(p, cb) : this.s.lstat(p, cb))));
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }
  /** Read by handle, batch by batch, so that a listing over MAX_DIR_ENTRIES is refused as it grows. */
  async list(dir: string): Promise<string[]> {
    const shown = this.show(dir);
    const handle = await this.do<Buffer>(shown, (cb) => this.s.opendir(dir, cb));
    const names: string[] = [];
    try {
      for (;;) {
        const batch = await this.sftp
          .call<{ filename: string }[] | false>((cb) =>
            this.s.readdir(handle, (err, list) => {
              if (err && (err as { code?: number }).code === SFTP_EOF) return cb(undefined, false);
              cb(err, list);
            }),
          )
          .catch((err: unknown) => Promise.reject(sftpError(err, shown)));
        if (!batch) return names;
        for (const e of batch) names.push(e.filename);
        if (names.length > MAX_DIR_ENTRIES) throw new BurrowError(ErrorCodes.IoError, `${shown}: lists more than ${MAX_DIR_ENTRIES} entries; not copying it`);
      }
    } finally {
      await this.sftp.call<undefined>((cb) => this.s.close(handle, this.done(cb))).catch(() => undefined);
    }
  }
  private own: Promise<number> | undefined;
  /** The serving user's uid, taken from the home directory SFTP starts in. */
  ownUid = (): Promise<number> => (this.own ??= this.do<SftpStats>(this.show('~'), (cb) => this.s.stat('.', cb)).then((st) => st.uid));
  // SFTP v3 has no device and inode numbers: the server's canonical path stands in.
  dirId = (p: string): Promise<string> => this.realpath(p);
  readlink = (p: string): Promise<string> => this.do(this.show(p), (cb) => this.s.readlink(p, cb));
  realpath = (p: string): Promise<string> => this.do(this.show(p), (cb) => this.s.realpath(p, cb));

  private async openHandle(p: string, flags: string, mode: number | undefined, shown: string): Promise<Endpoint & { handle: Buffer }> {
    const handle = await this.do<Buffer>(shown, (cb) => this.s.open(p, flags as 'r', mode !== undefined ? { mode } : {}, cb));
    return {
      handle,
      read: (pos, len) =>
        this.sftp
          .call<Buffer>((cb) =>
            this.s.read(handle, Buffer.allocUnsafe(len), 0, len, pos, (err, n, buf) => {
              // Reading at or past the end is an EOF status, not a failure.
              if (err && (err as { code?: number }).code === SFTP_EOF) return cb(undefined, Buffer.alloc(0));
              cb(err, err ? Buffer.alloc(0) : buf.subarray(0, n));
            }),
          )
          .catch((err: unknown) => Promise.reject(sftpError(err, shown))),
      write: (pos, data) => this.do(shown, (cb) => this.s.write(handle, data, 0, data.length, pos, this.done(cb))),
      setAttrs: (a) => this.do(shown, (cb) => this.s.fsetstat(handle, attrsOf(a), this.done(cb))),
      close: () => this.do(shown, (cb) => this.s.close(handle, this.done(cb))),
    };
  }
  openRead = (p: string): Promise<Endpoint> => this.openHandle(p, 'r', undefined, this.show(p));
  // WRITE|CREAT|EXCL: the server's open(2) gets O_CREAT|O_EXCL, which no planted link survives.
  createExclusive = (p: string, shown: string): Promise<Endpoint> => this.openHandle(p, 'wx', 0o600, shown);
  async openExisting(p: string): Promise<{ file: Endpoint; size: number } | null> {
    // SFTP has no O_NOFOLLOW: lstat, open, then check the handle is the regular file seen.
    const before = await this.meta(p, false);
    if (before?.kind !== 'file') return null;
    let file: Endpoint & { handle: Buffer };
    try {
      file = await this.openHandle(p, 'r+', undefined, this.show(p));
    } catch (err) {
      if (err instanceof BurrowError && err.code === ErrorCodes.Disconnected) throw err;
      return null;
    }
    const h = await this.do<SftpStats>(this.show(p), (cb) => this.s.fstat(file.handle, cb));
    if (!h.isFile() || h.size !== before.size || h.mtime !== before.mtime || h.uid !== (await this.ownUid())) {
      await file.close();
      return null;
    }
    return { file, size: h.size };
  }
  mkdir = (p: string, mode: number): Promise<void> => this.do(this.show(p), (cb) => this.s.mkdir(p, { mode }, this.done(cb)));
  symlink = (target: string, p: string, shown: string): Promise<void> => this.do(shown, (cb) => this.s.symlink(target, p, this.done(cb)));
  async rename(from: string, to: string, shown: string): Promise<void> {
    // posix-rename replaces the target atomically; plain SFTP rename may refuse an existing one.
    try {
      await this.sftp.call<undefined>((cb) => this.s.ext_openssh_rename(from, to, this.done(cb)));
      return;
    } catch (err) {
      if (err instanceof BurrowError) throw err; // the connection is gone
    }
    const there = await this.meta(to, false);
    if (there?.kind === 'dir') throw new BurrowError(ErrorCodes.IoError, `${shown}: is a directory`);
    if (there) await this.remove(to);
    await this.do(shown, (cb) => this.s.rename(from, to, this.done(cb)));
  }
  remove = (p: string): Promise<void> => this.do(this.show(p), (cb) => this.s.unlink(p, this.done(cb)));
  /** lsetstat@openssh.com never follows a link; without it, setstat only after lstat finds a directory. */
  async setDirAttrs(p: string, a: Attrs): Promise<void> {
    const shown = this.show(p);
    try {
      await this.sftp.call<undefined>((cb) => this.s.ext_openssh_lsetstat(p, attrsOf(a), this.done(cb)));
      return;
    } catch (err) {
      if (err instanceof BurrowError) throw err; // the connection is gone
      // ssh2 throws before sending when the server lacks the extension; a server's status is final.
      if (typeof (err as { code?: unknown }).code === 'number') throw sftpError(err, shown);
    }
    if ((await this.meta(p, false))?.kind !== 'dir') throw new BurrowError(ErrorCodes.IoError, `${shown}: no longer a directory; not setting its mode or times`);
    await this.do(shown, (cb) => this.s.setstat(p, attrsOf(a), this.done(cb)));
  }
}

function attrsOf(a: Attrs): InputAttributes {
  return { mode: a.mode, ...(a.atime !== undefined && a.mtime !== undefined ? { atime: a.atime, mtime: a.mtime } : {}) };
}
