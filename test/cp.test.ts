// burrow cp with the habits scp users bring: several sources into a directory, ~ on the remote
// side, remote globs expanded on the host, trees re-copied over their own links, and errors that
// name the destination the user gave. Real agent and host daemons on loopback.

import { execFileSync } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { globRegex, homeRelative, isPartOf, tempName } from '../daemon/agent/cp.js';
import { printable } from '../shared/errors.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { runCli, startDaemon, stopAllDaemons, type RunningDaemon } from './helpers/daemon.js';
import { cpPair } from './helpers/cp.js';
import { startSshd, type RunningSshd } from './helpers/sshd.js';

afterAll(stopAllDaemons);

describe('cp names and patterns', () => {
  it('matches remote globs like the shell, one path segment at a time', () => {
    const m = (pat: string, name: string): boolean => globRegex(pat).test(name);
    expect(m('*.gz', 'a.gz')).toBe(true);
    expect(m('*.gz', 'a.gz.1')).toBe(false);
    expect(m('?.log', 'a.log')).toBe(true);
    expect(m('?.log', 'ab.log')).toBe(false);
    expect(m('[ab].txt', 'b.txt')).toBe(true);
    expect(m('[!ab].txt', 'b.txt')).toBe(false);
    expect(m('[!ab].txt', 'c.txt')).toBe(true);
    expect(m('[a-c]1', 'b1')).toBe(true);
    expect(m('[]x]', ']')).toBe(true);
    expect(m('\\*', '*')).toBe(true);
    expect(m('\\*', 'a')).toBe(false);
    expect(m('a.(b)+', 'a.(b)+')).toBe(true);
    expect(m('[unclosed', '[unclosed')).toBe(true);
  });

  it('escapes controls in text bound for a terminal, keeping newlines and other text', () => {
    expect(printable('a\x1b[2Kb\rc\x07\x7f\x9b\n')).toBe('a\\x1b[2Kb\\x0dc\\x07\\x7f\\x9b\n');
    expect(printable('x\ny', false)).toBe('x\\x0ay');
    expect(printable('héllo ✓ 日本')).toBe('héllo ✓ 日本');
  });

  it('reads ~ and ~/ as the serving user\'s home', () => {
    expect(homeRelative('~')).toBe('.');
    expect(homeRelative('~/')).toBe('.');
    expect(homeRelative('~/logs/a')).toBe('logs/a');
    expect(homeRelative('')).toBe('.');
    expect(homeRelative('/abs/~')).toBe('/abs/~');
    expect(homeRelative('~bob/x')).toBe('~bob/x');
  });

  it('gives part files a random suffix and a name within NAME_MAX', () => {
    const a = tempName('x', '.burrow-part.');
    expect(a).toMatch(/^\.x\.burrow-part\.[0-9a-f]{12}$/);
    expect(tempName('x', '.burrow-part.')).not.toBe(a);
    expect(isPartOf('x', a)).toBe(true);
    expect(isPartOf('x', '.x.burrow-part')).toBe(false);
    expect(isPartOf('x', '.x.burrow-part.0123456789aZ')).toBe(false);
    const long = 'n'.repeat(250);
    const p = tempName(long, '.burrow-part.');
    expect(Buffer.byteLength(p)).toBeLessThanOrEqual(255);
    expect(isPartOf(long, p)).toBe(true);
  });
});

describe('burrow cp like scp', () => {
  let host: RunningDaemon;
  let agent: RunningDaemon;
  let work: string;
  const cp = (args: string[]) => runCli(agent.cliEnv, ['cp', ...args], { timeoutMs: 60_000 });

  beforeAll(async () => {
    ({ host, agent, work } = await cpPair());
  });

  it('copies several sources into a directory, both ways', async () => {
    writeFileSync(join(work, 'a.txt'), 'a\n');
    writeFileSync(join(work, 'b.txt'), 'b\n');
    mkdirSync(join(host.home, 'multi'));
    const up = await cp([join(work, 'a.txt'), join(work, 'b.txt'), 'box:multi/']);
    expect(up.stderr).toBe('');
    expect(up.code).toBe(0);
    expect(readdirSync(join(host.home, 'multi')).sort()).toEqual(['a.txt', 'b.txt']);
    const back = join(work, 'back');
    mkdirSync(back);
    const down = await cp(['box:multi/a.txt', 'box:~/multi/b.txt', back]);
    expect(down.stderr).toBe('');
    expect(down.code).toBe(0);
    expect(readFileSync(join(back, 'a.txt'), 'utf8')).toBe('a\n');
    expect(readFileSync(join(back, 'b.txt'), 'utf8')).toBe('b\n');
  });

  it('refuses several sources into something that is not a directory, naming it', async () => {
    const r = await cp([join(work, 'a.txt'), join(work, 'b.txt'), 'box:not-there']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('burrow: NotFound: box:not-there: no such directory (with several sources or a trailing /, the destination must be one)\n');
    const slash = await cp([join(work, 'a.txt'), 'box:not-there/']);
    expect(slash.code).toBe(1);
    expect(slash.stderr).toMatch(/^burrow: NotFound: box:not-there\/: no such directory/);
    expect(existsSync(join(host.home, 'not-there'))).toBe(false);
  });

  it('copies the other sources when one is missing, and exits 1', async () => {
    mkdirSync(join(host.home, 'partly'));
    const r = await cp([join(work, 'a.txt'), join(work, 'missing.txt'), join(work, 'b.txt'), 'box:partly']);
    expect(r.stderr).toBe(`burrow: NotFound: ${join(work, 'missing.txt')}: no such file or directory\n`);
    expect(r.code).toBe(1);
    expect(readdirSync(join(host.home, 'partly')).sort()).toEqual(['a.txt', 'b.txt']);
  });

  it('reads ~ and ~/... on the remote side as the serving user\'s home', async () => {
    writeFileSync(join(work, 'tilde.txt'), 'tilde\n');
    expect((await cp([join(work, 'tilde.txt'), 'box:~'])).code).toBe(0);
    expect(readFileSync(join(host.home, 'tilde.txt'), 'utf8')).toBe('tilde\n');
    mkdirSync(join(host.home, 'sub'));
    expect((await cp([join(work, 'tilde.txt'), 'box:~/sub/renamed.txt'])).code).toBe(0);
    expect(readFileSync(join(host.home, 'sub', 'renamed.txt'), 'utf8')).toBe('tilde\n');
    const back = join(work, 'tilde-back.txt');
    expect((await cp(['box:~/sub/renamed.txt', back])).code).toBe(0);
    expect(readFileSync(back, 'utf8')).toBe('tilde\n');
    // The whole home as a tree: it keeps the home's own name.
    const homes = join(work, 'homes');
    mkdirSync(homes);
    expect((await cp(['-r', 'box:~', homes])).code).toBe(0);
    expect(readFileSync(join(homes, 'home', 'sub', 'renamed.txt'), 'utf8')).toBe('tilde\n');
  });

  it('expands a remote glob on the host', async () => {
    const logs = join(host.home, 'logs');
    mkdirSync(logs);
    for (const n of ['a.gz', 'b.gz', 'c.txt', '.hidden.gz']) writeFileSync(join(logs, n), n);
    mkdirSync(join(logs, 'd.gz'));
    const into = join(work, 'logs-copy');
    mkdirSync(into);
    const r = await cp([`box:${logs}/*.gz`, into]);
    // d.gz is a directory: without -r it is the one source that fails.
    expect(r.stderr).toBe(`burrow: BadArgument: box:${logs}/d.gz is a directory (use -r)\n`);
    expect(r.code).toBe(1);
    expect(readdirSync(into).sort()).toEqual(['a.gz', 'b.gz']);
    const one = join(work, 'one.gz');
    expect((await cp(['box:~/logs/[a].gz', one])).code).toBe(0);
    expect(readFileSync(one, 'utf8')).toBe('a.gz');
    // A name that looks like a pattern but matches nothing else is itself.
    writeFileSync(join(logs, 'a[1].txt'), 'bracket');
    expect((await cp(['box:logs/a[1].txt', join(work, 'bracket.txt')])).code).toBe(0);
    expect(readFileSync(join(work, 'bracket.txt'), 'utf8')).toBe('bracket');
    const none = await cp(['box:logs/*.zip', into]);
    expect(none.code).toBe(1);
    expect(none.stderr).toBe('burrow: NotFound: box:logs/*.zip: no match\n');
  });

  it('re-copies a tree with symlinks, replacing them, both ways', async () => {
    const tree = join(work, 'ltree');
    mkdirSync(join(tree, 'd'), { recursive: true });
    writeFileSync(join(tree, 'f'), 'f\n');
    symlinkSync('f', join(tree, 'link'));
    symlinkSync('d', join(tree, 'dlink'));
    const remote = join(host.home, 'ltree');
    const backs = join(work, 'backs');
    mkdirSync(backs);
    const both = async (): Promise<void> => {
      const up = await cp(['-r', tree, 'box:~/']);
      expect(up.stderr).toBe('');
      expect(up.code).toBe(0);
      const down = await cp(['-r', 'box:ltree', backs]);
      expect(down.stderr).toBe('');
      expect(down.code).toBe(0);
    };
    for (let round = 0; round < 2; round++) {
      await both();
      expect(readlinkSync(join(remote, 'link'))).toBe('f');
      expect(readlinkSync(join(backs, 'ltree', 'dlink'))).toBe('d');
    }
    // A link that changed its target: replaced on both sides, never followed.
    rmSync(join(tree, 'link'));
    symlinkSync('d', join(tree, 'link'));
    await both();
    expect(readlinkSync(join(remote, 'link'))).toBe('d');
    expect(readlinkSync(join(backs, 'ltree', 'link'))).toBe('d');
    expect(lstatSync(join(remote, 'd')).isDirectory()).toBe(true);
    expect(readdirSync(join(remote, 'd'))).toEqual([]);
  });

  it('names the destination the user gave in errors, never a part file', async () => {
    const local = join(work, 'no-such-dir', 'x.txt');
    const down = await cp(['box:multi/a.txt', local]);
    expect(down.code).toBe(1);
    expect(down.stderr).toBe(`burrow: NotFound: ${local}: no such file or directory\n`);
    const up = await cp([join(work, 'a.txt'), 'box:no-such-dir/x.txt']);
    expect(up.code).toBe(1);
    expect(up.stderr).toBe('burrow: NotFound: box:no-such-dir/x.txt: no such file or directory\n');
    // Over a directory: the error is about that name.
    mkdirSync(join(host.home, 'adir'));
    mkdirSync(join(host.home, 'adir', 'a.txt'));
    const dir = await cp([join(work, 'a.txt'), 'box:adir/']);
    expect(dir.code).toBe(1);
    expect(dir.stderr).toBe('burrow: IoError: box:adir/a.txt: is a directory\n');
    expect(execFileSync('ls', ['-A', join(host.home, 'adir')], { encoding: 'utf8' })).toBe('a.txt\n');
  });
});

describe('burrow cp against OpenSSH\'s sftp-server (a real sshd over TCP)', () => {
  let sshd: RunningSshd;
  let agent: RunningDaemon;
  let work: string;
  beforeAll(async () => {
    sshd = await startSshd();
    agent = await startDaemon();
    appendFileSync(sshd.authorizedKeysPath, endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim()) + '\n');
    work = join(agent.dir, 'work');
    mkdirSync(work);
  });
  afterAll(async () => {
    await agent?.stop();
    await sshd?.stop();
  });

  it('uploads with exclusive part files, resumes, re-copies links and expands globs', async () => {
    const box = `${sshd.user}@127.0.0.1:${sshd.port}`;
    const remote = join(sshd.dir, 'files');
    const tree = join(work, 'files');
    mkdirSync(tree);
    writeFileSync(join(tree, 'a.log'), 'a\n', { mode: 0o640 });
    writeFileSync(join(tree, 'b.log'), 'b\n');
    symlinkSync('a.log', join(tree, 'link'));
    chmodSync(tree, 0o750);
    utimesSync(tree, 1_600_000_000, 1_600_000_000);
    for (let round = 0; round < 2; round++) {
      // Into the parent both times: the second copy lands on the first, links and all.
      const up = await runCli(agent.cliEnv, ['cp', '-rp', '--resume', tree, `${box}:${sshd.dir}/`], { timeoutMs: 60_000 });
      expect(up.stderr).toBe('');
      expect(up.code).toBe(0);
    }
    expect(readlinkSync(join(remote, 'link'))).toBe('a.log');
    expect(lstatSync(join(remote, 'a.log')).mode & 0o777).toBe(0o640);
    // The directory's mode and times, set after its contents (lsetstat@openssh.com: never through a link).
    expect(lstatSync(remote).mode & 0o777).toBe(0o750);
    expect(Math.round(lstatSync(remote).mtimeMs / 1000)).toBe(1_600_000_000);
    const got = join(work, 'got');
    mkdirSync(got);
    const down = await runCli(agent.cliEnv, ['cp', `${box}:${remote}/*.log`, got], { timeoutMs: 60_000 });
    expect(down.stderr).toBe('');
    expect(down.code).toBe(0);
    expect(readdirSync(got).sort()).toEqual(['a.log', 'b.log']);
    expect(readdirSync(remote).filter((n) => n.includes('.burrow-'))).toEqual([]);
  });
});
