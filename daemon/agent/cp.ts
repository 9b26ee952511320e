// burrow cp: files and trees between this machine and TARGET over the pooled connection's SFTP
// channel. The daemon runs as the CLI's user (the socket is private), so it does the local file
// I/O itself and streams progress frames to the CLI.
//
// The remote is not trusted with this machine's filesystem (CVE-2019-6111 class): names from a
// listing must be plain names, each listed once; nothing is written through a symbolic link the
// copy did not find in place and the user did not name (cp-fs.ts: exclusive creation, renames
// that replace a link, modes set through handles); a directory is verified with lstat before the
// copy descends into it. The same rules hold on the host's side for uploads. A name taken from the
// remote's realpath is checked like a listed one, one destination name takes one top-level source,
// and listings, depth and -L loops are bounded (SECURITY.md, "Copies").
//
// Each file goes to a ".NAME.burrow-part.RANDOM" beside its destination and is renamed into place
// on success. Reads run ahead of writes; writes are issued in order and at most WINDOW are in
// flight, each issued only after the oldest completed, so an interrupted transfer can only have
// holes in its last WINDOW chunks: --resume finds the part file, rewinds by that much, checks
// samples of the prefix against the source, and continues (or starts over when they differ).

import { createHash, randomBytes } from 'node:crypto';
import { isAbsolute, posix } from 'node:path';
import { BurrowError, ErrorCodes, firstLine } from '../../shared/errors.js';
import type { FrameOf } from '../../shared/ipc/frames.js';
import { parseCopySpec, type CopySpec } from '../../shared/target.js';
import type { IpcSession } from '../ipc/server.js';
import { Sftp } from '../ssh/sftp.js';
import { LocalTree, RemoteTree, type Attrs, type Endpoint, type Meta, type Tree } from './cp-fs.js';
import type { AgentContext } from './ops.js';
import type { PooledConnection } from './pool.js';
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
/** Longest file name (bytes) on Linux and most filesystems. */
const NAME_MAX = 255;
const PART = '.burrow-part.';
const LINK = '.burrow-link.';
const RANDOM_HEX = 12;
const LOSS_POLL_MS = 1000;
/** Paths one remote glob may expand to. */
const MAX_GLOB_MATCHES = 100_000;
/** Directory levels a copy descends; deeper ones are skipped with a warning. */
const MAX_DEPTH = 256;

interface Options {
  recursive: boolean;
  preserve: boolean;
  resume: boolean;
  follow: boolean;
  /** The remote's modes are applied here without setuid, setgid or sticky bits. */
  download: boolean;
}

const quote = (s: string): string => JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s);

/** A name from a listing, made safe to join: "." and ".." are skipped, anything else not plain is refused. */
export function safeRemoteName(name: string): string | null {
  if (name === '.' || name === '..') return null;
  if (name === '' || name.includes('/') || name.includes('\0')) {
    throw new BurrowError(ErrorCodes.IoError, `refusing remote file name ${quote(name)}: it is not a plain name`);
  }
  if (Buffer.byteLength(name) > NAME_MAX) throw new BurrowError(ErrorCodes.IoError, `refusing remote file name ${quote(name)}: it is longer than ${NAME_MAX} bytes`);
  return name;
}

/** ".NAME<tag>": the prefix of a temporary file for NAME; a name too long for it is hashed. */
function tempPrefix(name: string, tag: string): string {
  const p = `.${name}${tag}`;
  if (Buffer.byteLength(p) + RANDOM_HEX <= NAME_MAX) return p;
  return `.${createHash('sha256').update(name).digest('hex').slice(0, 32)}${tag}`;
}
/** A temporary name beside NAME that no remote can guess in advance. */
export const tempName = (name: string, tag: string): string => tempPrefix(name, tag) + randomBytes(RANDOM_HEX / 2).toString('hex');
export function isPartOf(name: string, candidate: string): boolean {
  const p = tempPrefix(name, PART);
  return candidate.length === p.length + RANDOM_HEX && candidate.startsWith(p) && /^[0-9a-f]+$/.test(candidate.slice(p.length));
}

/** `~` and `~/...` name the serving user's home, which is where SFTP resolves relative paths. */
export function homeRelative(p: string): string {
  if (p === '' || p === '~' || p === '~/') return '.';
  return p.startsWith('~/') ? p.slice(2) : p;
}

// --- remote globs, expanded by listing directories over SFTP ---

const hasGlob = (s: string): boolean => /(^|[^\\])[*?[]/.test(s);
const unescapeGlob = (s: string): string => s.replace(/\\(.)/g, '$1');
const escapeRe = (c: string): string => c.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

/** One path segment of a shell glob (`*`, `?`, `[...]`, `\x`) as an anchored regex. */
export function globRegex(seg: string): RegExp {
  let re = '';
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === '\\' && i + 1 < seg.length) re += escapeRe(seg[++i]!);
    else if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      let j = i + 1;
      if (seg[j] === '!' || seg[j] === '^') j++;
      if (seg[j] === ']') j++; // a ']' first in the class is a member
      const close = seg.indexOf(']', j);
      if (close < 0) {
        re += '\\[';
        continue;
      }
      let body = seg.slice(i + 1, close);
      const negate = body.startsWith('!') || body.startsWith('^');
      if (negate) body = body.slice(1);
      re += `[${negate ? '^' : ''}${body.replace(/[\\\]^[]/g, '\\$&')}]`;
      i = close;
    } else re += escapeRe(c);
  }
  return new RegExp(`^${re}$`, 's');
}

/** The paths a remote pattern names, sorted per directory; a pattern without glob characters is itself. */
async function expandRemote(tree: Tree, pattern: string): Promise<string[]> {
  if (!hasGlob(pattern)) return [unescapeGlob(pattern)]; // `a\[1\].txt` names a[1].txt
  const join = (dir: string, name: string): string => (dir === '' ? name : posix.join(dir, name));
  let paths = [pattern.startsWith('/') ? '/' : ''];
  for (const seg of pattern.split('/').filter((s) => s !== '')) {
    if (!hasGlob(seg)) {
      paths = paths.map((p) => join(p, unescapeGlob(seg)));
      continue;
    }
    const re = globRegex(seg);
    // A name listed twice is one path (two top-level sources of one name would write through each other).
    const next = new Set<string>();
    for (const dir of paths) {
      if ((await tree.meta(dir || '.', true))?.kind !== 'dir') continue;
      for (const name of (await tree.list(dir || '.')).sort()) {
        // Like the shell: a leading dot is matched only by a leading dot; odd names never match.
        if ((name.startsWith('.') && !seg.startsWith('.')) || !re.test(name)) continue;
        try {
          if (safeRemoteName(name) === null) continue;
        } catch {
          continue;
        }
        next.add(join(dir, name));
        if (next.size > MAX_GLOB_MATCHES) throw new BurrowError(ErrorCodes.BadArgument, `${tree.show(pattern)} matches more than ${MAX_GLOB_MATCHES} paths`);
      }
    }
    paths = [...next];
  }
  const found: string[] = [];
  for (const p of paths) if (await tree.meta(p, false)) found.push(p);
  // Like the shell without nullglob: a pattern that matches nothing may name a file itself (`a[1].txt`).
  if (found.length === 0 && (await tree.meta(pattern, false))) return [pattern];
  if (found.length === 0) throw new BurrowError(ErrorCodes.NotFound, `${tree.show(pattern)}: no match`);
  return found;
}

// --- the copy ---

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
      const w = dst.write(r.pos, data).then(() => onBytes(data.length));
      w.catch(() => undefined); // awaited below, in order
      writes.push(w);
      if (writes.length >= WINDOW) await writes.shift();
      fill();
    }
    await Promise.all(writes);
  } catch (err) {
    // Every call settles (a lost connection fails them all), so this wait is short.
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
  private skipped = 0;
  private failed = 0;
  /** Destination directories listed for --resume, each once. */
  private readonly listings = new Map<string, Promise<string[]>>();

  constructor(
    private readonly src: Tree,
    private readonly dst: Tree,
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

  private say(line: string): void {
    if (!this.session.closed) this.session.send({ t: 'stderr', data: Buffer.from(`${line}\n`) });
  }

  /** Something in a tree that is not copied; the rest goes on, and the exit status says so. */
  private skip(why: string): void {
    this.skipped++;
    this.say(`burrow: warning: skipped ${why}`);
  }

  /** One of several sources failed; the others go on. */
  failSource(err: BurrowError): void {
    this.failed++;
    this.say(`burrow: ${err.code}: ${err.message}`);
  }

  /** Directories being copied (their dirId), to skip a loop of links under -L. */
  private readonly ancestors = new Set<string>();

  async copy(from: string, to: string, top: boolean, depth = 0): Promise<void> {
    const m = await this.src.meta(from, top || this.opts.follow);
    if (!m) throw new BurrowError(ErrorCodes.NotFound, `${this.src.show(from)}: no such file or directory`);
    // stat of a top-level source never answers "link" unless the server lies; a link made there
    // would be a destination the next source of that name writes through.
    if (m.kind === 'link' && top) throw new BurrowError(ErrorCodes.IoError, `${this.src.show(from)}: not a regular file or directory`);
    if (m.kind === 'link') return this.placeLink(await this.src.readlink(from), to);
    if (m.kind === 'dir') {
      if (!this.opts.recursive) throw new BurrowError(ErrorCodes.BadArgument, `${this.src.show(from)} is a directory (use -r)`);
      if (depth >= MAX_DEPTH) return this.skip(`${this.src.show(from)}: deeper than ${MAX_DEPTH} directory levels`);
      const id = this.opts.follow ? await this.src.dirId(from) : undefined;
      if (id !== undefined && this.ancestors.has(id)) return this.skip(`${this.src.show(from)}: a symbolic link loop (it leads back to a directory being copied)`);
      if (id !== undefined) this.ancestors.add(id);
      try {
        return await this.copyDir(from, to, m, top, depth);
      } finally {
        if (id !== undefined) this.ancestors.delete(id);
      }
    }
    if (m.kind === 'file') return this.copyFile(from, to, m, top);
    if (top) throw new BurrowError(ErrorCodes.IoError, `${this.src.show(from)}: not a regular file`);
    this.skip(`${this.src.show(from)}: not a regular file, directory or symbolic link`);
  }

  /** Mode bits -p applies: the remote's never include setuid, setgid or sticky (scp -p keeps them; burrow does not trust them). */
  private preserved(mode: number): number {
    return mode & (this.opts.download ? 0o777 : 0o7777);
  }

  private async copyDir(from: string, to: string, m: Meta, top: boolean, depth: number): Promise<void> {
    await this.ensureDir(to, m.mode, top);
    const seen = new Set<string>();
    for (const raw of await this.src.list(from)) {
      let name: string | null;
      try {
        name = safeRemoteName(raw);
      } catch (err) {
        this.skip(`in ${this.src.show(from)}: ${(err as Error).message}`);
        continue;
      }
      if (name === null) continue;
      if (seen.has(name)) {
        this.skip(`${this.src.show(this.src.join(from, name))}: listed twice, copied once`);
        continue;
      }
      seen.add(name);
      await this.copy(this.src.join(from, name), this.dst.join(to, name), false, depth + 1);
    }
    if (this.opts.preserve) await this.dst.setDirAttrs(to, { mode: this.preserved(m.mode), atime: m.atime, mtime: m.mtime });
  }

  /** Make `p` a real directory: one the user named may be a link to one; below it, a link is replaced (as rsync -a does). */
  private async ensureDir(p: string, mode: number, top: boolean): Promise<void> {
    const here = await this.dst.meta(p, false);
    if (here?.kind === 'dir') return;
    if (here?.kind === 'link' && top) {
      await this.mayFollow(p, here);
      if ((await this.dst.meta(p, true))?.kind === 'dir') return;
      throw new BurrowError(ErrorCodes.IoError, `${this.dst.show(p)}: exists and is not a directory`);
    }
    if (here?.kind === 'link') await this.dst.remove(p);
    else if (here) throw new BurrowError(ErrorCodes.IoError, `${this.dst.show(p)}: exists and is not a directory`);
    await this.dst.mkdir(p, (mode & 0o777) | 0o700);
    if ((await this.dst.meta(p, false))?.kind !== 'dir') throw new BurrowError(ErrorCodes.IoError, `${this.dst.show(p)}: not a directory after creating it; not descending`);
  }

  /**
   * A link the user named as the destination is followed, as cp and scp do, but not one someone
   * else owns in a sticky world-writable directory such as /tmp: the kernel's
   * fs.protected_symlinks rule, which resolving the link ourselves would otherwise bypass.
   */
  async mayFollow(p: string, link: Meta): Promise<void> {
    const own = await this.dst.ownUid();
    if (link.uid === own || link.uid === 0) return;
    const parent = await this.dst.meta(this.dst.dirname(p), true);
    if (!parent || (parent.mode & 0o1002) !== 0o1002 || parent.uid === link.uid) return;
    throw new BurrowError(ErrorCodes.IoError, `${this.dst.show(p)}: a symbolic link owned by uid ${link.uid} in a sticky world-writable directory; not following it (remove it or name another destination)`);
  }

  /** A symbolic link, made beside `p` and renamed over it: an existing link or file is replaced, never followed. */
  private async placeLink(target: string, p: string): Promise<void> {
    if ((await this.dst.meta(p, false))?.kind === 'dir') throw new BurrowError(ErrorCodes.IoError, `${this.dst.show(p)}: is a directory; not replacing it with a symbolic link`);
    const tmp = this.dst.join(this.dst.dirname(p), tempName(this.dst.basename(p), LINK));
    const shown = this.dst.show(p);
    await this.dst.symlink(target, tmp, shown);
    try {
      await this.dst.rename(tmp, p, shown);
    } catch (err) {
      await this.dst.remove(tmp).catch(() => undefined);
      throw err;
    }
  }

  private listing(dir: string): Promise<string[]> {
    let l = this.listings.get(dir);
    if (!l) {
      l = this.dst.list(dir).catch(() => []);
      this.listings.set(dir, l);
    }
    return l;
  }

  private async copyFile(from: string, to: string, m: Meta, top: boolean): Promise<void> {
    let dest = to;
    // A link the user named as the destination is followed (see mayFollow); below it, replaced.
    const here = top ? await this.dst.meta(dest, false) : null;
    if (here?.kind === 'link') {
      await this.mayFollow(dest, here);
      dest = await this.dst.realpath(dest).catch(() => dest);
    }
    const shown = this.dst.show(dest);
    if ((await this.dst.meta(dest, false))?.kind === 'dir') throw new BurrowError(ErrorCodes.IoError, `${shown}: is a directory`);
    const dir = this.dst.dirname(dest);
    const name = this.dst.basename(dest);
    const stale: string[] = [];
    let old: { path: string; file: Endpoint; size: number } | undefined;
    if (this.opts.resume) {
      for (const n of (await this.listing(dir)).filter((c) => isPartOf(name, c))) {
        const p = this.dst.join(dir, n);
        const o = old ? null : await this.dst.openExisting(p);
        if (o) old = { path: p, ...o };
        else if ((await this.dst.meta(p, false))?.kind === 'file') stale.push(p); // a link there is left alone
      }
    }
    let source: Endpoint;
    try {
      source = await this.src.openRead(from);
    } catch (err) {
      await old?.file.close();
      throw err;
    }
    let part: { path: string; file: Endpoint } | undefined;
    try {
      let start = 0;
      if (old && old.size > 0) start = await resumePoint(source, old.file, old.size, m.size);
      if (old && start === 0) {
        if (old.size > 0) this.restarted++;
        await old.file.close();
        stale.push(old.path);
      } else part = old;
      if (!part) {
        const path = this.dst.join(dir, tempName(name, PART));
        part = { path, file: await this.dst.createExclusive(path, shown) };
      }
      let done = start;
      this.totalBytes += start;
      this.resumed += start;
      await pump(source, part.file, start, m.size, from, (n) => {
        done += n;
        this.totalBytes += n;
        this.progress(from, done, m.size);
      });
      const attrs: Attrs = this.opts.preserve ? { mode: this.preserved(m.mode), atime: m.atime, mtime: m.mtime } : { mode: m.mode & 0o755 };
      await part.file.setAttrs(attrs);
    } finally {
      await Promise.allSettled([source.close(), part?.file.close()]);
    }
    if (!part) throw new BurrowError(ErrorCodes.Internal, `no part file for ${shown}`);
    await this.dst.rename(part.path, dest, shown);
    for (const p of stale) await this.dst.remove(p).catch(() => undefined);
    this.files++;
    this.progress(from, m.size, m.size, true);
  }

  summary(seconds: number): Record<string, unknown> {
    return { files: this.files, bytes: this.totalBytes, seconds, resumedBytes: this.resumed, restarted: this.restarted, skipped: this.skipped, failed: this.failed };
  }
}

/** The name a source keeps inside a destination directory. */
async function nameIn(tree: Tree, p: string): Promise<string> {
  const name = tree.basename(p);
  if (name !== '' && name !== '.' && name !== '..') return name;
  // `box:~`, `box:.`: the name comes from the remote's realpath, which must be a plain name too
  // (an answer of "/home/.." would otherwise copy into the destination's parent).
  const real = await tree.realpath(p);
  let safe: string | null = null;
  try {
    safe = safeRemoteName(tree.basename(real));
  } catch {
    // not a plain name: refused below
  }
  if (safe === null) throw new BurrowError(ErrorCodes.BadArgument, `${tree.show(p)} resolves to ${quote(real)}, which has no name to copy under; name the destination itself`);
  return safe;
}

/** Fail every SFTP call of this copy once the connection or the channel is gone. */
function watchLoss(conn: PooledConnection, opened: { sftp: Sftp['s']; closed: Promise<void> }, sftp: Sftp, label: string): () => void {
  const lost = (why: string): void => sftp.lose(new BurrowError(ErrorCodes.Disconnected, `connection to ${label} was lost during the copy: ${why}`));
  // ssh2 closes the SFTP channel when the connection goes; the pool's verdict is checked as well,
  // in case a wedged transport never lets that happen.
  const poll = setInterval(() => {
    if (conn.dead) void conn.whyLost().then(lost);
  }, LOSS_POLL_MS);
  // A malformed SFTP packet: ssh2 emits this, then destroys the channel.
  opened.sftp.on('error', (err: Error) => lost(`SFTP error: ${firstLine(err.message)}`));
  void opened.closed.then(() => (conn.dead ? conn.whyLost().then(lost) : lost('the SFTP channel closed')));
  return () => clearInterval(poll);
}

const isFileError = (err: unknown): err is BurrowError =>
  err instanceof BurrowError && (err.code === ErrorCodes.NotFound || err.code === ErrorCodes.IoError || err.code === ErrorCodes.BadArgument);

export async function runCopy(ctx: AgentContext, req: FrameOf<'cp'>, session: IpcSession): Promise<void> {
  const srcs: CopySpec[] = (req.srcs && req.srcs.length > 0 ? req.srcs : [req.src]).map(parseCopySpec);
  const dst = parseCopySpec(req.dst);
  if (srcs.some((s) => s.kind === dst.kind)) throw new BurrowError(ErrorCodes.BadArgument, 'the sources of cp must be on one side and the destination on the other (TARGET:path on one side only)');
  const download = dst.kind === 'local';
  const remotes = (download ? srcs : [dst]) as Extract<CopySpec, { kind: 'remote' }>[];
  const label = remotes[0]!.target;
  if (remotes.some((r) => r.target !== label)) throw new BurrowError(ErrorCodes.BadArgument, 'all remote sources of one cp must be on the same target');
  for (const s of [...srcs, dst]) {
    if (s.kind === 'local' && !isAbsolute(s.path)) throw new BurrowError(ErrorCodes.BadArgument, `local path ${s.path} must be absolute (the CLI makes it so)`);
  }
  const opts: Options = { recursive: req.recursive ?? false, preserve: req.preserve ?? false, resume: req.resume ?? false, follow: req.follow ?? false, download };
  const target = await resolveTarget(label, ctx.state, ctx.defaultUser);
  const conn = await ctx.pool.get(bulkLane(target));
  const opened = await ctx.pool.openSftp(conn);
  const sftp = new Sftp(opened.sftp);
  const unwatch = watchLoss(conn, opened, sftp, label);
  const remote = new RemoteTree(sftp, label);
  const local = new LocalTree();
  const [from, to] = download ? [remote, local] : [local, remote];
  const copier = new Copier(from, to, session, opts);
  const began = Date.now();
  session.onClose(() => opened.sftp.end()); // the CLI went away: stop
  try {
    const sources: string[] = [];
    for (const s of srcs) sources.push(...(download ? await expandRemote(remote, homeRelative(s.path)) : [s.path]));
    const dstPath = download ? dst.path : homeRelative(dst.path);
    // lstat of "link/" would follow it: the link itself is looked at without the slash.
    const bare = dstPath.replace(/(?<=.)\/+$/, '');
    const named = await to.meta(bare, false);
    if (named?.kind === 'link') await copier.mayFollow(bare, named);
    // Several sources, or a destination written with a trailing slash, go into a directory.
    const into = (await to.meta(dstPath, true))?.kind === 'dir';
    if (!into && (sources.length > 1 || dstPath.endsWith('/'))) {
      throw new BurrowError(ErrorCodes.NotFound, `${to.show(dstPath)}: no such directory (with several sources or a trailing /, the destination must be one)`);
    }
    // Two sources of one name would land on one path, the second over (or through) the first: as cp, refused.
    const placed = new Set<string>();
    for (const s of sources) {
      try {
        const dest = into ? to.join(dstPath, await nameIn(from, s)) : dstPath;
        if (placed.has(dest)) throw new BurrowError(ErrorCodes.BadArgument, `not overwriting ${to.show(dest)}, just copied from another source, with ${from.show(s)}`);
        placed.add(dest);
        await copier.copy(s, dest, true);
      } catch (err) {
        if (sources.length === 1 || !isFileError(err)) throw err;
        copier.failSource(err);
      }
    }
  } finally {
    unwatch();
    opened.sftp.end();
  }
  const summary = copier.summary((Date.now() - began) / 1000);
  ctx.log.info({ event: 'cp_done', target: target.label, direction: download ? 'download' : 'upload', ...summary }, 'copy done');
  session.end({ t: 'result', value: summary });
}
