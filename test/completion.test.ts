// Shell completion: `burrow __complete` on real aliases, forwards and a real host directory
// listed over the pooled connection's SFTP, and the bash script sourced in a real `bash -i`
// (in tmux) completing a remote path.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { BURROW, runCli, stopAllDaemons, type RunningDaemon, hostAndAgent } from './helpers/daemon.js';
import { freePort } from './helpers/sshd.js';

afterAll(stopAllDaemons);

const lines = (s: string): string[] => s.split('\n').filter(Boolean);

describe('burrow __complete', () => {
  let host: RunningDaemon;
  let agent: RunningDaemon;
  let dir: string;
  beforeAll(async () => {
    ({ host, agent } = await hostAndAgent());
    await runCli(agent.cliEnv, ['alias', 'add', 'box', host.ticket]);
    await runCli(agent.cliEnv, ['alias', 'add', 'boxtwo', host.ticket]);
    await runCli(agent.cliEnv, ['alias', 'add', 'other', host.ticket]);
    // A tree in the host user's home (the daemon's HOME) and one at an absolute path.
    mkdirSync(join(host.home, 'proj', 'src'), { recursive: true });
    writeFileSync(join(host.home, 'proj', 'readme.md'), 'x');
    writeFileSync(join(host.home, 'proj', '.hidden'), 'x');
    dir = mkdtempSync(join(tmpdir(), 'burrow-complete-'));
    mkdirSync(join(dir, 'logs'));
    writeFileSync(join(dir, 'log.txt'), 'x');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const complete = async (...words: string[]): Promise<string[]> => {
    const r = await runCli(agent.cliEnv, ['__complete', String(words.length - 1), ...words]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return lines(r.stdout);
  };

  it('offers commands, flags and alias names', async () => {
    const all = await complete('');
    expect(all).toEqual(expect.arrayContaining(['ssh', 'exec', 'cp', 'forward', 'completion', 'version']));
    expect(all).not.toContain('__complete');
    expect(await complete('co')).toEqual(['completion']);
    expect(await complete('ssh', 'b')).toEqual(['box', 'boxtwo']);
    expect(await complete('exec', '')).toEqual(['box', 'boxtwo', 'other']);
    expect(await complete('ssh', '-')).toEqual(expect.arrayContaining(['-t', '-T', '-N', '-L', '-o']));
    expect(await complete('ssh', '-o', 'Conn')).toEqual(['ConnectTimeout=']);
    expect(await complete('--socket', agent.socket, 'alias', 'remove', 'o')).toEqual(['other']);
    expect(await complete('forward', 'c')).toEqual(['cancel']);
    expect(await complete('completion', '')).toEqual(['bash', 'zsh', 'fish']);
  });

  it('offers forward ids to cancel', async () => {
    const port = await freePort();
    const add = await runCli(agent.cliEnv, ['forward', 'add', 'box', '-L', `${port}:127.0.0.1:9`]);
    const id = /^forward (\d+):/.exec(add.stdout)?.[1];
    expect(id).toBeDefined();
    expect(await complete('forward', 'cancel', '')).toEqual([id]);
    await runCli(agent.cliEnv, ['forward', 'cancel', id!]);
  });

  it('lists a remote directory for TARGET:path in cp, directories ending with /', async () => {
    expect(await complete('cp', 'box:')).toEqual(expect.arrayContaining(['box:proj/']));
    expect(await complete('cp', 'box:pr')).toEqual(['box:proj/']);
    expect(await complete('cp', 'box:proj/')).toEqual(['box:proj/readme.md', 'box:proj/src/']);
    expect(await complete('cp', 'box:proj/.')).toEqual(['box:proj/.hidden']);
    expect(await complete('cp', '-r', 'box:~/proj/s')).toEqual(['box:~/proj/src/']);
    expect(await complete('cp', `box:${dir}/lo`)).toEqual([`box:${dir}/log.txt`, `box:${dir}/logs/`]);
    expect(await complete('cp', 'box:nowhere/')).toEqual([]);
    // the first word of a copy may also be an alias or a local path
    expect(await complete('cp', 'bo')).toEqual(['box:', 'boxtwo:']);
  });

  it('sourced in a real bash -i, Tab completes a remote path', async () => {
    const work = mkdtempSync(join(tmpdir(), 'burrow-bash-'));
    const bin = join(work, 'bin');
    mkdirSync(bin);
    symlinkSync(BURROW, join(bin, 'burrow'));
    const script = join(work, 'complete.bash');
    writeFileSync(script, (await runCli(agent.cliEnv, ['completion', 'bash'])).stdout);
    const sock = `burrow-test-${process.pid}`;
    const env = Object.entries({ ...agent.cliEnv, PATH: `${bin}:${process.env['PATH']}`, PS1: 'P> ' })
      .map(([k, v]) => `${k}=${v}`);
    const tmux = (...args: string[]): string => execFileSync('tmux', ['-L', sock, ...args], { encoding: 'utf8', timeout: 10_000 });
    try {
      tmux('new-session', '-d', '-x', '200', '-y', '20', 'env', ...env, 'bash', '--norc', '--noprofile', '-i');
      tmux('send-keys', `source ${script}`, 'Enter');
      tmux('send-keys', 'burrow cp box:proj/s', 'Tab');
      const pane = await vi.waitFor(
        () => {
          const now = tmux('capture-pane', '-p');
          expect(now).toMatch(/burrow cp box:proj\/src\/\s*$/m);
          return now;
        },
        { timeout: 10_000, interval: 100 },
      );
      expect(pane).toMatch(/P> burrow cp box:proj\/src\/\s*$/m);
    } finally {
      spawnSync('tmux', ['-L', sock, 'kill-server']);
      rmSync(work, { recursive: true, force: true });
    }
  }, 30_000);
});
