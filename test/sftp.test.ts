// The SFTP subsystem against real clients: ssh2's client SFTP and OpenSSH's sftp, over loopback TCP,
// with a real ssh2 server in this process serving a temp dir as home.

import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { connect as connectTcp, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import ssh2 from 'ssh2';
import type { Client, FileEntry, ParsedKey, SFTPWrapper, Server, Stats } from 'ssh2';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { extended, loadIdNames } from '../daemon/host/sftp-ext.js';
import { Writer, type Reply } from '../daemon/host/sftp-proto.js';
import { serveSftp } from '../daemon/host/sftp.js';
import { identityFromSeed, type Identity } from '../daemon/identity.js';

const { STATUS_CODE } = ssh2.utils.sftp;
// burrow's own key encoding (what the daemon uses), not ssh2's keygen, which now and then
// produced a key its own parser rejected.
const asPair = (id: Identity): { private: string; public: string } => ({ private: id.privateKeyOpenSSH, public: id.publicKeyLine });
const hostKey = asPair(identityFromSeed(randomBytes(32)));
const userKey = asPair(identityFromSeed(randomBytes(32)));
const userPub = ssh2.utils.parseKey(userKey.public) as ParsedKey;

let root: string; // holds home and the client's local files
let home: string;
let local: string;
let server: Server;
let port: number;
const logLines: Record<string, unknown>[] = [];
const clients: Client[] = [];
/** The server side of the newest SFTP session. */
let lastServed: SFTPWrapper | undefined;

beforeAll(async () => {
  root = await fsp.realpath(await fsp.mkdtemp(join(tmpdir(), 'burrow-sftp-')));
  const log = pino({ level: 'info' }, { write: (s: string) => void logLines.push(JSON.parse(s) as Record<string, unknown>) });
  server = new ssh2.Server({ hostKeys: [hostKey.private] }, (conn) => {
    conn.on('error', () => undefined);
    conn.on('authentication', (ctx) => {
      if (ctx.method === 'publickey' && ctx.key.algo === userPub.type && ctx.key.data.equals(userPub.getPublicSSH())) {
        if (!ctx.signature) return ctx.accept();
        if (ctx.blob && userPub.verify(ctx.blob, ctx.signature, ctx.hashAlgo) === true) return ctx.accept();
      }
      ctx.reject(['publickey']);
    });
    conn.on('ready', () =>
      conn.on('session', (accept) =>
        accept().on('sftp', (acceptSftp) => {
          lastServed = acceptSftp();
          serveSftp(lastServed, { home, remote: 'test', log });
        }),
      ),
    );
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await fsp.rm(root, { recursive: true, force: true });
});

beforeEach(async () => {
  const dir = await fsp.mkdtemp(join(root, 'case-'));
  home = join(dir, 'home');
  local = join(dir, 'local');
  await fsp.mkdir(home);
  await fsp.mkdir(local);
});

afterEach(() => {
  for (const c of clients.splice(0)) c.end();
});

async function connect(via = port): Promise<{ client: Client; sftp: SFTPWrapper }> {
  const client = new ssh2.Client();
  clients.push(client);
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve).once('error', reject);
    client.connect({ host: '127.0.0.1', port: via, username: 'me', privateKey: userKey.private });
  });
  const sftp = await new Promise<SFTPWrapper>((resolve, reject) => client.sftp((err, s) => (err ? reject(err) : resolve(s))));
  return { client, sftp };
}

/** Promisify one ssh2 callback call. */
function call<T = void>(fn: (cb: (err: Error | null | undefined, value?: T) => void) => void): Promise<T> {
  return new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value as T))));
}

/** The SFTP status code a failed call carried. */
async function failure(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  const err = await p.then(
    () => expect.fail('expected the request to fail'),
    (e: unknown) => e as Error & { code: number },
  );
  return { code: err.code, message: err.message };
}

const sha256 = async (file: string): Promise<string> => createHash('sha256').update(await fsp.readFile(file)).digest('hex');

/** How many fds of this process point into `dir`. */
async function fdsUnder(dir: string): Promise<number> {
  const fds = await fsp.readdir('/proc/self/fd');
  const targets = await Promise.all(fds.map((fd) => fsp.readlink(`/proc/self/fd/${fd}`).catch(() => '')));
  return targets.filter((t) => t === dir || t.startsWith(dir + '/')).length;
}

async function until(check: () => Promise<boolean>, ms = 5000): Promise<void> {
  await vi.waitFor(
    async () => {
      if (!(await check())) throw new Error('condition not met in time');
    },
    { timeout: ms, interval: 20 },
  );
}

describe('sftp subsystem', () => {
  it('put and get of a 5 MiB random file round-trips byte for byte', async () => {
    const { sftp } = await connect();
    await fsp.writeFile(join(local, 'src.bin'), randomBytes(5 * 1024 * 1024));
    await call((cb) => sftp.fastPut(join(local, 'src.bin'), 'up.bin', cb));
    await call((cb) => sftp.fastGet('up.bin', join(local, 'down.bin'), cb));
    const want = await sha256(join(local, 'src.bin'));
    expect(await sha256(join(home, 'up.bin'))).toBe(want);
    expect(await sha256(join(local, 'down.bin'))).toBe(want);
  });

  it('reads at an offset return that slice, no more than asked, and EOF past the end', async () => {
    const { sftp } = await connect();
    const content = randomBytes(100_000);
    await fsp.writeFile(join(home, 'f.bin'), content);
    const handle = await call<Buffer>((cb) => sftp.open('f.bin', 'r', cb));
    const read = (len: number, pos: number): Promise<Buffer> =>
      new Promise((resolve, reject) => sftp.read(handle, Buffer.alloc(len), 0, len, pos, (err, n, buf) => (err ? reject(err) : resolve(buf.subarray(0, n)))));
    expect((await read(1000, 5000)).equals(content.subarray(5000, 6000))).toBe(true);
    expect((await read(1000, 99_500)).equals(content.subarray(99_500))).toBe(true);
    expect((await read(1000, 100_000)).length).toBe(0); // the client maps the EOF status to 0 bytes
    await call((cb) => sftp.close(handle, cb));
  });

  it('writes land at their offsets', async () => {
    const { sftp } = await connect();
    const handle = await call<Buffer>((cb) => sftp.open('w.bin', 'w', cb));
    await call((cb) => sftp.write(handle, Buffer.from('world'), 0, 5, 6, cb));
    await call((cb) => sftp.write(handle, Buffer.from('hello '), 0, 6, 0, cb));
    await call((cb) => sftp.close(handle, cb));
    expect(await fsp.readFile(join(home, 'w.bin'), 'utf8')).toBe('hello world');
  });

  it('writes to a device go through the thread pool; regular files beside them are written synchronously', async () => {
    const { sftp } = await connect();
    // /dev/null is not a regular file, so its writes take the pool path (a device could block).
    const dev = await call<Buffer>((cb) => sftp.open('/dev/null', 'w', cb));
    await call((cb) => sftp.write(dev, Buffer.alloc(64 * 1024, 1), 0, 64 * 1024, 0, cb));
    await call((cb) => sftp.close(dev, cb));
    const h = await call<Buffer>((cb) => sftp.open('plain', 'w', cb));
    await call((cb) => sftp.write(h, Buffer.from('plain'), 0, 5, 0, cb));
    await call((cb) => sftp.close(h, cb));
    expect(await fsp.readFile(join(home, 'plain'), 'utf8')).toBe('plain');
    // Like OpenSSH's sftp-server, a write at an offset into a FIFO is a clear error, not a hang.
    await promisify(execFile)('mkfifo', [join(home, 'pipe')]);
    const reader = fsp.readFile(join(home, 'pipe'));
    const p = await call<Buffer>((cb) => sftp.open('pipe', 'w', cb));
    expect((await failure(call((cb) => sftp.write(p, Buffer.from('x'), 0, 1, 0, cb)))).code).toBe(STATUS_CODE.FAILURE);
    await call((cb) => sftp.close(p, cb));
    expect((await reader).length).toBe(0);
  });

  it('readdir lists . and .. and every entry in batches, with ls -l longnames, then EOF', async () => {
    const { sftp } = await connect();
    const names = Array.from({ length: 150 }, (_, i) => `file-${i}`);
    await Promise.all(names.map((n) => fsp.writeFile(join(home, n), 'x'.repeat(7))));
    await fsp.mkdir(join(home, 'sub'));
    // { full: true } keeps . and .. (ssh2's client drops them by default); @types/ssh2 lacks the overload.
    type ReaddirFull = (where: Buffer, opts: { full: boolean }, cb: (err: Error | undefined, list: FileEntry[]) => void) => void;
    const readdirFull = (sftp.readdir as unknown as ReaddirFull).bind(sftp);
    const handle = await call<Buffer>((cb) => sftp.opendir('.', cb));
    const seen: FileEntry[] = [];
    for (;;) {
      const batch = await call<FileEntry[]>((cb) => readdirFull(handle, { full: true }, cb)).catch((e: Error & { code: number }) => {
        expect(e.code).toBe(STATUS_CODE.EOF);
        return undefined;
      });
      if (!batch) break;
      expect(batch.length).toBeLessThanOrEqual(100);
      seen.push(...batch);
    }
    await call((cb) => sftp.close(handle, cb));
    expect(seen.map((e) => e.filename).sort()).toEqual(['.', '..', ...names, 'sub'].sort());
    const file = seen.find((e) => e.filename === 'file-7')!;
    expect(file.attrs.size).toBe(7);
    expect(file.longname).toMatch(/^-rw.{7}\s+1 \S+\s+\S+\s+7 [A-Z][a-z]{2} [ \d]\d [ \d]\d:\d\d file-7$/);
    expect(seen.find((e) => e.filename === 'sub')!.longname).toMatch(/^d[rwx-]{9} .* sub$/);
  });

  it('mkdir honours the mode and rmdir removes the directory', async () => {
    const { sftp } = await connect();
    await call((cb) => sftp.mkdir('d', { mode: 0o700 }, cb));
    expect((await fsp.stat(join(home, 'd'))).mode & 0o777).toBe(0o700);
    await call((cb) => sftp.rmdir('d', cb));
    expect(existsSync(join(home, 'd'))).toBe(false);
  });

  it('rename moves a file but refuses an existing target; posix-rename replaces it', async () => {
    const { sftp } = await connect();
    await fsp.writeFile(join(home, 'a'), 'A');
    await fsp.writeFile(join(home, 'b'), 'B');
    expect(await failure(call((cb) => sftp.rename('a', 'b', cb)))).toEqual({ code: STATUS_CODE.FAILURE, message: 'File already exists' });
    expect(await fsp.readFile(join(home, 'b'), 'utf8')).toBe('B');
    await call((cb) => sftp.rename('a', 'c', cb));
    expect(await fsp.readFile(join(home, 'c'), 'utf8')).toBe('A');
    expect(existsSync(join(home, 'a'))).toBe(false);
    await call((cb) => sftp.ext_openssh_rename('c', 'b', cb));
    expect(await fsp.readFile(join(home, 'b'), 'utf8')).toBe('A');
    expect(existsSync(join(home, 'c'))).toBe(false);
  });

  it('remove deletes a file; a missing file is NO_SUCH_FILE with a message', async () => {
    const { sftp } = await connect();
    await fsp.writeFile(join(home, 'x'), 'x');
    await call((cb) => sftp.unlink('x', cb));
    expect(existsSync(join(home, 'x'))).toBe(false);
    for (const f of [failure(call((cb) => sftp.unlink('x', cb))), failure(call((cb) => sftp.stat('nope/x', cb))), failure(call((cb) => sftp.open('nope', 'r', cb)))]) {
      const { code, message } = await f;
      expect(code).toBe(STATUS_CODE.NO_SUCH_FILE);
      expect(message).toBe('No such file or directory');
    }
  });

  it('a bad handle is FAILURE "invalid handle" and the session carries on', async () => {
    const { sftp } = await connect();
    const bad = await failure(call((cb) => sftp.fstat(Buffer.from([1, 2, 3, 4]), cb)));
    expect(bad).toEqual({ code: STATUS_CODE.FAILURE, message: 'invalid handle' });
    expect(await failure(call((cb) => sftp.mkdir('.', cb)))).toEqual({ code: STATUS_CODE.FAILURE, message: 'File already exists' });
    expect((await call<Stats>((cb) => sftp.stat('.', cb))).isDirectory()).toBe(true);
  });

  it('stat, lstat and setstat: mode, times, size', async () => {
    const { sftp } = await connect();
    await fsp.writeFile(join(home, 'f'), '0123456789');
    await fsp.symlink('f', join(home, 'l'));
    await call((cb) => sftp.setstat('f', { mode: 0o640, atime: 1_000_000_000, mtime: 1_200_000_000, size: 4 }, cb));
    const onDisk = await fsp.stat(join(home, 'f'));
    expect(onDisk.mode & 0o7777).toBe(0o640);
    expect(Math.floor(onDisk.mtimeMs / 1000)).toBe(1_200_000_000);
    expect(onDisk.size).toBe(4);
    const st = await call<Stats>((cb) => sftp.stat('l', cb));
    expect(st.isFile()).toBe(true);
    expect(st.mtime).toBe(1_200_000_000);
    expect(st.atime).toBe(1_000_000_000);
    expect((await call<Stats>((cb) => sftp.lstat('l', cb))).isSymbolicLink()).toBe(true);
    const handle = await call<Buffer>((cb) => sftp.open('f', 'r+', cb));
    await call((cb) => sftp.fchmod(handle, 0o600, cb));
    expect((await call<Stats>((cb) => sftp.fstat(handle, cb))).mode & 0o7777).toBe(0o600);
    await call((cb) => sftp.close(handle, cb));
  });

  it('symlink makes a link to the target as given, and readlink returns it', async () => {
    const { sftp } = await connect();
    await fsp.mkdir(join(home, 'd'));
    await fsp.writeFile(join(home, 'd', 't'), 'T');
    await call((cb) => sftp.symlink('t', 'd/link', cb));
    expect(await fsp.readlink(join(home, 'd', 'link'))).toBe('t');
    expect(await fsp.readFile(join(home, 'd', 'link'), 'utf8')).toBe('T');
    expect(await call<string>((cb) => sftp.readlink('d/link', cb))).toBe('t');
  });

  it('realpath resolves . to home and normalizes a/../b', async () => {
    const { sftp } = await connect();
    expect(await call<string>((cb) => sftp.realpath('.', cb))).toBe(home);
    expect(await call<string>((cb) => sftp.realpath('a/../b', cb))).toBe(join(home, 'b'));
    expect(await call<string>((cb) => sftp.realpath('/usr/../etc', cb))).toBe('/etc');
  });

  it('open handles are all closed when the client disconnects, and the session logs sftp_end', async () => {
    const { client, sftp } = await connect();
    await Promise.all([0, 1, 2, 3, 4].map((i) => fsp.writeFile(join(home, `h${i}`), 'data')));
    const handles = await Promise.all([0, 1, 2, 3, 4].map((i) => call<Buffer>((cb) => sftp.open(`h${i}`, 'r', cb))));
    expect(handles).toHaveLength(5);
    await call<Buffer>((cb) => sftp.opendir('.', cb));
    expect(await fdsUnder(home)).toBe(6);
    const before = logLines.length;
    client.end();
    await until(async () => (await fdsUnder(home)) === 0);
    await until(async () => logLines.slice(before).some((l) => l.event === 'sftp_end'));
    expect(logLines.slice(before).find((l) => l.event === 'sftp_end')).toMatchObject({ remote: 'test', opened: 5, bytesRead: 0, bytesWritten: 0 });
  });

  it.skipIf(!existsSync('/usr/bin/sftp'))('OpenSSH sftp: put, get, ls, mkdir, rename, ln -s, rm', async () => {
    const key = join(local, 'id_ed25519');
    await fsp.writeFile(key, userKey.private, { mode: 0o600 });
    await fsp.writeFile(join(local, 'src.bin'), randomBytes(300_000));
    const batch = [
      'put src.bin up.bin',
      'get up.bin down.bin',
      'ls -l',
      'mkdir d',
      'rename up.bin d/moved.bin',
      'put src.bin other.bin',
      '-rename -l other.bin d/moved.bin', // must fail: plain (legacy) SFTP rename never replaces
      'ln -s moved.bin d/link',
      'rm other.bin', // fails, failing the batch, if the rename above replaced d/moved.bin
    ].join('\n');
    await fsp.writeFile(join(local, 'batch'), batch + '\n');
    const args = ['-F', '/dev/null', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none', '-o', 'LogLevel=ERROR'];
    const { stdout } = await promisify(execFile)('/usr/bin/sftp', [...args, '-i', key, '-P', String(port), '-b', 'batch', 'me@127.0.0.1'], { cwd: local, timeout: 30_000 });
    const want = await sha256(join(local, 'src.bin'));
    expect(await sha256(join(local, 'down.bin'))).toBe(want);
    expect(await sha256(join(home, 'd', 'moved.bin'))).toBe(want);
    expect(existsSync(join(home, 'up.bin'))).toBe(false);
    expect(existsSync(join(home, 'other.bin'))).toBe(false);
    expect(await fsp.readlink(join(home, 'd', 'link'))).toBe('moved.bin');
    // With users-groups-by-id the client formats the line itself, as against sftp-server: no link count.
    expect(stdout).toMatch(new RegExp(`^-rw\\S* +\\? ${userInfo().username} +\\S+ +300000 .* up\\.bin$`, 'm'));
  });
});

describe("OpenSSH's extensions, through ssh2's client", () => {
  // ssh2's client calls for the extensions @types/ssh2 lacks.
  interface MoreExtensions {
    ext_home_dir(user: string, cb: (err: Error | undefined, home: string) => void): void;
  }
  interface StatVfs {
    f_bsize: number;
    f_blocks: number;
    f_bfree: number;
    f_files: number;
    f_flag: number;
    f_namemax: number;
  }

  it('VERSION lists every extension with the version sftp-server gives it, and limits size requests', async () => {
    const { sftp } = await connect();
    const internals = sftp as unknown as { _extensions: Record<string, string>; _maxReadLen: number; _maxWriteLen: number; maxOpenHandles: number };
    expect(internals._extensions).toEqual({
      'posix-rename@openssh.com': '1',
      'statvfs@openssh.com': '2',
      'fstatvfs@openssh.com': '2',
      'hardlink@openssh.com': '1',
      'fsync@openssh.com': '1',
      'lsetstat@openssh.com': '1',
      'limits@openssh.com': '1',
      'expand-path@openssh.com': '1',
      'copy-data': '1',
      'home-directory': '1',
      'users-groups-by-id@openssh.com': '1',
    });
    // The client asked for limits before it was ready, and took the answer.
    expect(internals._maxReadLen).toBe(256 * 1024 - 1024);
    expect(internals._maxWriteLen).toBe(256 * 1024 - 1024);
    expect(internals.maxOpenHandles).toBeGreaterThan(10);
  });

  it('statvfs and fstatvfs (of a removed file too) report the filesystem statfs sees; a missing path is NO_SUCH_FILE, a directory handle FAILURE', async () => {
    const { sftp } = await connect();
    await fsp.writeFile(join(home, 'f'), 'x');
    const want = await fsp.statfs(home);
    const st = await call<StatVfs>((cb) => sftp.ext_openssh_statvfs('.', cb));
    expect(st).toMatchObject({ f_bsize: want.bsize, f_blocks: want.blocks, f_files: want.files, f_namemax: 255 });
    expect(st.f_flag & 1).toBe(0); // not read-only
    const h = await call<Buffer>((cb) => sftp.open('f', 'r', cb));
    await fsp.unlink(join(home, 'f')); // an open file needs no name
    expect(await call<StatVfs>((cb) => sftp.ext_openssh_fstatvfs(h, cb))).toMatchObject({ f_bsize: want.bsize, f_blocks: want.blocks });
    expect((await failure(call((cb) => sftp.ext_openssh_statvfs('nope/x', cb)))).code).toBe(STATUS_CODE.NO_SUCH_FILE);
    const d = await call<Buffer>((cb) => sftp.opendir('.', cb));
    expect((await failure(call((cb) => sftp.ext_openssh_fstatvfs(d, cb)))).code).toBe(STATUS_CODE.FAILURE);
  });

  it('hardlink links a file; an existing target is FAILURE and a missing source NO_SUCH_FILE', async () => {
    const { sftp } = await connect();
    await fsp.writeFile(join(home, 'a'), 'A');
    await call((cb) => sftp.ext_openssh_hardlink('a', 'b', cb));
    expect((await fsp.stat(join(home, 'b'))).ino).toBe((await fsp.stat(join(home, 'a'))).ino);
    expect((await failure(call((cb) => sftp.ext_openssh_hardlink('a', 'b', cb)))).code).toBe(STATUS_CODE.FAILURE);
    expect((await failure(call((cb) => sftp.ext_openssh_hardlink('nope', 'c', cb)))).code).toBe(STATUS_CODE.NO_SUCH_FILE);
  });

  it('fsync flushes a file handle; a directory handle is NO_SUCH_FILE, as sftp-server answers', async () => {
    const { sftp } = await connect();
    const h = await call<Buffer>((cb) => sftp.open('f', 'w', cb));
    await call((cb) => sftp.write(h, Buffer.from('data'), 0, 4, 0, cb));
    await call((cb) => sftp.ext_openssh_fsync(h, cb));
    const d = await call<Buffer>((cb) => sftp.opendir('.', cb));
    expect((await failure(call((cb) => sftp.ext_openssh_fsync(d, cb)))).code).toBe(STATUS_CODE.NO_SUCH_FILE);
  });

  it('lsetstat sets a symlink\'s own times, leaving its target; chmod of a link is FAILURE, truncating one BAD_MESSAGE', async () => {
    const { sftp } = await connect();
    await fsp.writeFile(join(home, 't'), 'T');
    await fsp.utimes(join(home, 't'), 1_000_000_000, 1_000_000_000);
    await fsp.symlink('t', join(home, 'l'));
    await call((cb) => sftp.ext_openssh_lsetstat('l', { atime: 1_500_000_000, mtime: 1_500_000_000 }, cb));
    expect(Math.floor((await fsp.lstat(join(home, 'l'))).mtimeMs / 1000)).toBe(1_500_000_000);
    expect(Math.floor((await fsp.stat(join(home, 't'))).mtimeMs / 1000)).toBe(1_000_000_000);
    expect((await failure(call((cb) => sftp.ext_openssh_lsetstat('l', { mode: 0o600 }, cb)))).code).toBe(STATUS_CODE.FAILURE);
    await call((cb) => sftp.ext_openssh_lsetstat('t', { mode: 0o600 }, cb));
    expect((await fsp.stat(join(home, 't'))).mode & 0o777).toBe(0o600);
    expect((await failure(call((cb) => sftp.ext_openssh_lsetstat('t', { size: 0 }, cb)))).code).toBe(STATUS_CODE.BAD_MESSAGE);
  });

  // ssh2's client garbles this request's name (an offset of 20 for a 23-byte name): ask the handler itself.
  it('expand-path expands ~, ~/x and ~user against the home directories; an unknown user is NO_SUCH_FILE', async () => {
    await fsp.mkdir(join(home, 'sub'));
    const session = { home, resolve: (p: string) => resolvePath(home, p), handle: () => undefined, idNames: loadIdNames };
    const ask = (p: string): Promise<Reply> => extended(session, 'expand-path@openssh.com', new Writer().string(p).done());
    const expand = async (p: string): Promise<string> => {
      const r = await ask(p);
      if (r.kind !== 'name') throw new Error(`expected a name, got ${JSON.stringify(r)}`);
      return r.names[0]!.filename;
    };
    expect(await expand('~')).toBe(home);
    expect(await expand('')).toBe(home);
    expect(await expand('~/sub/../sub')).toBe(join(home, 'sub'));
    expect(await expand('sub/new')).toBe(join(home, 'sub', 'new')); // the last component may be missing
    const me = userInfo();
    expect(await expand(`~${me.username}`)).toBe(await fsp.realpath(me.homedir));
    expect(await ask('~no-such-user-here/x')).toEqual({ kind: 'status', code: STATUS_CODE.NO_SUCH_FILE, message: 'no such user' });
    await expect(ask('missing/dir/x')).rejects.toMatchObject({ code: 'ENOENT' }); // the session maps it to NO_SUCH_FILE
  });

  it('copy-data copies a range between handles, or to EOF with length 0; a handle onto itself is FAILURE', async () => {
    const { sftp } = await connect();
    const content = randomBytes(200_000);
    await fsp.writeFile(join(home, 'src'), content);
    const src = await call<Buffer>((cb) => sftp.open('src', 'r', cb));
    const dst = await call<Buffer>((cb) => sftp.open('dst', 'w', cb));
    await call((cb) => sftp.ext_copy_data(src, 1000, 100_000, dst, 0, cb));
    await call((cb) => sftp.ext_copy_data(src, 150_000, 0, dst, 100_000, cb));
    await call((cb) => sftp.close(dst, cb));
    expect((await fsp.readFile(join(home, 'dst'))).equals(Buffer.concat([content.subarray(1000, 101_000), content.subarray(150_000)]))).toBe(true);
    expect((await failure(call((cb) => sftp.ext_copy_data(src, 0, 0, src, 0, cb)))).code).toBe(STATUS_CODE.FAILURE);
  });

  it('home-directory names the serving home for "", a user\'s from passwd, and FAILURE for an unknown user', async () => {
    const { sftp } = await connect();
    const ext = sftp as unknown as MoreExtensions;
    expect(await call<string>((cb) => ext.ext_home_dir('', cb))).toBe(home);
    expect(await call<string>((cb) => ext.ext_home_dir(userInfo().username, cb))).toBe(userInfo().homedir);
    expect((await failure(call<string>((cb) => ext.ext_home_dir('no-such-user-here', cb)))).code).toBe(STATUS_CODE.FAILURE);
  });
});

describe('extended replies and the SSH window', () => {
  /** A relay between client and server that can hold what the server sends: meanwhile the client opens no window. */
  async function holdingRelay(): Promise<{ port: number; hold(): void; release(): void; close(): Promise<void> }> {
    let held: Buffer[] | undefined;
    const sockets: Socket[] = [];
    let toClient: Socket | undefined;
    const relay = createServer((c) => {
      const up = connectTcp(port, '127.0.0.1');
      c.pipe(up);
      up.on('data', (d: Buffer) => (held ? held.push(d) : c.write(d)));
      up.on('end', () => c.end());
      c.on('error', () => up.destroy());
      up.on('error', () => c.destroy());
      sockets.push(c, up);
      toClient = c;
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    return {
      port: (relay.address() as AddressInfo).port,
      hold: () => void (held = []),
      release() {
        const out = held ?? [];
        held = undefined;
        for (const d of out) toClient!.write(d);
      },
      async close() {
        for (const sock of sockets) sock.destroy(); // close() waits for open connections
        await new Promise<void>((r) => relay.close(() => r()));
      },
    };
  }

  /** Reads of `len` at each offset and a statvfs after the reads marked; resolves with the order replies came in. */
  function readsAndStatvfs(sftp: SFTPWrapper, handle: Buffer, content: Buffer, len: number, count: number, statvfsAfter: (i: number) => boolean): Promise<string[]> {
    const order: string[] = [];
    const done: Promise<void>[] = [];
    for (let i = 0; i < count; i++) {
      done.push(
        new Promise<void>((resolve, reject) =>
          sftp.read(handle, Buffer.alloc(len), 0, len, i * len, (err, n, buf) => {
            if (err) return reject(err);
            order.push(buf.subarray(0, n).equals(content.subarray(i * len, (i + 1) * len)) ? `read ${i}` : `read ${i} corrupt`);
            resolve();
          }),
        ),
      );
      if (statvfsAfter(i)) done.push(call<{ f_namemax: number }>((cb) => sftp.ext_openssh_statvfs('.', cb)).then((st) => void order.push(`statvfs ${i} ${st.f_namemax}`)));
    }
    return Promise.all(done).then(() => order);
  }

  const expectedOrder = (count: number, statvfsAfter: (i: number) => boolean): string[] =>
    Array.from({ length: count }, (_, i) => (statvfsAfter(i) ? [`read ${i}`, `statvfs ${i} 255`] : [`read ${i}`])).flat();

  it('extended replies queued behind reads that wait for the client\'s window arrive intact and in order', async () => {
    const relay = await holdingRelay();
    try {
      const { sftp } = await connect(relay.port);
      const chunk = 256 * 1024 - 1024;
      const content = randomBytes(16 * chunk);
      await fsp.writeFile(join(home, 'big'), content);
      const handle = await call<Buffer>((cb) => sftp.open('big', 'r', cb));
      relay.hold();
      const every4th = (i: number): boolean => i % 4 === 3;
      const order = readsAndStatvfs(sftp, handle, content, chunk, 16, every4th);
      await new Promise((r) => setTimeout(r, 500));
      relay.release();
      expect(await order).toEqual(expectedOrder(16, every4th));
    } finally {
      await relay.close();
    }
  });

  it('an extended reply the window cuts in two is finished, then what queued behind it, once the window opens', async () => {
    const relay = await holdingRelay();
    try {
      const { sftp } = await connect(relay.port);
      const handle = await call<Buffer>((cb) => sftp.open('big', 'w+', cb));
      const window = (lastServed as unknown as { outgoing: { window: number } }).outgoing.window;
      // Nine reads whose replies (13 bytes of header each) leave less of the window than a statvfs reply (97 bytes).
      const len = Math.floor((window - 50) / 9) - 13;
      expect(window - 9 * (len + 13)).toBeLessThan(97);
      const content = randomBytes(20 * len);
      await fsp.writeFile(join(home, 'big'), content);
      relay.hold();
      const after = (i: number): boolean => i === 8 || i === 12;
      const order = readsAndStatvfs(sftp, handle, content, len, 20, after);
      await new Promise((r) => setTimeout(r, 500));
      relay.release();
      expect(await order).toEqual(expectedOrder(20, after));
    } finally {
      await relay.close();
    }
  });
});
