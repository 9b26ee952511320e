// Remote directory listings for shell completion (`burrow __complete` on a TARGET:path word in
// cp). Warm completion must cost one round trip, not a channel set-up: each pooled connection
// keeps one SFTP channel open while completions keep coming, and closes it after a short idle
// spell so the connection's persist timer can run again.

import type { FileEntry } from 'ssh2';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import type { FrameOf } from '../../shared/ipc/frames.js';
import type { AgentContext } from './ops.js';
import type { OpenedSftp } from '../ssh/channels.js';
import type { PooledConnection } from './pool.js';
import { resolveTarget } from './resolve.js';

/** How long an unused completion SFTP channel stays open. */
const IDLE_MS = 30_000;
/** Enough names for a shell's completion list, well inside one IPC frame. */
const MAX_ENTRIES = 5000;
const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const SFTP_NO_SUCH_FILE = 2;

interface Held {
  opened: Promise<OpenedSftp>;
  timer?: NodeJS.Timeout;
}

const held = new WeakMap<PooledConnection, Held>();

function sftpFor(ctx: AgentContext, conn: PooledConnection): Promise<OpenedSftp> {
  let h = held.get(conn);
  if (!h) {
    const opened = ctx.pool.openSftp(conn);
    const entry: Held = { opened };
    h = entry;
    held.set(conn, entry);
    opened.then(
      (o) => void o.closed.then(() => held.get(conn) === entry && held.delete(conn)),
      () => held.get(conn) === entry && held.delete(conn),
    );
  }
  const entry = h;
  if (entry.timer) clearTimeout(entry.timer);
  entry.timer = setTimeout(() => {
    if (held.get(conn) === entry) held.delete(conn);
    void entry.opened.then((o) => o.sftp.end(), () => undefined);
  }, IDLE_MS);
  entry.timer.unref();
  return entry.opened;
}

/** The SFTP path for what the user typed: `~` and `~/...` are the remote home, as SFTP's relative paths are. */
export function sftpPath(typed: string): string {
  if (typed === '' || typed === '~' || typed === '~/') return '.';
  if (typed.startsWith('~/')) return typed.slice(2);
  return typed;
}

/** The entries of a remote directory: `{entries: [{name, dir}]}`, sorted by name. */
export async function listRemote(ctx: AgentContext, req: FrameOf<'ls'>): Promise<Record<string, unknown>> {
  const t = await resolveTarget(req.target, ctx.state, ctx.defaultUser);
  const conn = await ctx.pool.get(t);
  const { sftp } = await sftpFor(ctx, conn);
  const path = sftpPath(req.path);
  const list = await new Promise<FileEntry[]>((resolve, reject) =>
    sftp.readdir(path, (err, l) => {
      if (!err) return resolve(l);
      const code = (err as { code?: number }).code;
      reject(new BurrowError(code === SFTP_NO_SUCH_FILE ? ErrorCodes.NotFound : ErrorCodes.IoError, `${req.target}:${req.path}: ${code === SFTP_NO_SUCH_FILE ? 'no such directory' : err.message}`));
    }),
  );
  const entries = list
    .filter((e) => e.filename !== '.' && e.filename !== '..' && !e.filename.includes('/'))
    .slice(0, MAX_ENTRIES)
    .map((e) => ({ name: e.filename, dir: ((e.attrs.mode ?? 0) & S_IFMT) === S_IFDIR }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { entries };
}
