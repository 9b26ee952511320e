// Groups and fleet exec against 50 real host daemons on loopback and one agent.

import { execFileSync, spawn as spawnProcess } from 'node:child_process';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addAlias } from '../shared/aliases.js';
import { expandTargets } from '../shared/groups.js';
import { execMany, fleetExitStatus } from '../shared/fleet.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, runCli, startDaemon, stopAllDaemons, type RunningDaemon } from './helpers/daemon.js';
import { startSshd } from './helpers/sshd.js';

const HOSTS = 50;
// Daemons start a few at a time: two cores are shared with everything else.
const BATCH = 5;

let agent: RunningDaemon;
const hosts: RunningDaemon[] = [];
const names = Array.from({ length: HOSTS }, (_, i) => `box${i + 1}`);
const tmp = mkdtempSync(join(tmpdir(), 'burrow-fleet-'));

afterAll(async () => {
  await stopAllDaemons();
  rmSync(tmp, { recursive: true, force: true });
});

beforeAll(async () => {
  agent = await startDaemon();
  const agentId = (await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim();
  for (let b = 0; b < HOSTS; b += BATCH) {
    const started = await Promise.all(names.slice(b, b + BATCH).map((label) => startDaemon({ args: ['--host'], env: { LABEL: label } })));
    hosts.push(...started);
  }
  hosts.forEach((h, i) => {
    h.authorizeKey(endpointKeyLine(agentId));
    h.authorizeEndpoint(agentId);
    // The host's commands get a clean environment (like sshd's), with HOME their own: the label
    // that tells the hosts apart is read from there.
    writeFileSync(join(h.home, 'label'), `${names[i]}\n`);
    addAlias(agent.state, names[i] as string, h.ticket);
  });
}, 300_000);

const cli = (args: string[], opts: { input?: string; timeoutMs?: number } = {}): ReturnType<typeof runCli> => runCli(agent.cliEnv, args, { timeoutMs: 120_000, ...opts });

/** Lines of the form `NAME: text`, as a map. */
function prefixed(out: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of out.split('\n').filter((l) => l !== '')) {
    const i = line.indexOf(': ');
    const name = line.slice(0, i);
    m.set(name, [...(m.get(name) ?? []), line.slice(i + 2)]);
  }
  return m;
}

/** Whether no process runs exactly `args`, polling for up to 5 s. */
async function processGone(args: string): Promise<boolean> {
  for (let i = 0; i < 50; i++) {
    if (!execFileSync('ps', ['-eo', 'args']).toString().split('\n').some((l) => l.trim() === args)) return true;
    await new Promise((res) => setTimeout(res, 100));
  }
  return false;
}

describe('target lists', () => {
  it('expands groups, nested groups and comma lists, each target once, first mention first', () => {
    const groups = { web: ['w1', 'w2'], all: ['@web', 'db', 'w1'], loop: ['a', '@loop'] };
    expect(expandTargets(['@all,w3', 'db', 'alice@w2:2222'], groups)).toEqual(['w1', 'w2', 'db', 'w3', 'alice@w2:2222']);
    expect(() => expandTargets(['@nosuch'], groups)).toThrow(/no group named "nosuch"/);
    expect(() => expandTargets(['@loop'], groups)).toThrow(/contains itself/);
    expect(() => expandTargets(['ok,bad target!'], groups)).toThrow(/bad target/);
  });
});

describe('groups', () => {
  it('adds, lists and removes groups and members in the address book', async () => {
    expect((await cli(['group', 'add', 'all', ...names])).code).toBe(0);
    expect((await cli(['group', 'add', 'tmp', 'box1,box2', 'box3'])).code).toBe(0);
    expect((await cli(['group', 'add', 'tmp', 'box2', 'box4'])).stdout).toBe('@tmp: 4 members\n');
    const listed = JSON.parse((await cli(['group', 'list', '--json'])).stdout) as Record<string, string[]>;
    expect(listed['all']).toEqual(names);
    expect(listed['tmp']).toEqual(['box1', 'box2', 'box3', 'box4']);
    expect((await cli(['group', 'remove', 'tmp', 'box2'])).stdout).toBe('@tmp: 3 members\n');
    expect((await cli(['group', 'list'])).stdout).toContain('tmp\tbox1,box3,box4\n');
    expect((await cli(['group', 'remove', 'tmp'])).code).toBe(0);
    const missing = await cli(['group', 'remove', 'tmp']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^burrow: NotFound: no group named "tmp"/);
    expect((await cli(['group', 'add', 'bad name', 'box1'])).code).toBe(2);
    // the file is private
    expect(readFileSync(join(agent.state, 'groups.json'), 'utf8')).toContain('"all"');
    expect(execFileSync('stat', ['-c', '%a', join(agent.state, 'groups.json')]).toString().trim()).toBe('600');
  });
});

describe('exec on many hosts', () => {
  beforeAll(async () => {
    await cli(['group', 'add', 'all', ...names]);
    await cli(['group', 'add', 'odd', ...names.filter((_, i) => i % 2 === 0)]);
    await cli(['group', 'add', 'few', 'box1', 'box2', 'box3']);
  });

  it('runs on every member of @all and prints each host its own line, exit 0', async () => {
    const r = await cli(['exec', '@all', '--', 'cat ~/label'], { timeoutMs: 180_000 });
    expect(r.code).toBe(0);
    const lines = prefixed(r.stdout);
    expect(lines.size).toBe(HOSTS);
    for (const n of names) expect(lines.get(n)).toEqual([n]);
    expect(r.stderr).toMatch(/^burrow: 50 hosts: 50 succeeded, 0 failed, 0 timed out, 0 unreachable\n {2}succeeded: box1, box2, /);
    // one connection per host, kept in the pool: a second run connects nothing new
    const again = await cli(['exec', '@all', '--', 'cat ~/label']);
    expect(again.code).toBe(0);
    for (const h of hosts) expect(h.logs.filter((l) => l.event === 'connection_accepted')).toHaveLength(1);
  }, 240_000);

  it('unions groups and targets, each host once, and prefixes stderr lines on stderr', async () => {
    const r = await cli(['exec', '@few,box3,box4', '--', 'echo out; echo err >&2; printf tail']);
    expect(r.code).toBe(0);
    const out = prefixed(r.stdout);
    expect([...out.keys()].sort()).toEqual(['box1', 'box2', 'box3', 'box4']);
    for (const v of out.values()) expect(v).toEqual(['out', 'tail']);
    const err = r.stderr.split('\n').filter((l) => /^box\d+: /.test(l));
    expect(err.sort()).toEqual(['box1: err', 'box2: err', 'box3: err', 'box4: err']);
    // a plain comma list is many hosts too (the native client hands it to Node)
    const list = await cli(['exec', 'box7,box8', '--', 'cat ~/label']);
    expect(list.stdout.split('\n').sort()).toEqual(['', 'box7: box7', 'box8: box8']);
  });

  it('--json prints one parseable object per host', async () => {
    const r = await cli(['exec', '@all', '--json', '--', 'cat ~/label; exit 0']);
    expect(r.code).toBe(0);
    const objs = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(objs).toHaveLength(HOSTS);
    for (const o of objs) {
      expect(Object.keys(o).sort()).toEqual(['code', 'error', 'ms', 'signal', 'stderr', 'stdout', 'target']);
      expect(o).toMatchObject({ code: 0, signal: null, stderr: '', error: null, stdout: `${o['target'] as string}\n` });
      expect(typeof o['ms']).toBe('number');
    }
  });

  it('--gather groups hosts with identical output under one header', async () => {
    const r = await cli(['exec', '@all', '--gather', '--', 'n=$(tr -dc 0-9 < ~/label); if [ $((n % 2)) = 1 ]; then echo odd; else echo even; fi']);
    expect(r.code).toBe(0);
    const odd = names.filter((_, i) => i % 2 === 0).join(',');
    const even = names.filter((_, i) => i % 2 === 1).join(',');
    expect(r.stdout).toBe(`==> ${odd} <==\nodd\n==> ${even} <==\neven\n`);
  });

  it('--fanout 4 never has more than 4 commands running at once, as the hosts saw it', async () => {
    const file = join(tmp, 'fanout.log');
    writeFileSync(file, '');
    const r = await cli(['exec', '@odd', '--fanout', '4', '--', `echo "s $(date +%s%N)" >> ${file}; sleep 0.3; echo "e $(date +%s%N)" >> ${file}`]);
    expect(r.code).toBe(0);
    const events = readFileSync(file, 'utf8').trim().split('\n').map((l) => {
      const [kind, ns] = l.split(' ');
      return { kind, at: BigInt(ns as string) };
    });
    expect(events).toHaveLength(2 * 25);
    // ends before starts at the same instant: a slot is free once its command ended
    events.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : a.kind === 'e' ? -1 : 1));
    let running = 0;
    let most = 0;
    for (const e of events) {
      running += e.kind === 's' ? 1 : -1;
      most = Math.max(most, running);
    }
    expect(most).toBe(4);
  }, 120_000);

  it('--timeout ends a sleep on every host and reports each as timed out', async () => {
    const marker = 'sleep 100.0417';
    const r = await cli(['exec', '@odd', '--timeout', '1', '--', marker]);
    expect(r.code).toBe(124);
    expect(r.stderr).toMatch(/burrow: 25 hosts: 0 succeeded, 0 failed, 25 timed out, 0 unreachable\n/);
    expect(r.stderr).toMatch(/ {2}timed out: box1, box3, .*box49\n/);
    expect(r.ms).toBeLessThan(30_000);
    // the sleeps are gone on the hosts, not merely abandoned
    expect(await processGone(marker)).toBe(true);
  }, 120_000);

  it('--timeout answers at once on an ordinary sshd too, which confirms a close only after the command ends', async () => {
    const sshd = await startSshd();
    const marker = 'sleep 100.0533';
    try {
      appendFileSync(sshd.authorizedKeysPath, endpointKeyLine((await cli(['host', 'id'])).stdout.trim()) + '\n');
      const r = await cli(['exec', '--timeout', '1', `${sshd.user}@127.0.0.1:${sshd.port}`, '--', marker]);
      expect(r.code).toBe(124);
      expect(r.stderr).toContain('  timed out: ');
      expect(r.ms).toBeLessThan(20_000);
    } finally {
      // This sshd runs without privilege separation and so takes no signal requests: end the
      // command here, by its pid.
      for (const line of execFileSync('ps', ['-eo', 'pid=,args=']).toString().split('\n')) {
        const m = /^\s*(\d+) (.*)$/.exec(line);
        if (m && m[2]!.trim() === marker) process.kill(Number(m[1]), 'SIGKILL');
      }
      await sshd.stop();
    }
  });

  it('sends stdin to every host', async () => {
    const r = await cli(['exec', '@few', '--', 'tr a-z A-Z'], { input: 'hello\nworld\n' });
    expect(r.code).toBe(0);
    const out = prefixed(r.stdout);
    for (const n of ['box1', 'box2', 'box3']) expect(out.get(n)).toEqual(['HELLO', 'WORLD']);
  });

  it('--log-dir writes each host its output files and the succeeded and failed lists', async () => {
    const dir = join(tmp, 'logs');
    const r = await cli(['exec', '@few', '--log-dir', dir, '--', 'cat ~/label; echo oops >&2; [ "$(cat ~/label)" != box2 ]']);
    expect(r.code).toBe(1);
    for (const n of ['box1', 'box2', 'box3']) {
      expect(readFileSync(join(dir, `${n}.stdout`), 'utf8')).toBe(`${n}\n`);
      expect(readFileSync(join(dir, `${n}.stderr`), 'utf8')).toBe('oops\n');
    }
    expect(readFileSync(join(dir, 'succeeded'), 'utf8').split('\n').sort()).toEqual(['', 'box1', 'box3']);
    expect(readFileSync(join(dir, 'failed'), 'utf8')).toBe('box2\n');
    expect(r.stderr).toContain('  failed: box2 (exit 1)\n');
  });

  it('check and status take a group: one line per host', async () => {
    const c = await cli(['check', '@few']);
    expect(c.code).toBe(0);
    expect(c.stdout.split('\n').filter((l) => l !== '').map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual(['alive: box1', 'alive: box2', 'alive: box3']);
    const s = JSON.parse((await cli(['status', '--json', '@few,box4'])).stdout) as { target: string; alive: boolean }[];
    expect(s.map((x) => [x.target, x.alive])).toEqual([['box1', true], ['box2', true], ['box3', true], ['box4', true]]);
    expect((await cli(['disconnect', 'box2'])).code).toBe(0);
    const after = await cli(['check', '@few']);
    expect(after.code).toBe(1);
    expect(after.stdout).toContain('absent: box2\n');
    expect((await cli(['status', '@few'])).stdout).toMatch(/^TARGET\tSTATE.*\nbox1\talive\tdirect\t.*\nbox2\tabsent\t/);
  });

  it('serves Node programs: execMany returns each host its result', async () => {
    const seen: string[] = [];
    const results = await execMany(['@few', 'box5'], 'cat ~/label; exit $(tr -dc 0-9 < ~/label)', { socket: agent.socket, state: agent.state, fanout: 2, onResult: (r) => seen.push(r.target) });
    expect(results.map((r) => [r.target, r.outcome, r.code, r.stdout.toString()])).toEqual([
      ['box1', 'failed', 1, 'box1\n'],
      ['box2', 'failed', 2, 'box2\n'],
      ['box3', 'failed', 3, 'box3\n'],
      ['box5', 'failed', 5, 'box5\n'],
    ]);
    expect(seen.sort()).toEqual(['box1', 'box2', 'box3', 'box5']);
    expect(fleetExitStatus(results)).toBe(5);
  });

  it('^C cancels what still runs and reports what finished', async () => {
    const p = spawnProcess(BURROW, ['exec', '@few,box4', '--fanout', '3', '--', '[ "$(cat ~/label)" = box1 ] && exit 0; sleep 60'], { env: { ...process.env, ...agent.cliEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // box1 ends at once and box4 takes its slot; box2, box3 and box4 sleep
    for (const h of hosts.slice(1, 4)) await h.waitLog((l) => l.event === 'session_start' && typeof l.command === 'string' && l.command.endsWith('sleep 60'), 20_000);
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    p.kill('SIGINT');
    const code = await new Promise<number | null>((r) => p.once('close', (c) => r(c)));
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(code).toBe(130);
    expect(stderr).toContain('  succeeded: box1\n');
    expect(stderr).toMatch(/ {2}cancelled: box2, box3, box4\n/);
  }, 60_000);

  it('exits with the highest remote status, and 255 when a host is unreachable, naming both', async () => {
    await cli(['group', 'add', 'mixed', 'box48', 'box49', 'box50']);
    const cmd = '[ "$(cat ~/label)" = box49 ] && exit 3; exit 0';
    const before = await cli(['exec', '@mixed', '--', cmd]);
    expect(before.code).toBe(3);
    await hosts[49]!.stop();
    const r = await cli(['exec', '@mixed', '--connect-timeout', '3', '--', cmd]);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/burrow: 3 hosts: 1 succeeded, 1 failed, 0 timed out, 1 unreachable\n/);
    expect(r.stderr).toContain('  failed: box49 (exit 3)\n');
    expect(r.stderr).toMatch(/ {2}unreachable: box50 \((ConnectTimeout|ConnectFailed|Disconnected): /);
    expect(existsSync(hosts[49]!.dir)).toBe(false);
  }, 60_000);
});
