// The SFTP subsystem of the built-in host: serves the real filesystem, as the user the daemon runs
// as, over one ssh2 SFTP channel. Relative paths resolve against the user's home, as with OpenSSH.

import { constants as fsc, promises as fsp, writeSync, type Dir, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { posix as path } from 'node:path';
import ssh2 from 'ssh2';
import type { Attributes, FileEntry, SFTPWrapper } from 'ssh2';
import type { Logger } from '../log.js';
import { sftpExitAndEof } from '../ssh/private.js';
import { EXTENSIONS, extended, loadIdNames, type ExtSession, type IdNames } from './sftp-ext.js';
import { MAX_READ, SftpStatus, advertise, bareName, canExtend, eof, errorReply, ok, sendExtendedReply, type Reply } from './sftp-proto.js';

export interface SftpContext {
  /** Where relative paths (and ".") resolve: the serving user's home. */
  home: string;
  /** Who is on the other end, for the log. */
  remote: string;
  log: Logger;
}

const { STATUS_CODE, OPEN_MODE } = ssh2.utils.sftp;

const READDIR_BATCH = 100;
// A write into the page cache takes microseconds; one that blocks longer than this means a slow or
// throttled disk, and from then on the session's writes go through the thread pool.
const SLOW_WRITE_MS = 20;

interface OpenFile {
  kind: 'file';
  path: string;
  fh: FileHandle;
  /** A regular file, which a write never blocks on for long (a FIFO or a device might). */
  regular: boolean;
}
interface OpenDir {
  kind: 'dir';
  path: string;
  dir: Dir;
  dotsSent: boolean;
}
type Open = OpenFile | OpenDir;

function toAttrs(st: Stats): Attributes {
  return { mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, atime: Math.floor(st.atimeMs / 1000), mtime: Math.floor(st.mtimeMs / 1000) };
}

/** SFTP pflags to open(2) flags. */
function openFlags(pflags: number): number {
  const rw = pflags & (OPEN_MODE.READ | OPEN_MODE.WRITE);
  let f = rw === (OPEN_MODE.READ | OPEN_MODE.WRITE) ? fsc.O_RDWR : rw === OPEN_MODE.WRITE ? fsc.O_WRONLY : fsc.O_RDONLY;
  if (pflags & OPEN_MODE.APPEND) f |= fsc.O_APPEND;
  if (pflags & OPEN_MODE.CREAT) f |= fsc.O_CREAT;
  if (pflags & OPEN_MODE.TRUNC) f |= fsc.O_TRUNC;
  if (pflags & OPEN_MODE.EXCL) f |= fsc.O_EXCL;
  return f;
}

/** What SETSTAT/FSETSTAT act on: a path, or an open FileHandle (which has the same methods). */
interface AttrTarget {
  truncate(len: number): Promise<void>;
  chmod(mode: number): Promise<void>;
  chown(uid: number, gid: number): Promise<void>;
  utimes(atime: number, mtime: number): Promise<void>;
}
const pathTarget = (p: string): AttrTarget => ({
  truncate: (n) => fsp.truncate(p, n),
  chmod: (m) => fsp.chmod(p, m),
  chown: (u, g) => fsp.chown(p, u, g),
  utimes: (a, m) => fsp.utimes(p, a, m),
});

// In OpenSSH's order: size, permissions, times, owner.
async function applyAttrs(t: AttrTarget, a: Partial<Attributes>): Promise<void> {
  if (a.size !== undefined) await t.truncate(a.size);
  if (a.mode !== undefined) await t.chmod(a.mode & 0o7777);
  if (a.atime !== undefined && a.mtime !== undefined) await t.utimes(a.atime, a.mtime);
  if (a.uid !== undefined && a.gid !== undefined) await t.chown(a.uid, a.gid);
}

// --- ls -l style longname, as OpenSSH's sftp-server writes it ---

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const HALF_YEAR_MS = (365 * 24 * 60 * 60 * 1000) / 2;
const TYPE_CHAR = new Map([
  [fsc.S_IFREG, '-'],
  [fsc.S_IFDIR, 'd'],
  [fsc.S_IFLNK, 'l'],
  [fsc.S_IFCHR, 'c'],
  [fsc.S_IFBLK, 'b'],
  [fsc.S_IFIFO, 'p'],
  [fsc.S_IFSOCK, 's'],
]);

function modeString(m: number): string {
  const b = (bit: number, c: string): string => (m & bit ? c : '-');
  const x = (bit: number, special: number, set: string): string => (m & special ? (m & bit ? set : set.toUpperCase()) : b(bit, 'x'));
  return (
    (TYPE_CHAR.get(m & fsc.S_IFMT) ?? '?') +
    b(0o400, 'r') + b(0o200, 'w') + x(0o100, 0o4000, 's') +
    b(0o40, 'r') + b(0o20, 'w') + x(0o10, 0o2000, 's') +
    b(0o4, 'r') + b(0o2, 'w') + x(0o1, 0o1000, 't')
  );
}

function lsDate(mtimeMs: number): string {
  const d = new Date(mtimeMs);
  const head = `${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2)}`;
  if (Date.now() - mtimeMs < HALF_YEAR_MS) return `${head} ${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  return `${head}  ${d.getFullYear()}`;
}

function longname(name: string, st: Stats, ids: IdNames): string {
  const user = ids.users.get(st.uid) ?? String(st.uid);
  const group = ids.groups.get(st.gid) ?? String(st.gid);
  // strmode(3) leaves a trailing space after the mode, hence two spaces.
  return `${modeString(st.mode)}  ${String(st.nlink).padStart(3)} ${user.padEnd(8)} ${group.padEnd(8)} ${String(st.size).padStart(8)} ${lsDate(st.mtimeMs)} ${name}`;
}

/** Serve one SFTP session until the channel closes; closes every open handle then. */
export function serveSftp(sftp: SFTPWrapper, ctx: SftpContext): void {
  const { log, remote } = ctx;
  const open = new Map<number, Open>();
  let nextHandle = 0;
  let ended = false;
  let inflight = 0;
  let onIdle: (() => void) | undefined;
  let opened = 0;
  let bytesRead = 0;
  let bytesWritten = 0;
  let writeInPool = false;
  let idNames: Promise<IdNames> | undefined;

  const resolve = (p: string): string => path.resolve(ctx.home, p);

  // Clients send only the extensions the VERSION hello lists, so without ssh2's internals none are.
  if (canExtend(sftp)) advertise(sftp, EXTENSIONS);
  else log.warn({ event: 'sftp_no_extensions', remote }, 'sftp extensions not advertised: ssh2 internals changed');

  const register = async (o: Open): Promise<Reply> => {
    if (ended) {
      // The channel closed while this open was in flight: nobody can ever close it.
      await close(o);
      throw new SftpStatus(STATUS_CODE.FAILURE, 'session closed');
    }
    const id = nextHandle;
    nextHandle = (nextHandle + 1) >>> 0;
    open.set(id, o);
    const handle = Buffer.alloc(4);
    handle.writeUInt32BE(id);
    return { kind: 'handle', handle };
  };

  const find = (handle: Buffer): Open | undefined => (handle.length === 4 ? open.get(handle.readUInt32BE(0)) : undefined);
  const lookup = (handle: Buffer): Open => {
    const o = find(handle);
    if (!o) throw new SftpStatus(STATUS_CODE.FAILURE, 'invalid handle');
    return o;
  };
  const fileOf = (handle: Buffer): OpenFile => {
    const o = lookup(handle);
    if (o.kind !== 'file') throw new SftpStatus(STATUS_CODE.FAILURE, 'invalid handle');
    return o;
  };
  const dirOf = (handle: Buffer): OpenDir => {
    const o = lookup(handle);
    if (o.kind !== 'dir') throw new SftpStatus(STATUS_CODE.FAILURE, 'invalid handle');
    return o;
  };

  const close = (o: Open): Promise<void> => (o.kind === 'file' ? o.fh.close() : o.dir.close());

  const send = (id: number, r: Reply): void => {
    switch (r.kind) {
      case 'status':
        return sftp.status(id, r.code, r.message);
      case 'handle':
        return sftp.handle(id, r.handle);
      case 'data':
        return sftp.data(id, r.data);
      case 'name':
        return sftp.name(id, r.names);
      case 'attrs':
        return sftp.attrs(id, r.attrs);
      case 'extended':
        return sendExtendedReply(sftp, id, r.body);
    }
  };

  /** Run one request and send its reply; nothing escapes into ssh2's event emitter. */
  // Requests run one at a time, in arrival order, and are answered in that order, as OpenSSH's
  // sftp-server does: its client (9.x) trusts a contiguous run of acknowledged writes and
  // truncates an upload to it when acks come back reordered.
  let queue: Promise<void> = Promise.resolve();
  const serve = (id: number, op: () => Promise<Reply>): void => {
    inflight++;
    queue = queue
      .then(op)
      .catch(errorReply)
      .then((r) => send(id, r))
      .catch((err: unknown) => log.warn({ event: 'sftp_reply_failed', remote, err: String(err) }, 'sftp reply failed'))
      .finally(() => {
        if (--inflight === 0) onIdle?.();
      });
  };

  const rename = async (from: string, to: string): Promise<void> => {
    const st = await fsp.lstat(from);
    if (st.isFile()) {
      // SFTP v3 rename must not replace an existing target: link(2) fails with EEXIST atomically.
      try {
        await fsp.link(from, to);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // Filesystems without hard links (and Linux's protected_hardlinks, EPERM) fall through to stat + rename.
        if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
        return renameUnlessExists(from, to);
      }
      try {
        await fsp.unlink(from);
      } catch (err) {
        await fsp.unlink(to).catch(() => undefined);
        throw err;
      }
      return;
    }
    return renameUnlessExists(from, to);
  };
  const renameUnlessExists = async (from: string, to: string): Promise<void> => {
    const exists = await fsp.lstat(to).then(
      () => true,
      () => false,
    );
    if (exists) throw new SftpStatus(STATUS_CODE.FAILURE, 'File already exists');
    await fsp.rename(from, to);
  };

  const ids = (): Promise<IdNames> => (idNames ??= loadIdNames());

  const readdir = async (d: OpenDir): Promise<Reply> => {
    const names = await ids();
    const batch: FileEntry[] = [];
    const add = async (name: string): Promise<void> => {
      const st = await fsp.lstat(path.join(d.path, name)).catch(() => undefined); // gone since it was listed
      if (st) batch.push({ filename: name, longname: longname(name, st, names), attrs: toAttrs(st) });
    };
    if (!d.dotsSent) {
      d.dotsSent = true;
      await add('.');
      await add('..');
    }
    while (batch.length < READDIR_BATCH) {
      const entry = await d.dir.read();
      if (!entry) break;
      await add(entry.name);
    }
    return batch.length > 0 ? { kind: 'name', names: batch } : eof();
  };

  // ssh2 types every attrs field as present; on requests only the ones the client sent are set.
  const partial = (a: Attributes): Partial<Attributes> => a;

  sftp.on('OPEN', (id, filename, pflags, attrs) =>
    serve(id, async () => {
      const mode = partial(attrs).mode;
      const p = resolve(filename);
      const fh = await fsp.open(p, openFlags(pflags), mode === undefined ? 0o666 : mode & 0o7777);
      const regular = await fh.stat().then(
        (st) => st.isFile(),
        () => false,
      );
      const reply = await register({ kind: 'file', path: p, fh, regular });
      opened++;
      return reply;
    }),
  );

  sftp.on('READ', (id, handleView, offset, len) => {
    const handle = Buffer.from(handleView);
    serve(id, async () => {
      const f = fileOf(handle);
      const buf = Buffer.allocUnsafe(Math.min(len, MAX_READ));
      const { bytesRead: n } = await f.fh.read(buf, 0, buf.length, offset);
      if (n === 0) return eof();
      bytesRead += n;
      return { kind: 'data', data: buf.subarray(0, n) };
    });
  });

  // Writes to a regular file are synchronous while they are quick, as in OpenSSH's sftp-server: the
  // thread-pool round trip and promise per request cost about a tenth of upload throughput on a
  // host whose main thread is saturated converting iroh reads.
  const writeNow = (f: OpenFile, data: Buffer, done: number, offset: number): number => {
    const t0 = performance.now();
    const n = writeSync(f.fh.fd, data, done, data.length - done, offset + done);
    if (performance.now() - t0 > SLOW_WRITE_MS) {
      writeInPool = true;
      log.info({ event: 'sftp_slow_write', remote, ms: Math.round(performance.now() - t0) }, 'slow disk: sftp writes move to the thread pool');
    }
    return n;
  };

  sftp.on('WRITE', (id, handleView, offset, payload) => {
    // ssh2 hands out views into its packet buffer, which the next packet reuses before this
    // request's turn comes: copy them now (so for every handle below).
    const handle = Buffer.from(handleView);
    const data = Buffer.from(payload);
    serve(id, async () => {
      const f = fileOf(handle);
      for (let done = 0; done < data.length; ) {
        const n = writeInPool || !f.regular ? (await f.fh.write(data, done, data.length - done, offset + done)).bytesWritten : writeNow(f, data, done, offset);
        done += n;
        bytesWritten += n;
      }
      return ok();
    });
  });

  sftp.on('CLOSE', (id, handleView) => {
    const handle = Buffer.from(handleView);
    serve(id, async () => {
      const o = lookup(handle);
      open.delete(handle.readUInt32BE(0));
      await close(o);
      return ok();
    });
  });

  sftp.on('FSTAT', (id, handleView) => {
    const handle = Buffer.from(handleView);
    serve(id, async () => {
      const o = lookup(handle);
      return { kind: 'attrs', attrs: toAttrs(o.kind === 'file' ? await o.fh.stat() : await fsp.stat(o.path)) };
    });
  });
  sftp.on('STAT', (id, p) => serve(id, async () => ({ kind: 'attrs', attrs: toAttrs(await fsp.stat(resolve(p))) })));
  sftp.on('LSTAT', (id, p) => serve(id, async () => ({ kind: 'attrs', attrs: toAttrs(await fsp.lstat(resolve(p))) })));

  sftp.on('SETSTAT', (id, p, attrs) =>
    serve(id, async () => {
      await applyAttrs(pathTarget(resolve(p)), partial(attrs));
      return ok();
    }),
  );
  sftp.on('FSETSTAT', (id, handleView, attrs) => {
    const handle = Buffer.from(handleView);
    serve(id, async () => {
      const o = lookup(handle);
      await applyAttrs(o.kind === 'file' ? o.fh : pathTarget(o.path), partial(attrs));
      return ok();
    });
  });

  sftp.on('OPENDIR', (id, p) =>
    serve(id, async () => {
      const abs = resolve(p);
      return register({ kind: 'dir', path: abs, dir: await fsp.opendir(abs), dotsSent: false });
    }),
  );
  sftp.on('READDIR', (id, handleView) => {
    const handle = Buffer.from(handleView);
    serve(id, () => readdir(dirOf(handle)));
  });

  sftp.on('MKDIR', (id, p, attrs) =>
    serve(id, async () => {
      const mode = partial(attrs).mode;
      await fsp.mkdir(resolve(p), { mode: mode === undefined ? 0o777 : mode & 0o7777 });
      return ok();
    }),
  );
  sftp.on('RMDIR', (id, p) =>
    serve(id, async () => {
      await fsp.rmdir(resolve(p));
      return ok();
    }),
  );
  sftp.on('REMOVE', (id, p) =>
    serve(id, async () => {
      await fsp.unlink(resolve(p));
      return ok();
    }),
  );
  sftp.on('RENAME', (id, from, to) =>
    serve(id, async () => {
      await rename(resolve(from), resolve(to));
      return ok();
    }),
  );

  sftp.on('REALPATH', (id, p) =>
    serve(id, async () => {
      const abs = resolve(p);
      // Canonical like OpenSSH when the path exists; lexically normalized when it does not.
      return bareName(await fsp.realpath(abs).catch(() => abs));
    }),
  );
  sftp.on('READLINK', (id, p) => serve(id, async () => bareName(await fsp.readlink(resolve(p)))));

  // ssh2 passes (linkPath, targetPath) whatever the wire order: it swaps the fields itself when the
  // client identifies as OpenSSH (whose sftp sends target first). @types/ssh2 names them the other
  // way round. The target is stored verbatim: a relative target is relative to the link, not home.
  sftp.on('SYMLINK', (id, linkPath, targetPath) =>
    serve(id, async () => {
      await fsp.symlink(targetPath, resolve(linkPath));
      return ok();
    }),
  );

  const extSession: ExtSession = { home: ctx.home, resolve, idNames: ids, handle: find };
  sftp.on('EXTENDED', (id, name, data: Buffer | undefined) => {
    const request = data && Buffer.from(data);
    serve(id, () => extended(extSession, name, request));
  });

  // A malformed packet: ssh2 destroys the channel after emitting this; without a listener it would throw.
  sftp.on('error', (err: Error) => log.warn({ event: 'sftp_error', remote, err: err.message }, 'sftp protocol error'));

  const shutdown = (): void => {
    if (ended) return;
    ended = true;
    // sshd ends a subsystem with exit-status 0 and EOF before CLOSE.
    sftpExitAndEof(sftp);
    // ssh2 does not answer the client's EOF/CLOSE on an SFTP channel itself; OpenSSH's ssh waits for it.
    sftp.end();
    const closing = [...open.values()].map((o) => close(o).catch(() => undefined));
    open.clear();
    void Promise.all(closing).then(() => log.info({ event: 'sftp_end', remote, opened, bytesRead, bytesWritten }, 'sftp session ended'));
  };
  // EOF: the client may still be waiting for replies to requests sent before it, so answer those first.
  sftp.on('end', () => (inflight === 0 ? shutdown() : (onIdle = shutdown)));
  // CLOSE or a dropped connection: nobody is left to answer.
  sftp.on('close', shutdown);
}
