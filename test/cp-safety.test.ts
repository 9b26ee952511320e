// burrow cp against a remote that attacks the client (CVE-2019-6111 class): nothing may be
// written outside the destination, and nothing through a symbolic link the copy did not find in
// place and the user did not name.
//
// The hostile server here is a real SSH peer written in this test: an ssh2 Server on a loopback
// TCP port, which the agent dials as an ordinary `user@127.0.0.1:PORT` target over real SSH and
// SFTP. Its SFTP answers are crafted: names like `../x` and `/abs`, names listed twice (first as
// a link out of the destination, then as a file or directory), a `.x.burrow-part` link next to
// `x`, a name longer than NAME_MAX. The rest runs against a real burrowd host.

import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { Attributes, Connection, FileEntry, SFTPWrapper } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, startDaemon, stopAllDaemons, type RunningDaemon } from './helpers/daemon.js';
import { cpPair } from './helpers/cp.js';
import { keygen } from './helpers/sshd.js';

const { STATUS_CODE } = ssh2.utils.sftp;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

afterAll(stopAllDaemons);

/** What a path looks like to the hostile server; a list is answered in turn, the last one repeated. */
/** A link that `lies` answers STAT with itself, as no honest server does (STAT follows links). */
type Node = { kind: 'dir'; names: string[]; endless?: boolean } | { kind: 'file'; data: Buffer } | { kind: 'link'; target: string; lies?: boolean };

/** Every regular file and link under `dir`, with content or target and mode: a fingerprint to compare. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isSymbolicLink()) out[p] = `link ${readlinkSync(p)}`;
      else if (st.isDirectory()) {
        out[p] = `dir ${(st.mode & 0o7777).toString(8)}`;
        walk(p);
      } else out[p] = `file ${(st.mode & 0o7777).toString(8)} ${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
    }
  };
  walk(dir);
  return out;
}

interface Hostile {
  port: number;
  /** Replace the served tree (answers per path), and REALPATH's answers where they differ from the path. */
  serve(tree: Record<string, Node | Node[]>, realpaths?: Record<string, string>): void;
  close(): Promise<void>;
}

async function startHostileServer(dir: string): Promise<Hostile> {
  const { priv } = keygen(join(dir, 'hostile_host_key'), 'hostile');
  let tree: Record<string, Node | Node[]> = {};
  let realpaths: Record<string, string> = {};
  const asked = new Map<string, number>();
  const answer = (p: string): Node | undefined => {
    const n = tree[p];
    if (!Array.isArray(n)) return n;
    const i = asked.get(p) ?? 0;
    asked.set(p, i + 1);
    return n[Math.min(i, n.length - 1)];
  };
  // READLINK and OPEN take the answer of their kind, so that only (l)stat answers change in turn.
  const pick = (p: string, kind: Node['kind']): Node | undefined => {
    const n = tree[p];
    return (Array.isArray(n) ? n : n ? [n] : []).find((x) => x.kind === kind);
  };
  const attrsOf = (n: Node): Attributes => {
    const mode = n.kind === 'dir' ? S_IFDIR | 0o777 : n.kind === 'link' ? S_IFLNK | 0o777 : S_IFREG | 0o7777;
    return { mode, uid: 0, gid: 0, size: n.kind === 'file' ? n.data.length : 0, atime: 1_600_000_000, mtime: 1_600_000_000 };
  };
  const serveSftp = (sftp: SFTPWrapper): void => {
    const handles = new Map<number, { path: string; node: Node; listed?: boolean }>();
    let next = 0;
    const handle = (reqid: number, path: string, node: Node): void => {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(next);
      handles.set(next++, { path, node });
      sftp.handle(reqid, h);
    };
    const lookup = (h: Buffer) => handles.get(h.readUInt32BE(0));
    sftp.on('REALPATH', (id, p) => {
      const real = realpaths[p] ?? (p.startsWith('/') ? p : `/${p}`);
      sftp.name(id, [{ filename: real, longname: real, attrs: {} as Attributes }]);
    });
    const statLike = (follow: boolean) => (id: number, p: string) => {
      let n = answer(p);
      if (follow && n?.kind === 'link' && !n.lies) n = answer(n.target);
      if (!n) return sftp.status(id, STATUS_CODE.NO_SUCH_FILE, 'No such file');
      sftp.attrs(id, attrsOf(n));
    };
    sftp.on('STAT', statLike(true));
    sftp.on('LSTAT', statLike(false));
    sftp.on('READLINK', (id, p) => {
      const n = pick(p, 'link');
      if (n?.kind !== 'link') return sftp.status(id, STATUS_CODE.FAILURE, 'Not a link');
      sftp.name(id, [{ filename: n.target, longname: n.target, attrs: {} as Attributes }]);
    });
    sftp.on('OPENDIR', (id, p) => {
      const d = pick(p, 'dir');
      if (d?.kind !== 'dir') return sftp.status(id, STATUS_CODE.NO_SUCH_FILE, 'No such directory');
      handle(id, p, d);
    });
    sftp.on('READDIR', (id, h) => {
      const o = lookup(h);
      if (!o || o.node.kind !== 'dir') return sftp.status(id, STATUS_CODE.FAILURE, 'Bad handle');
      // An endless listing: batches of 1,000 names, never an end.
      if (o.node.endless) return sftp.name(id, Array.from({ length: 1000 }, (_, i) => ({ filename: `e${i}`, longname: `e${i}`, attrs: {} as Attributes })));
      if (o.listed) return sftp.status(id, STATUS_CODE.EOF, 'End');
      o.listed = true;
      const names: FileEntry[] = o.node.names.map((name) => ({ filename: name, longname: name, attrs: { mode: S_IFREG | 0o644 } as Attributes }));
      sftp.name(id, names);
    });
    sftp.on('OPEN', (id, p) => {
      const n = pick(p, 'file');
      if (n?.kind !== 'file') return sftp.status(id, STATUS_CODE.NO_SUCH_FILE, 'No such file');
      handle(id, p, n);
    });
    sftp.on('READ', (id, h, offset, len) => {
      const o = lookup(h);
      if (!o || o.node.kind !== 'file') return sftp.status(id, STATUS_CODE.FAILURE, 'Bad handle');
      if (offset >= o.node.data.length) return sftp.status(id, STATUS_CODE.EOF, 'End');
      sftp.data(id, o.node.data.subarray(offset, offset + len));
    });
    sftp.on('FSTAT', (id, h) => {
      const o = lookup(h);
      if (!o) return sftp.status(id, STATUS_CODE.FAILURE, 'Bad handle');
      sftp.attrs(id, attrsOf(o.node));
    });
    sftp.on('CLOSE', (id, h) => {
      handles.delete(h.readUInt32BE(0));
      sftp.status(id, STATUS_CODE.OK, 'OK');
    });
    for (const op of ['WRITE', 'SETSTAT', 'FSETSTAT', 'MKDIR', 'RMDIR', 'REMOVE', 'RENAME', 'SYMLINK'] as const) {
      sftp.on(op, (id: number) => sftp.status(id, STATUS_CODE.PERMISSION_DENIED, 'Read-only'));
    }
  };
  const clients = new Set<Connection>();
  const server = new ssh2.Server({ hostKeys: [priv] }, (client: Connection) => {
    clients.add(client);
    client.on('close', () => clients.delete(client));
    client.on('authentication', (ctx) => ctx.accept()); // it wants in, not out
    client.on('error', () => undefined);
    client.on('ready', () => {
      client.on('session', (accept) => {
        const session = accept();
        session.on('sftp', (acceptSftp) => serveSftp(acceptSftp()));
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    serve(t, r = {}) {
      tree = t;
      realpaths = r;
      asked.clear();
    },
    close: () => {
      for (const c of clients) c.end();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}

describe('burrow cp -r from a hostile SFTP server (a real SSH peer written in this test)', () => {
  let agent: RunningDaemon;
  let hostile: Hostile;
  let work: string;
  let outside: string;
  let target: string;
  beforeAll(async () => {
    agent = await startDaemon();
    work = mkdtempSync(join(tmpdir(), 'burrow-cp-safety-'));
    outside = join(work, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'victim'), 'victim content\n', { mode: 0o600 });
    mkdirSync(join(outside, 'dir'), { mode: 0o700 });
    hostile = await startHostileServer(work);
    target = `tester@127.0.0.1:${hostile.port}`;
  });
  afterAll(async () => {
    await hostile?.close();
    rmSync(work, { recursive: true, force: true });
  });

  it('writes nothing outside the destination, whatever the listing says', async () => {
    const payload = { kind: 'file', data: Buffer.from('PAYLOAD\n') } as const;
    hostile.serve({
      '/evil': { kind: 'dir', names: ['.', '..', '../escaped', '/abs', 'a/b', 'ok.txt', 'dup', 'dup', 'dupdir', 'dupdir', '.x.burrow-part', 'x', 'sub', 'n'.repeat(300), 'dup2', 'dup2'] },
      '/evil/../escaped': payload,
      '/escaped': payload,
      '/abs': payload,
      '/evil/a/b': payload,
      '/evil/ok.txt': { kind: 'file', data: Buffer.from('fine\n') },
      // Listed twice: a link out first, then a file (then a directory) under the same name.
      '/evil/dup': [{ kind: 'link', target: join(outside, 'victim') }, payload],
      '/evil/dupdir': [{ kind: 'link', target: join(outside, 'dir') }, { kind: 'dir', names: ['payload.txt'] }],
      '/evil/dupdir/payload.txt': payload,
      '/evil/dup2': [payload, { kind: 'link', target: join(outside, 'victim') }],
      // The part name old versions used, as a link out, next to the file it would be for.
      '/evil/.x.burrow-part': { kind: 'link', target: join(outside, 'victim') },
      '/evil/x': { kind: 'file', data: Buffer.from('x content\n') },
      '/evil/sub': { kind: 'dir', names: ['..', '../../escaped2', 'inner.txt'] },
      '/evil/sub/inner.txt': { kind: 'file', data: Buffer.from('inner\n') },
      '/evil/sub/../../escaped2': payload,
      [`/evil/${'n'.repeat(300)}`]: payload,
    });
    const before = snapshot(outside);
    const dest = join(work, 'evil');
    const r = await runCli(agent.cliEnv, ['cp', '-rp', `${target}:/evil`, dest], { timeoutMs: 60_000 });
    expect(r.stderr).toMatch(/skipped in tester@127\.0\.0\.1:\d+:\/evil: refusing remote file name "\.\.\/escaped": it is not a plain name/);
    expect(r.stderr).toMatch(/refusing remote file name "\/abs"/);
    expect(r.stderr).toMatch(/refusing remote file name "a\/b"/);
    expect(r.stderr).toMatch(/refusing remote file name "n{60}…": it is longer than 255 bytes/);
    expect(r.stderr).toMatch(/\/evil\/dup: listed twice, copied once/);
    expect(r.code).toBe(1); // the rest is copied; what was skipped makes the status 1, like cp
    expect(snapshot(outside)).toEqual(before);
    expect(readdirSync(work).sort()).toEqual(['evil', 'hostile_host_key', 'hostile_host_key.pub', 'outside']);
    expect(readFileSync(join(dest, 'ok.txt'), 'utf8')).toBe('fine\n');
    expect(readFileSync(join(dest, 'x'), 'utf8')).toBe('x content\n');
    expect(readFileSync(join(dest, 'sub', 'inner.txt'), 'utf8')).toBe('inner\n');
    // Links are made as links and never followed, whatever comes after them.
    expect(readlinkSync(join(dest, 'dup'))).toBe(join(outside, 'victim'));
    expect(readlinkSync(join(dest, 'dupdir'))).toBe(join(outside, 'dir'));
    expect(readlinkSync(join(dest, '.x.burrow-part'))).toBe(join(outside, 'victim'));
    expect(readFileSync(join(dest, 'dup2'), 'utf8')).toBe('PAYLOAD\n');
    // -p gave the files the remote's mode without setuid/setgid reaching anything outside.
    expect(statSync(join(outside, 'victim')).mode & 0o7777).toBe(0o600);
    expect(readdirSync(dest).filter((n) => n.includes('.burrow-part.') || n.includes('.burrow-link.'))).toEqual([]);
  });

  it('a second copy replaces the links the first one made instead of writing through them', async () => {
    const dest = join(work, 'evil');
    hostile.serve({
      '/evil': { kind: 'dir', names: ['dup', 'dupdir', '.x.burrow-part'] },
      '/evil/dup': { kind: 'file', data: Buffer.from('now a file\n') },
      '/evil/dupdir': { kind: 'dir', names: ['payload.txt'] },
      '/evil/dupdir/payload.txt': { kind: 'file', data: Buffer.from('inside\n') },
      '/evil/.x.burrow-part': { kind: 'file', data: Buffer.from('a plain file now\n') },
    });
    const before = snapshot(outside);
    // Into the directory that holds the first copy: the same paths again.
    const r = await runCli(agent.cliEnv, ['cp', '-r', `${target}:/evil`, `${work}/`], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(snapshot(outside)).toEqual(before);
    expect(lstatSync(join(dest, 'dup')).isFile()).toBe(true);
    expect(readFileSync(join(dest, 'dup'), 'utf8')).toBe('now a file\n');
    expect(lstatSync(join(dest, 'dupdir')).isDirectory()).toBe(true);
    expect(readFileSync(join(dest, 'dupdir', 'payload.txt'), 'utf8')).toBe('inside\n');
    expect(readFileSync(join(dest, '.x.burrow-part'), 'utf8')).toBe('a plain file now\n');
  });

  it('a glob expanded from a hostile listing matches only plain names inside the directory', async () => {
    hostile.serve({
      '/logs': { kind: 'dir', names: ['a.gz', '../up.gz', '/etc/abs.gz', 'b.gz', 'c.txt'] },
      '/logs/a.gz': { kind: 'file', data: Buffer.from('a') },
      '/logs/b.gz': { kind: 'file', data: Buffer.from('b') },
      '/logs/c.txt': { kind: 'file', data: Buffer.from('c') },
      '/logs/../up.gz': { kind: 'file', data: Buffer.from('up') },
      '/up.gz': { kind: 'file', data: Buffer.from('up') },
      '/logs//etc/abs.gz': { kind: 'file', data: Buffer.from('abs') },
      '/etc/abs.gz': { kind: 'file', data: Buffer.from('abs') },
    });
    const dest = join(work, 'globbed');
    mkdirSync(dest);
    const r = await runCli(agent.cliEnv, ['cp', `${target}:/logs/*.gz`, dest], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(readdirSync(dest).sort()).toEqual(['a.gz', 'b.gz']);
    expect(readdirSync(work).sort()).toEqual(['evil', 'globbed', 'hostile_host_key', 'hostile_host_key.pub', 'outside']);
  });

  it('a home whose realpath answers "/home/..": the copy into a directory is refused, nothing lands in its parent', async () => {
    const payload = { kind: 'file', data: Buffer.from('PAYLOAD\n') } as const;
    hostile.serve({ '.': { kind: 'dir', names: ['planted.txt'] }, 'foo/..': { kind: 'dir', names: ['planted.txt'] }, 'planted.txt': payload }, { '.': '/home/..', 'foo/..': '/srv/..' });
    const parent = join(work, 'realpath');
    const backup = join(parent, 'backup');
    mkdirSync(backup, { recursive: true });
    for (const src of [`${target}:~`, `${target}:`, `${target}:.`, `${target}:foo/..`]) {
      const r = await runCli(agent.cliEnv, ['cp', '-r', src, `${backup}/`], { timeoutMs: 60_000 });
      expect(r.stderr, src).toMatch(/BadArgument: .* resolves to "\/(home|srv)\/\.\.", which has no name to copy under; name the destination itself/);
      expect(r.code).toBe(2);
      expect(readdirSync(parent)).toEqual(['backup']);
      expect(readdirSync(backup)).toEqual([]);
    }
  });

  it('a name listed twice by a glob is copied once: a lying "link" first cannot be written through by its twin', async () => {
    hostile.serve({
      '/g': { kind: 'dir', names: ['x', 'x'] },
      // Answered in turn: the glob's lstat (twice, before de-duplication), then each source's stat.
      '/g/x': [
        { kind: 'file', data: Buffer.from('fine\n') },
        { kind: 'file', data: Buffer.from('fine\n') },
        { kind: 'link', target: join(outside, 'victim'), lies: true },
        { kind: 'file', data: Buffer.from('fine\n') },
      ],
    });
    const before = snapshot(outside);
    const dest = join(work, 'glob-twice');
    mkdirSync(dest);
    const r = await runCli(agent.cliEnv, ['cp', `${target}:/g/*`, dest], { timeoutMs: 60_000 });
    expect(snapshot(outside)).toEqual(before);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(readdirSync(dest)).toEqual(['x']);
    expect(lstatSync(join(dest, 'x')).isFile()).toBe(true);
  });

  it('two sources of one name: a top-level source claiming to be a link is refused, the second of a name is not copied over the first', async () => {
    hostile.serve({
      '/a/y': { kind: 'link', target: join(outside, 'victim'), lies: true },
      '/b/y': { kind: 'file', data: Buffer.from('PAYLOAD\n') },
      '/a/z': { kind: 'file', data: Buffer.from('first z\n') },
      '/b/z': { kind: 'file', data: Buffer.from('second z\n') },
    });
    const before = snapshot(outside);
    const dest = join(work, 'same-name');
    mkdirSync(dest);
    const r = await runCli(agent.cliEnv, ['cp', `${target}:/a/y`, `${target}:/b/y`, `${target}:/a/z`, `${target}:/b/z`, `${dest}/`], { timeoutMs: 60_000 });
    expect(snapshot(outside)).toEqual(before);
    expect(r.stderr).toMatch(/IoError: tester@127\.0\.0\.1:\d+:\/a\/y: not a regular file or directory/);
    expect(r.stderr).toMatch(/BadArgument: not overwriting .*\/same-name\/z, just copied from another source, with tester@127\.0\.0\.1:\d+:\/b\/z/);
    expect(r.code).toBe(1);
    // A name is claimed by its first source, whether or not that one could be copied.
    expect(r.stderr).toMatch(/BadArgument: not overwriting .*\/same-name\/y, just copied from another source/);
    expect(readdirSync(dest)).toEqual(['z']);
    expect(readFileSync(join(dest, 'z'), 'utf8')).toBe('first z\n');
  });

  it('remote names with terminal escapes reach the terminal escaped', async () => {
    const evil = '\x1b]0;owned\x07\x1b[2K\rok\x9b1m\x7f';
    hostile.serve({
      '/t': { kind: 'dir', names: [evil, evil] },
      [`/t/${evil}`]: { kind: 'file', data: Buffer.from('t\n') },
    });
    const dest = join(work, 'escapes');
    const r = await runCli(agent.cliEnv, ['cp', '-r', `${target}:/t`, dest], { timeoutMs: 60_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('\\x1b]0;owned\\x07\\x1b[2K\\x0dok\\x9b1m\\x7f: listed twice, copied once');
    expect(r.stderr).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
    // --json keeps the name exact, as JSON escapes (C1 and DEL too).
    const j = await runCli(agent.cliEnv, ['cp', '-r', '--json', `${target}:/t`, join(work, 'escapes-json')], { timeoutMs: 60_000 });
    expect(j.stdout).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f]/);
    const warning = j.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; message?: string }).find((e) => e.event === 'warning');
    expect(warning?.message).toContain(`${evil}: listed twice`);
  });

  it('an endless directory listing is refused after 1,000,000 entries, not kept without end', async () => {
    hostile.serve({ '/endless': { kind: 'dir', names: [], endless: true } });
    const r = await runCli(agent.cliEnv, ['cp', '-r', `${target}:/endless`, join(work, 'endless')], { timeoutMs: 120_000 });
    expect(r.stderr).toMatch(/IoError: tester@127\.0\.0\.1:\d+:\/endless: lists more than 1000000 entries; not copying it/);
    expect(r.code).toBe(1);
  }, 130_000);

  it('-p applies a remote mode without setuid, setgid or sticky bits', async () => {
    // The hostile server gives files mode 7777 and directories 0777.
    hostile.serve({ '/m': { kind: 'dir', names: ['f'] }, '/m/f': { kind: 'file', data: Buffer.from('m\n') } });
    const dest = join(work, 'modes');
    const r = await runCli(agent.cliEnv, ['cp', '-rp', `${target}:/m`, dest], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(statSync(join(dest, 'f')).mode & 0o7777).toBe(0o777);
    expect(statSync(dest).mode & 0o7777).toBe(0o777);
    const one = join(work, 'modes-one');
    expect((await runCli(agent.cliEnv, ['cp', '-p', `${target}:/m/f`, one], { timeoutMs: 60_000 })).code).toBe(0);
    expect(statSync(one).mode & 0o7777).toBe(0o777);
  });

  it.skipIf(process.getuid?.() !== 0)('a destination link another user planted in a sticky world-writable directory is not followed (as root: chown -h)', async () => {
    hostile.serve({ '/m/f': { kind: 'file', data: Buffer.from('PAYLOAD\n') } });
    const sticky = join(work, 'sticky');
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    const victim = join(work, 'bashrc');
    writeFileSync(victim, 'victim\n');
    const planted = join(sticky, 'report.txt');
    symlinkSync(victim, planted);
    execFileSync('chown', ['-h', '65534:65534', planted]);
    const r = await runCli(agent.cliEnv, ['cp', `${target}:/m/f`, planted], { timeoutMs: 60_000 });
    expect(r.stderr).toMatch(/IoError: .*report\.txt: a symbolic link owned by uid 65534 in a sticky world-writable directory; not following it/);
    expect(r.code).toBe(1);
    expect(readFileSync(victim, 'utf8')).toBe('victim\n');
    expect(readlinkSync(planted)).toBe(victim);
    // The same link as a directory destination of cp -r.
    const dirVictim = join(work, 'victim-dir');
    mkdirSync(dirVictim);
    const plantedDir = join(sticky, 'out');
    symlinkSync(dirVictim, plantedDir);
    execFileSync('chown', ['-h', '65534:65534', plantedDir]);
    hostile.serve({ '/m': { kind: 'dir', names: ['f'] }, '/m/f': { kind: 'file', data: Buffer.from('PAYLOAD\n') } });
    for (const to of [plantedDir, `${plantedDir}/`]) {
      const d = await runCli(agent.cliEnv, ['cp', '-r', `${target}:/m`, to], { timeoutMs: 60_000 });
      expect(d.stderr, to).toMatch(/out: a symbolic link owned by uid 65534 in a sticky world-writable directory/);
      expect(readdirSync(dirVictim)).toEqual([]);
    }
  });
});

describe('burrow cp and planted part-file links on a real burrowd host', () => {
  let host: RunningDaemon;
  let agent: RunningDaemon;
  let work: string;
  beforeAll(async () => {
    ({ host, agent, work } = await cpPair());
  });

  it('a host directory holding a .x.burrow-part link next to x: cp -r writes nothing through it', async () => {
    const victim = join(work, 'victim');
    writeFileSync(victim, 'victim\n', { mode: 0o600 });
    const tree = join(host.home, 'tree');
    mkdirSync(tree);
    writeFileSync(join(tree, 'x'), 'remote x\n', { mode: 0o755 });
    symlinkSync(victim, join(tree, '.x.burrow-part'));
    symlinkSync(victim, join(tree, '.x.burrow-part.000000000000'));
    const dest = join(work, 'tree-copy');
    for (const args of [['-r'], ['-rp'], ['-r', '--resume']]) {
      const r = await runCli(agent.cliEnv, ['cp', ...args, 'box:tree', dest], { timeoutMs: 60_000 });
      expect(r.stderr, args.join(' ')).toBe('');
      expect(r.code).toBe(0);
      expect(readFileSync(victim, 'utf8')).toBe('victim\n');
      expect(statSync(victim).mode & 0o777).toBe(0o600);
      expect(readFileSync(join(dest, 'x'), 'utf8')).toBe('remote x\n');
      expect(readlinkSync(join(dest, '.x.burrow-part'))).toBe(victim);
    }
  });

  it('--resume never continues a part file that is a link, on either side', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    const src = join(work, 'big.bin');
    writeFileSync(src, data);
    // An outside file holding a good prefix of the source: resuming through a link would append to it.
    const outsideLocal = join(work, 'outside-local');
    const outsideRemote = join(host.home, 'outside-remote');
    writeFileSync(outsideLocal, data.subarray(0, 2 * 1024 * 1024));
    writeFileSync(outsideRemote, data.subarray(0, 2 * 1024 * 1024));
    const remoteDir = join(host.home, 'up');
    mkdirSync(remoteDir);
    symlinkSync(outsideRemote, join(remoteDir, '.big.bin.burrow-part.0123456789ab'));
    const up = await runCli(agent.cliEnv, ['cp', '--resume', '--json', src, 'box:up/big.bin'], { timeoutMs: 60_000 });
    expect(up.code).toBe(0);
    expect(JSON.parse(up.stdout.trim().split('\n').pop()!)).toMatchObject({ event: 'done', resumedBytes: 0 });
    expect(readFileSync(join(remoteDir, 'big.bin')).equals(data)).toBe(true);
    expect(statSync(outsideRemote).size).toBe(2 * 1024 * 1024);

    const localDir = join(work, 'down');
    mkdirSync(localDir);
    symlinkSync(outsideLocal, join(localDir, '.big.bin.burrow-part.0123456789ab'));
    const down = await runCli(agent.cliEnv, ['cp', '--resume', '--json', 'box:up/big.bin', join(localDir, 'big.bin')], { timeoutMs: 60_000 });
    expect(down.code).toBe(0);
    expect(JSON.parse(down.stdout.trim().split('\n').pop()!)).toMatchObject({ event: 'done', resumedBytes: 0 });
    expect(readFileSync(join(localDir, 'big.bin')).equals(data)).toBe(true);
    expect(statSync(outsideLocal).size).toBe(2 * 1024 * 1024);
  });

  it('a destination link the user named is followed; a hard-linked part file is not resumed', async () => {
    const real = join(work, 'real.txt');
    writeFileSync(real, 'old\n');
    const named = join(work, 'named-link');
    symlinkSync(real, named);
    writeFileSync(join(host.home, 'new.txt'), 'new\n');
    expect((await runCli(agent.cliEnv, ['cp', 'box:new.txt', named])).code).toBe(0);
    expect(lstatSync(named).isSymbolicLink()).toBe(true);
    expect(readFileSync(real, 'utf8')).toBe('new\n');
    // A part file with a second name elsewhere (holding a good prefix) is not continued in place.
    const data = randomBytes(3 * 1024 * 1024);
    writeFileSync(join(host.home, 'fresh.bin'), data);
    const other = join(work, 'other-name');
    writeFileSync(other, data.subarray(0, 2 * 1024 * 1024));
    execFileSync('ln', [other, join(work, '.fresh.bin.burrow-part.00000000aaaa')]);
    const r = await runCli(agent.cliEnv, ['cp', '--resume', '--json', 'box:fresh.bin', join(work, 'fresh.bin')]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toMatchObject({ event: 'done', resumedBytes: 0 });
    expect(statSync(other).size).toBe(2 * 1024 * 1024);
    expect(readFileSync(join(work, 'fresh.bin')).equals(data)).toBe(true);
  });

  it.skipIf(process.getuid?.() !== 0)('--resume never continues a part file another user owns, on either side (as root: chown)', async () => {
    const data = randomBytes(3 * 1024 * 1024);
    writeFileSync(join(host.home, 'owned.bin'), data);
    const localPart = join(work, '.owned.bin.burrow-part.0123456789ab');
    writeFileSync(localPart, data.subarray(0, 2 * 1024 * 1024));
    execFileSync('chown', ['65534:65534', localPart]);
    const down = await runCli(agent.cliEnv, ['cp', '--resume', '--json', 'box:owned.bin', join(work, 'owned.bin')], { timeoutMs: 60_000 });
    expect(down.code).toBe(0);
    expect(JSON.parse(down.stdout.trim().split('\n').pop()!)).toMatchObject({ event: 'done', resumedBytes: 0 });
    expect(readFileSync(join(work, 'owned.bin')).equals(data)).toBe(true);

    const remoteDir = join(host.home, 'up-owned');
    mkdirSync(remoteDir);
    const remotePart = join(remoteDir, '.owned.bin.burrow-part.0123456789ab');
    writeFileSync(remotePart, data.subarray(0, 2 * 1024 * 1024));
    execFileSync('chown', ['65534:65534', remotePart]);
    const up = await runCli(agent.cliEnv, ['cp', '--resume', '--json', join(work, 'owned.bin'), 'box:up-owned/owned.bin'], { timeoutMs: 60_000 });
    expect(up.code).toBe(0);
    expect(JSON.parse(up.stdout.trim().split('\n').pop()!)).toMatchObject({ event: 'done', resumedBytes: 0 });
    expect(readFileSync(join(remoteDir, 'owned.bin')).equals(data)).toBe(true);
  });

  it('-rL skips a link back to a directory being copied with a warning, and the rest is copied', async () => {
    const loopy = join(host.home, 'loopy');
    mkdirSync(join(loopy, 'inner'), { recursive: true });
    writeFileSync(join(loopy, 'inner', 'f.txt'), 'f\n');
    symlinkSync('..', join(loopy, 'inner', 'up'));
    const dest = join(work, 'loopy-copy');
    const r = await runCli(agent.cliEnv, ['cp', '-rL', 'box:loopy', dest], { timeoutMs: 60_000 });
    expect(r.stderr).toMatch(/^burrow: warning: skipped box:loopy\/inner\/up: a symbolic link loop \(it leads back to a directory being copied\)\n$/);
    expect(r.code).toBe(1);
    expect(readFileSync(join(dest, 'inner', 'f.txt'), 'utf8')).toBe('f\n');
    expect(readdirSync(join(dest, 'inner'))).toEqual(['f.txt']);
  });

  it('a tree deeper than 256 levels is copied to that depth, the rest skipped with a warning', async () => {
    const deep = join(host.home, 'deep');
    const leaf = join(deep, ...Array<string>(300).fill('d'));
    mkdirSync(leaf, { recursive: true });
    writeFileSync(join(leaf, 'bottom.txt'), 'bottom\n');
    writeFileSync(join(deep, 'top.txt'), 'top\n');
    const dest = join(work, 'deep-copy');
    const r = await runCli(agent.cliEnv, ['cp', '-r', 'box:deep', dest], { timeoutMs: 120_000 });
    expect(r.stderr).toMatch(/^burrow: warning: skipped box:deep(\/d){256}: deeper than 256 directory levels\n$/);
    expect(r.code).toBe(1);
    expect(readFileSync(join(dest, 'top.txt'), 'utf8')).toBe('top\n');
    expect(readdirSync(join(dest, ...Array<string>(255).fill('d')))).toEqual([]);
  });

  it('upload -rp sets a directory mode and times on the host without following a link (lsetstat)', async () => {
    const tree = join(work, 'modes-up');
    mkdirSync(join(tree, 'sub'), { recursive: true });
    writeFileSync(join(tree, 'sub', 'f'), 'f\n');
    chmodSync(join(tree, 'sub'), 0o750);
    utimesSync(join(tree, 'sub'), 1_600_000_000, 1_600_000_000);
    const r = await runCli(agent.cliEnv, ['cp', '-rp', tree, 'box:modes-up'], { timeoutMs: 60_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const sub = lstatSync(join(host.home, 'modes-up', 'sub'));
    expect(sub.mode & 0o7777).toBe(0o750);
    expect(Math.round(sub.mtimeMs / 1000)).toBe(1_600_000_000);
  });

  it('an escaped glob character names the literal file; -- ends the options', async () => {
    writeFileSync(join(host.home, 'a[1].txt'), 'literal\n');
    writeFileSync(join(host.home, 'a1.txt'), 'one\n');
    const r = await runCli(agent.cliEnv, ['cp', 'box:a\\[1\\].txt', join(work, 'lit.txt')]);
    expect(r.stderr).toBe('');
    expect(readFileSync(join(work, 'lit.txt'), 'utf8')).toBe('literal\n');
    const g = await runCli(agent.cliEnv, ['cp', '--', 'box:a[1].txt', join(work, 'glob.txt')]);
    expect(g.stderr).toBe('');
    expect(readFileSync(join(work, 'glob.txt'), 'utf8')).toBe('one\n');
  });
});
