// The SFTP extensions OpenSSH's sftp-server offers, as its PROTOCOL file specifies them, with the
// status codes sftp-server answers with: what OpenSSH's sftp and scp use for ln, cp, df, rename
// over a file, chmod -h, put -f, ls -l names and scp's ~user paths.

import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { posix as path } from 'node:path';
import { Reader, SftpStatus, STATUS_CODE, Writer, bareName, errorReply, MAX_PACKET, MAX_READ, ok, status, type Reply } from './sftp-proto.js';

/** What an extension needs from the session it runs in. */
export interface ExtSession {
  /** The serving user's home: the working directory of OpenSSH's sftp-server. */
  home: string;
  /** A request path made absolute against home. */
  resolve(p: string): string;
  /** What a handle names, if it is open. */
  handle(h: Buffer): { kind: 'file'; fh: FileHandle; path: string } | { kind: 'dir'; path: string } | undefined;
  idNames(): Promise<IdNames>;
}

export interface IdNames {
  users: Map<number, string>;
  groups: Map<number, string>;
  /** User name to home directory. */
  homes: Map<string, string>;
}

/** The user and group database from /etc/passwd and /etc/group (read async: getpwuid would block the daemon). */
export async function loadIdNames(): Promise<IdNames> {
  const rows = async (file: string): Promise<string[][]> => (await fsp.readFile(file, 'utf8').catch(() => '')).split('\n').map((l) => l.split(':'));
  const [passwd, group] = await Promise.all([rows('/etc/passwd'), rows('/etc/group')]);
  const ids: IdNames = { users: new Map(), groups: new Map(), homes: new Map() };
  for (const [name, , uid, , , home] of passwd) {
    if (!name || !uid) continue;
    if (!ids.users.has(Number(uid))) ids.users.set(Number(uid), name);
    if (home && !ids.homes.has(name)) ids.homes.set(name, home);
  }
  for (const [name, , gid] of group) if (name && gid && !ids.groups.has(Number(gid))) ids.groups.set(Number(gid), name);
  return ids;
}

const fileOf = (s: ExtSession, r: Reader): { fh: FileHandle; path: string } | undefined => {
  const o = s.handle(r.bytes());
  return o?.kind === 'file' ? o : undefined;
};

// --- statvfs ---

const ST_RDONLY = 0x1n;
const ST_NOSUID = 0x2n;

/** ST_RDONLY/ST_NOSUID of the mount holding `real` (device `dev`), from /proc/self/mountinfo. */
async function mountFlags(dev: bigint, real: string): Promise<bigint> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  // Linux's dev_t packs major and minor in two pieces each.
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  const want = `${major}:${minor}`;
  let best: { at: string; options: string[] } | undefined;
  for (const line of text.split('\n')) {
    const f = line.split(' '); // id parent major:minor root mount-point options ...
    if (f[2] !== want || f[4] === undefined || f[5] === undefined) continue;
    const at = f[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    const holds = at === '/' || real === at || real.startsWith(at + '/');
    if (holds && (!best || at.length > best.at.length)) best = { at, options: f[5].split(',') };
  }
  return (best?.options.includes('ro') ? ST_RDONLY : 0n) | (best?.options.includes('nosuid') ? ST_NOSUID : 0n);
}

/** The statvfs reply for the filesystem at `p` (a path, or /proc/self/fd/N for an open file, named `named`). */
async function statvfs(p: string, named = p): Promise<Reply> {
  // An open file may have been removed since: its /proc link then names no path.
  const [fs, st, real] = await Promise.all([fsp.statfs(p, { bigint: true }), fsp.stat(p, { bigint: true }), fsp.realpath(p).catch(() => named)]);
  const body = new Writer()
    .u64(fs.bsize)
    .u64(fs.bsize) // f_frsize: Node does not report it; Linux filesystems count blocks in bsize units
    .u64(fs.blocks)
    .u64(fs.bfree)
    .u64(fs.bavail)
    .u64(fs.files)
    .u64(fs.ffree)
    .u64(fs.ffree) // f_favail: glibc's statvfs reports ffree for it too
    .u64(st.dev) // f_fsid: the device identifies the filesystem
    .u64(await mountFlags(st.dev, real))
    .u64(255) // f_namemax: NAME_MAX of every common Linux filesystem
    .done();
  return { kind: 'extended', body };
}

// --- copy-data ---

const COPY_CHUNK = 64 * 1024;

/** Fill `buf` from `pos` unless EOF comes first; returns the bytes read. */
async function readFull(fh: FileHandle, buf: Buffer, pos: bigint): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, Number(pos) + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

async function copyData(s: ExtSession, r: Reader): Promise<Reply> {
  const fromHandle = r.bytes();
  let readOff = r.u64();
  let readLen = r.u64();
  const toHandle = r.bytes();
  let writeOff = r.u64();
  const from = s.handle(fromHandle);
  const to = s.handle(toHandle);
  if (from?.kind !== 'file' || to?.kind !== 'file') return status(STATUS_CODE.NO_SUCH_FILE, 'Bad handle'); // sftp-server: EBADF
  const [a, b] = await Promise.all([from.fh.stat({ bigint: true }), to.fh.stat({ bigint: true })]);
  if (fromHandle.equals(toHandle) || from.path === to.path || (a.dev !== 0n && a.ino !== 0n && a.dev === b.dev && a.ino === b.ino)) {
    return status(STATUS_CODE.FAILURE, 'Refusing to copy a file onto itself');
  }
  // A length of 0 copies to EOF. The length is counted down a chunk at a time before each read and
  // a short source ends with EOF only while some length is left, as sftp-server counts it.
  const untilEof = readLen === 0n;
  if (untilEof) readLen = 0xffffffffffffffffn - readOff;
  const buf = Buffer.allocUnsafe(COPY_CHUNK);
  let result = ok();
  while (readLen > 0n || untilEof) {
    const len = readLen < BigInt(COPY_CHUNK) ? Number(readLen) : COPY_CHUNK;
    readLen -= BigInt(len);
    const n = await readFull(from.fh, buf.subarray(0, len), readOff);
    if (n === 0) {
      result = untilEof ? ok() : status(STATUS_CODE.EOF, 'End of file');
      break;
    }
    readOff += BigInt(n);
    for (let done = 0; done < n; ) done += (await to.fh.write(buf, done, n - done, Number(writeOff) + done)).bytesWritten;
    writeOff += BigInt(n);
  }
  return readLen === 0n ? ok() : result;
}

// --- lsetstat ---

async function lsetstat(s: ExtSession, r: Reader): Promise<Reply> {
  const p = s.resolve(r.string());
  const a = r.attrs();
  if (a.size !== undefined) return status(STATUS_CODE.BAD_MESSAGE, 'Cannot truncate a link'); // nonsensical for a link
  // Like sftp-server, every attribute is tried; the last failure is the answer.
  let result = ok();
  const attempt = async (op: () => Promise<void>): Promise<void> => {
    try {
      await op();
    } catch (err) {
      result = errorReply(err);
    }
  };
  const { mode, atime, mtime, uid, gid } = a;
  if (mode !== undefined) {
    await attempt(async () => {
      // Linux cannot chmod a symlink itself (fchmodat says EOPNOTSUPP); anything else has no link to follow.
      if ((await fsp.lstat(p)).isSymbolicLink()) throw new SftpStatus(STATUS_CODE.FAILURE, 'Operation not supported');
      await fsp.chmod(p, mode & 0o7777);
    });
  }
  if (atime !== undefined && mtime !== undefined) await attempt(() => fsp.lutimes(p, atime, mtime));
  if (uid !== undefined && gid !== undefined) await attempt(() => fsp.lchown(p, uid, gid));
  return result;
}

// --- limits ---

/** Handles this process may still open: its soft RLIMIT_NOFILE less what is open now; 0 (no limit known) without /proc. */
async function openHandleLimit(): Promise<number> {
  const limits = await fsp.readFile('/proc/self/limits', 'utf8').catch(() => '');
  const soft = /^Max open files\s+(\d+)/m.exec(limits)?.[1];
  if (!soft) return 0;
  const open = (await fsp.readdir('/proc/self/fd').catch(() => [])).length;
  return Math.max(1, Number(soft) - open);
}

// --- paths ---

/** Canonical like sftp-server's realpath: symlinks resolved, the last component alone may be missing. */
async function canonical(abs: string): Promise<string> {
  try {
    return await fsp.realpath(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || abs === '/') throw err;
    return path.join(await fsp.realpath(path.dirname(abs)), path.basename(abs));
  }
}

async function expandPath(s: ExtSession, r: Reader): Promise<Reply> {
  let p = r.string() || '.';
  if (p === '~') p = s.home;
  else if (p.startsWith('~/')) p = path.join(s.home, p.slice(2));
  else if (p.startsWith('~')) {
    const slash = p.indexOf('/');
    const home = (await s.idNames()).homes.get(p.slice(1, slash < 0 ? undefined : slash));
    if (home === undefined) return status(STATUS_CODE.NO_SUCH_FILE, 'no such user');
    p = slash < 0 ? home : path.join(home, p.slice(slash + 1));
  }
  return bareName(await canonical(s.resolve(p)));
}

async function usersGroupsById(s: ExtSession, r: Reader): Promise<Reply> {
  const uids = new Reader(r.bytes());
  const gids = new Reader(r.bytes());
  const ids = await s.idNames();
  // A name the database lacks is an empty string in its place.
  const names = (list: Reader, db: Map<number, string>): Buffer => {
    const w = new Writer();
    while (list.left() > 0) w.string(db.get(list.u32()) ?? '');
    return w.done();
  };
  return { kind: 'extended', body: new Writer().bytes(names(uids, ids.users)).bytes(names(gids, ids.groups)).done() };
}

// --- the table ---

type Handler = (s: ExtSession, r: Reader) => Promise<Reply>;

// In sftp-server's order, with its versions.
const TABLE: readonly (readonly [name: string, version: string, handler: Handler])[] = [
  [
    'posix-rename@openssh.com',
    '1',
    async (s, r) => {
      const [from, to] = [s.resolve(r.string()), s.resolve(r.string())];
      await fsp.rename(from, to);
      return ok();
    },
  ],
  ['statvfs@openssh.com', '2', (s, r) => statvfs(s.resolve(r.string()))],
  [
    'fstatvfs@openssh.com',
    '2',
    async (s, r) => {
      const f = fileOf(s, r);
      if (!f) return status(STATUS_CODE.FAILURE, 'invalid handle');
      return statvfs(`/proc/self/fd/${f.fh.fd}`, f.path);
    },
  ],
  [
    'hardlink@openssh.com',
    '1',
    async (s, r) => {
      const [from, to] = [s.resolve(r.string()), s.resolve(r.string())];
      await fsp.link(from, to);
      return ok();
    },
  ],
  [
    'fsync@openssh.com',
    '1',
    async (s, r) => {
      const f = fileOf(s, r);
      if (!f) return status(STATUS_CODE.NO_SUCH_FILE, 'invalid handle');
      await f.fh.sync();
      return ok();
    },
  ],
  ['lsetstat@openssh.com', '1', lsetstat],
  [
    'limits@openssh.com',
    '1',
    async () => ({ kind: 'extended', body: new Writer().u64(MAX_PACKET).u64(MAX_READ).u64(MAX_PACKET - 1024).u64(await openHandleLimit()).done() }),
  ],
  ['expand-path@openssh.com', '1', expandPath],
  ['copy-data', '1', copyData],
  [
    'home-directory',
    '1',
    async (s, r) => {
      const user = r.string();
      const home = user === '' ? s.home : (await s.idNames()).homes.get(user);
      return home === undefined ? status(STATUS_CODE.FAILURE, 'no such user') : bareName(home);
    },
  ],
  ['users-groups-by-id@openssh.com', '1', usersGroupsById],
];

/** What the VERSION hello advertises: (name, version). */
export const EXTENSIONS: readonly (readonly [string, string])[] = TABLE.map(([name, version]) => [name, version] as const);

const HANDLERS = new Map(TABLE.map(([name, , handler]) => [name, handler]));

/** Serve one EXTENDED request. */
export function extended(s: ExtSession, name: string, data: Buffer | undefined): Promise<Reply> {
  const handler = HANDLERS.get(name);
  if (!handler) return Promise.resolve(status(STATUS_CODE.OP_UNSUPPORTED, 'Operation unsupported'));
  return handler(s, new Reader(data));
}
