// OpenSSH's sftp and scp against the built-in host through `burrow proxy`, side by side with a
// stock sshd's sftp-server: the same commands give the same exit status, the same output (paths,
// dates and free space masked) and the same files.

import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAllDaemons } from './helpers/daemon.js';
import { proxySetup, type ProxySetup } from './helpers/proxy.js';
import { startSshd, type RunningSshd } from './helpers/sshd.js';

/** One SFTP server under test: how OpenSSH's clients reach it, and where it puts a case's files. */
interface Side {
  name: string;
  /** ssh options (before the destination) and the destination. */
  ssh: string[];
  dest: string;
  /** The server's home (its sftp session starts there). */
  home: string;
  /** Holds each case's directory. */
  root: string;
}

interface Outcome {
  status: number | null;
  stdout: string;
  stderr: string;
  /** The case directory afterwards. */
  files: string[];
}

let p: ProxySetup;
let sshd: RunningSshd;
let stockRoot: string;
let builtin: Side;
let stock: Side;
let seq = 0;
/** A client-side file, outside the compared directories. */
let localFile: string;

beforeAll(async () => {
  p = await proxySetup();
  sshd = await startSshd();
  stockRoot = mkdtempSync(join(tmpdir(), 'burrow-sftp-stock-'));
  localFile = join(p.work, 'local-file');
  writeFileSync(localFile, randomBytes(100_000));
  builtin = { name: 'built-in', ssh: ['-F', p.config], dest: 'box.burrow', home: p.host.home, root: p.host.home };
  const direct = ['-F', '/dev/null', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none', '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', '-i', sshd.clientKeyPath, '-o', `Port=${sshd.port}`];
  stock = { name: 'stock', ssh: direct, dest: `${sshd.user}@127.0.0.1`, home: userInfo().homedir, root: stockRoot };
}, 60_000);

afterAll(async () => {
  await stopAllDaemons();
  await sshd?.stop();
  if (stockRoot) rmSync(stockRoot, { recursive: true, force: true });
});

/** The files under `dir`: type, mode, size, content digest, link count, link target, and which are one inode. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const inodes = new Map<number, string>();
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(dir, r));
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isSymbolicLink()) out.push(`${r} -> ${readlinkSync(join(dir, r))}`);
      else if (st.isDirectory()) (out.push(`${r}/ ${mode}`), walk(r));
      else {
        const same = inodes.get(st.ino);
        inodes.set(st.ino, same ?? r);
        const digest = createHash('sha256').update(readFileSync(join(dir, r))).digest('hex').slice(0, 12);
        out.push(`${r} ${mode} ${st.size} ${digest} links=${st.nlink}${same ? ` same-as=${same}` : ''}`);
      }
    }
  };
  walk('');
  return out;
}

/** Output with this side's paths named, and what differs run to run (dates, free space) masked. */
function normalize(text: string, side: Side, dir: string): string {
  return text
    .split(dir)
    .join('<dir>')
    .split(side.home)
    .join('<home>')
    .replace(/[A-Z][a-z]{2} [ \d]\d (?:\d\d:\d\d| \d{4})/g, '<date>')
    .replace(/^( +[\d.]+[KMGTPE]?B?)((?: +[\d.]+[KMGTPE]?B?)+) +(?:\d+%|ERR)$/gm, (_, size: string, rest: string) => `${size}${rest.replace(/ +[\d.]+[KMGTPE]?B?/g, ' n')} n%`);
}

/** A fresh directory for a case on `side`, filled by `prepare`. */
function caseDir(side: Side, prepare: (dir: string) => void): string {
  const dir = join(side.root, `case-${++seq}`);
  mkdirSync(dir);
  prepare(dir);
  return dir;
}

function sftpBatch(side: Side, prepare: (dir: string) => void, lines: (dir: string) => string[]): Outcome {
  const dir = caseDir(side, prepare);
  const r = spawnSync('sftp', [...side.ssh, '-b', '-', side.dest], { input: lines(dir).join('\n') + '\n', encoding: 'utf8', timeout: 60_000, cwd: dir });
  return { status: r.status, stdout: normalize(r.stdout, side, dir), stderr: normalize(r.stderr, side, dir), files: snapshot(dir) };
}

function scp(side: Side, prepare: (dir: string) => void, args: (dir: string, remote: (path: string) => string) => string[]): Outcome {
  const dir = caseDir(side, prepare);
  const r = spawnSync('scp', [...side.ssh, ...args(dir, (path) => `${side.dest}:${path}`)], { encoding: 'utf8', timeout: 60_000, cwd: dir });
  return { status: r.status, stdout: normalize(r.stdout, side, dir), stderr: normalize(r.stderr, side, dir), files: snapshot(dir) };
}

/** Run on both servers; the built-in host must do what the stock sftp-server does. */
function same(run: (side: Side) => Outcome): Outcome {
  const want = run(stock);
  const got = run(builtin);
  expect(got).toEqual(want);
  return got;
}

const BIG = randomBytes(300_000);
const files = (dir: string): void => {
  writeFileSync(join(dir, 'a'), 'alpha\n');
  writeFileSync(join(dir, 'b'), 'bravo\n');
  writeFileSync(join(dir, 'b2'), 'bravo two\n');
  writeFileSync(join(dir, 'big'), BIG);
  symlinkSync('a', join(dir, 'link'));
};

describe('OpenSSH sftp and scp: built-in host (through burrow proxy) against stock sftp-server', () => {
  it('ln makes a hard link, cp copies on the server, rename replaces a file, chmod -h, put -f, ls -l, df', () => {
    const r = same((side) =>
      sftpBatch(side, files, (dir) => [
        `cd ${dir}`,
        'ln a hard', // hardlink@openssh.com
        'cp big big-copy', // copy-data
        'rename b2 b', // posix-rename@openssh.com, over an existing file
        'chmod -h 600 a', // lsetstat@openssh.com
        `put -f ${localFile} put-synced`, // fsync@openssh.com
        'ls -l', // users-groups-by-id@openssh.com
        'df', // statvfs@openssh.com
        'df -h',
        'df -i',
        'cd',
        'pwd',
      ]),
    );
    expect(r.status).toBe(0);
    expect(r.files).toContain(`hard 600 6 ${createHash('sha256').update('alpha\n').digest('hex').slice(0, 12)} links=2 same-as=a`);
    expect(r.stdout).toMatch(/^sftp> df\n +Size +Used +Avail +\(root\) +%Capacity\n +\d+ n n n n%$/m);
    expect(r.stdout).toContain('Remote working directory: <home>');
  });

  const failing: [string, string][] = [
    ['ln onto an existing name', 'ln a b'],
    ['ln of a missing file', 'ln missing z'],
    ['cp of a missing file', 'cp missing z'],
    ['cp onto itself', 'cp a a'],
    ['cd ~ (9.x sftp sends it as a path)', 'cd ~'],
    ['df of a missing path', 'df missing/x'],
    ['rename -l (legacy) onto an existing file', 'rename -l b2 b'],
    ['chmod -h of a symlink', 'chmod -h 600 link'],
  ];
  for (const [what, command] of failing) {
    it(`${what} fails the batch the same way`, () => {
      const r = same((side) => sftpBatch(side, files, (dir) => [`cd ${dir}`, command]));
      expect(r.status).toBe(1);
    });
  }

  it('scp in SFTP mode: upload over an existing file, download, ~user paths (expand-path) and a missing user', () => {
    // A passwd user whose home holds a readable regular file, for ~user/file.
    const passwd = readFileSync('/etc/passwd', 'utf8').split('\n').map((l) => l.split(':'));
    let tilde: string | undefined;
    for (const [user, , , , , home] of passwd) {
      if (!user || !home) continue;
      const file = (() => {
        try {
          return readdirSync(home).sort().find((f) => statSync(join(home, f)).isFile() && (statSync(join(home, f)).mode & 0o004) !== 0);
        } catch {
          return undefined;
        }
      })();
      if (file) {
        tilde = `~${user}/${file}`;
        break;
      }
    }
    expect(tilde).toBeDefined();
    const up = same((side) => scp(side, files, (dir, remote) => [localFile, remote(`${dir}/b`)]));
    expect(up.status).toBe(0);
    const down = same((side) => scp(side, files, (dir, remote) => [remote(`${dir}/big`), `${dir}/big-down`]));
    expect(down.files.find((f) => f.startsWith('big-down '))?.split(' ')[3]).toBe(down.files.find((f) => f.startsWith('big '))?.split(' ')[3]);
    const expanded = same((side) => scp(side, files, (dir, remote) => [remote(tilde!), `${dir}/from-home`]));
    expect(expanded.status).toBe(0);
    expect(expanded.files.some((f) => f.startsWith('from-home '))).toBe(true);
    const missing = same((side) => scp(side, files, (dir, remote) => [remote('~no-such-user-here/x'), `${dir}/x`]));
    expect(missing.status).toBe(1);
  });
});
