// Stock OpenSSH programs through burrow (ProxyCommand), and burrow cp, against real daemons.

import { execFileSync, spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync, utimesSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, runCli, stopAllDaemons } from './helpers/daemon.js';
import { proxySetup as setup, type ProxySetup as Setup } from './helpers/proxy.js';
import { startSshd, type RunningSshd } from './helpers/sshd.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const shaFile = (p: string): string => sha(readFileSync(p));

afterAll(stopAllDaemons);

function run(cmd: string, args: string[], opts: { cwd?: string; input?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000, ...opts });
}

describe('OpenSSH tools through burrow proxy (built-in host)', () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup();
  });

  it('ssh runs a command with the host key checked strictly', () => {
    const r = run('ssh', ['-F', s.config, 'box.burrow', 'echo ok; echo err >&2; exit 4']);
    expect(r.stdout).toBe('ok\n');
    expect(r.stderr).toBe('err\n');
    expect(r.status).toBe(4);
    expect(readFileSync(join(s.agent.state, 'ssh_known_hosts'), 'utf8')).toContain(`box.burrow ssh-ed25519 `);
  });

  it('ssh refuses a host whose key is not the one on file', () => {
    const wrong = join(s.agent.dir, 'wrong_known_hosts');
    writeFileSync(wrong, `box.burrow ${endpointKeyLine('cd'.repeat(32))}\n`);
    const r = run('ssh', ['-F', s.config, '-o', `UserKnownHostsFile=${wrong}`, 'box.burrow', 'true']);
    expect(r.status).toBe(255);
    expect(r.stderr).toMatch(/HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
  });

  it('sftp -b runs put, get, ls, mkdir, rename and rm', () => {
    const local = join(s.work, 'sftp-src.txt');
    writeFileSync(local, 'sftp payload\n');
    const remoteDir = join(s.host.home, 'sftp-dir');
    const batch = join(s.work, 'batch');
    writeFileSync(
      batch,
      [`mkdir ${remoteDir}`, `put ${local} ${remoteDir}/a.txt`, `rename ${remoteDir}/a.txt ${remoteDir}/b.txt`, `ls ${remoteDir}`, `get ${remoteDir}/b.txt ${s.work}/got.txt`, `rm ${remoteDir}/b.txt`, `rmdir ${remoteDir}`].join('\n') + '\n',
    );
    const r = run('sftp', ['-F', s.config, '-b', batch, 'box.burrow']);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('b.txt');
    expect(readFileSync(join(s.work, 'got.txt'), 'utf8')).toBe('sftp payload\n');
    expect(existsSync(remoteDir)).toBe(false);
  });

  it('scp copies 20 MiB both ways intact', () => {
    const data = randomBytes(20 * 1024 * 1024);
    const up = join(s.work, 'scp-up.bin');
    writeFileSync(up, data);
    const remote = join(s.host.home, 'scp.bin');
    let r = run('scp', ['-F', s.config, up, `box.burrow:${remote}`]);
    expect(r.stderr).toBe('');
    expect(shaFile(remote)).toBe(sha(data));
    r = run('scp', ['-F', s.config, `box.burrow:${remote}`, join(s.work, 'scp-down.bin')]);
    expect(r.status).toBe(0);
    expect(shaFile(join(s.work, 'scp-down.bin'))).toBe(sha(data));
  });

  it('rsync -e ssh copies a tree, and a second run transfers nothing', () => {
    const tree = join(s.work, 'rtree');
    mkdirSync(join(tree, 'sub'), { recursive: true });
    for (let i = 0; i < 5; i++) writeFileSync(join(tree, 'sub', `f${i}`), randomBytes(10_000 + i));
    const dest = join(s.host.home, 'rdest');
    const rsync = (): SpawnSyncReturns<string> => run('rsync', ['-a', '--stats', '-e', `ssh -F ${s.config}`, `${tree}/`, `box.burrow:${dest}/`]);
    let r = rsync();
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Number of regular files transferred: 5/);
    expect(shaFile(join(dest, 'sub', 'f3'))).toBe(shaFile(join(tree, 'sub', 'f3')));
    r = rsync();
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/Number of regular files transferred: 0/);
  });

  it('git clones a bare repository on the host', () => {
    const bare = join(s.host.home, 'repo.git');
    const src = join(s.work, 'gitsrc');
    const git = (args: string[], cwd?: string): string =>
      execFileSync('git', args, { cwd, encoding: 'utf8', env: { ...process.env, GIT_AUTHOR_NAME: 't', GIT_AUTHOR_EMAIL: 't@t', GIT_COMMITTER_NAME: 't', GIT_COMMITTER_EMAIL: 't@t' } });
    mkdirSync(src);
    git(['init', '-q', '-b', 'main'], src);
    writeFileSync(join(src, 'README'), 'hello through burrow\n');
    git(['add', '.'], src);
    git(['commit', '-q', '-m', 'first'], src);
    git(['clone', '-q', '--bare', src, bare]);
    const out = join(s.work, 'clone');
    execFileSync('git', ['clone', '-q', `box.burrow:${bare}`, out], { env: { ...process.env, GIT_SSH_COMMAND: `ssh -F ${s.config}` } });
    expect(readFileSync(join(out, 'README'), 'utf8')).toBe('hello through burrow\n');
  });
});

describe('OpenSSH tools through burrow proxy (sshd backend)', () => {
  let sshd: RunningSshd;
  let s: Setup;
  beforeAll(async () => {
    sshd = await startSshd();
    s = await setup(['--host-backend', 'sshd', '--sshd-address', `127.0.0.1:${sshd.port}`]);
    appendFileSync(sshd.authorizedKeysPath, readFileSync(`${s.key}.pub`, 'utf8'));
  });
  afterAll(async () => {
    await sshd?.stop();
  });

  it('ssh and scp reach the real sshd; the host key ssh sees is sshd\'s', () => {
    // Behind the sshd backend the host key is sshd's own, so it is pinned like any sshd's.
    const kh = join(s.agent.dir, 'sshd_known_hosts');
    writeFileSync(kh, `box.burrow ${sshd.hostKeyPub}\n`);
    const opts = ['-F', s.config, '-o', `UserKnownHostsFile=${kh}`, '-o', `User=${sshd.user}`];
    const r = run('ssh', [...opts, 'box.burrow', 'echo via-sshd']);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('via-sshd\n');
    const data = randomBytes(3 * 1024 * 1024);
    writeFileSync(join(s.work, 'f.bin'), data);
    const remote = join(s.work, 'f-remote.bin');
    expect(run('scp', [...opts, join(s.work, 'f.bin'), `box.burrow:${remote}`]).status).toBe(0);
    expect(shaFile(remote)).toBe(sha(data));
  });
});

describe('burrow cp', () => {
  let s: Setup;
  beforeAll(async () => {
    s = await setup();
  });
  const cp = (args: string[]): ReturnType<typeof runCli> => runCli(s.agent.cliEnv, ['cp', ...args], { timeoutMs: 120_000 });

  it('copies a file both ways, with -p keeping mode and mtime, and JSON progress', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 17);
    const local = join(s.work, 'cp.bin');
    writeFileSync(local, data);
    chmodSync(local, 0o640);
    utimesSync(local, 1_600_000_000, 1_600_000_000);
    const remote = join(s.host.home, 'cp-remote.bin');
    const up = await cp(['-p', '--json', local, `box:${remote}`]);
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    const events = up.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events[events.length - 1]).toMatchObject({ event: 'done', files: 1, bytes: data.length });
    expect(events.some((e) => e['event'] === 'progress')).toBe(true);
    expect(shaFile(remote)).toBe(sha(data));
    expect(statSync(remote).mode & 0o777).toBe(0o640);
    expect(Math.round(statSync(remote).mtimeMs / 1000)).toBe(1_600_000_000);
    const back = join(s.work, 'cp-back.bin');
    const down = await cp([`box:${remote}`, back]);
    expect(down.code).toBe(0);
    expect(down.stdout).toBe(''); // nothing on a pipe without --json
    expect(shaFile(back)).toBe(sha(data));
    expect(readdirSync(s.work).filter((n) => n.startsWith('.cp-back.bin.burrow-part'))).toEqual([]);
  });

  it('copies a tree both ways with -r, keeping symlinks as symlinks', async () => {
    const tree = join(s.work, 'tree');
    mkdirSync(join(tree, 'a', 'b'), { recursive: true });
    writeFileSync(join(tree, 'top.txt'), 'top');
    writeFileSync(join(tree, 'a', 'b', 'deep.txt'), 'deep');
    execFileSync('ln', ['-s', 'top.txt', join(tree, 'link')]);
    const remote = join(s.host.home, 'tree-remote');
    expect((await cp(['-r', tree, `box:${remote}`])).code).toBe(0);
    expect(readFileSync(join(remote, 'a', 'b', 'deep.txt'), 'utf8')).toBe('deep');
    expect(readlinkSync(join(remote, 'link'))).toBe('top.txt');
    const back = join(s.work, 'tree-back');
    expect((await cp(['-r', `box:${remote}`, back])).code).toBe(0);
    expect(readFileSync(join(back, 'a', 'b', 'deep.txt'), 'utf8')).toBe('deep');
    expect(readlinkSync(join(back, 'link'))).toBe('top.txt');
    const noR = await cp([`box:${remote}`, join(s.work, 'x')]);
    expect(noR.code).toBe(2);
    expect(noR.stderr).toMatch(/is a directory \(use -r\)/);
  });

  it('gives a clear error and exit 1 for a missing remote file', async () => {
    const r = await cp([`box:${join(s.host.home, 'does-not-exist')}`, join(s.work, 'nothing')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^burrow: NotFound: .*does-not-exist: no such file or directory\n$/);
  });

  it('--resume finishes a transfer killed halfway with the right digest', async () => {
    const data = randomBytes(24 * 1024 * 1024);
    const local = join(s.work, 'big.bin');
    writeFileSync(local, data);
    const remote = join(s.host.home, 'big.bin');
    // Start an upload, kill the CLI once a good part is across.
    const p = spawn(BURROW, ['cp', '--json', local, `box:${remote}`], { env: { ...process.env, ...s.agent.cliEnv } });
    let sent = 0;
    await new Promise<void>((resolve) => {
      p.stdout.on('data', (d: Buffer) => {
        for (const line of d.toString().trim().split('\n')) {
          const e = JSON.parse(line) as { bytes?: number };
          sent = Math.max(sent, e.bytes ?? 0);
          if (sent > data.length / 3) {
            p.kill('SIGKILL');
            resolve();
          }
        }
      });
      p.once('close', () => resolve());
    });
    await new Promise((r) => p.once('close', r));
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThan(data.length);
    // the part file stays behind; the destination does not exist yet
    const parts = (): string[] => readdirSync(s.host.home).filter((n) => n.startsWith('.big.bin.burrow-part.'));
    await vi.waitFor(() => expect(parts()).not.toHaveLength(0), { timeout: 5000, interval: 100 });
    expect(parts()).toHaveLength(1);
    expect(existsSync(remote)).toBe(false);
    const r = await cp(['--resume', '--json', local, `box:${remote}`]);
    expect(r.code).toBe(0);
    const done = JSON.parse(r.stdout.trim().split('\n').pop()!) as { resumedBytes: number; restarted: number };
    expect(done.resumedBytes).toBeGreaterThan(0);
    expect(done.restarted).toBe(0);
    expect(shaFile(remote)).toBe(sha(data));
    expect(parts()).toEqual([]);
    rmSync(remote);
  }, 120_000);
});
