// Persistent sessions end to end: real host and agent daemons, real CLI processes in real PTYs
// (node-pty), their screens read through a headless terminal like a user's would be.

import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import * as nodePty from '@lydell/node-pty';
import xtermHeadless from '@xterm/headless';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseDaemonArgs } from '../daemon/config.js';
import type { KeeperSpec } from '../daemon/session/keeper.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, runCli, startDaemon, stopAllDaemons, type RunningDaemon, freeUdpPort, hostAndAgent } from './helpers/daemon.js';
import { bashInPty } from './helpers/pty.js';

const { Terminal } = xtermHeadless;

interface Row {
  name: string;
  command: string | null;
  clients: number;
  running: boolean;
  exit: { code?: number; signal?: string } | null;
  pid: number;
  keeperPid: number;
  cols: number;
  rows: number;
}

/** A CLI process in its own PTY, with everything it printed and the screen it drew. */
interface Term {
  pty: nodePty.IPty;
  raw(): string;
  until(re: RegExp, ms?: number): Promise<void>;
  screen(): Promise<{ lines: string[]; cursor: [number, number]; alt: boolean }>;
  exited: Promise<number>;
}

const terms: Term[] = [];
const keepers = new Set<number>();

function openTerm(env: Record<string, string>, args: string[], cols = 80, rows = 24): Term {
  const pty = nodePty.spawn(BURROW, args, { name: 'xterm-256color', cols, rows, env: { ...process.env, ...env } as Record<string, string> });
  const vt = new Terminal({ cols, rows, allowProposedApi: true, scrollback: 1000 });
  let raw = '';
  pty.onData((d) => {
    raw += d;
    vt.write(d);
  });
  const exited = new Promise<number>((r) => pty.onExit(({ exitCode }) => r(exitCode)));
  const t: Term = {
    pty,
    raw: () => raw,
    async until(re, ms = 15_000) {
      const deadline = Date.now() + ms;
      while (!re.test(raw)) {
        if (Date.now() > deadline) throw new Error(`no ${re} in ${JSON.stringify(raw.slice(-600))}`);
        await sleep(25);
      }
    },
    async screen() {
      await new Promise<void>((r) => vt.write('', r));
      const b = vt.buffer.active;
      const lines: string[] = [];
      for (let i = 0; i < vt.rows; i++) lines.push(b.getLine(b.viewportY + i)?.translateToString(true) ?? '');
      return { lines, cursor: [b.cursorX, b.cursorY], alt: b.type === 'alternate' };
    },
    exited,
  };
  terms.push(t);
  return t;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The native client (cli/native/burrow.c), which bin/burrow runs and which serves attach itself. */
const NATIVE = realpathSync(new URL('../dist/native/burrow', import.meta.url));
/** The program a process runs now: the native client, or node once it has handed over. */
const exe = (pid: number): string => readlinkSync(`/proc/${pid}/exe`);

async function waitUntil(what: string, fn: () => Promise<boolean> | boolean, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function list(agent: RunningDaemon, ticket: string): Promise<Row[]> {
  const r = await runCli(agent.cliEnv, ['session', 'list', ticket, '--json']);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const rows = JSON.parse(r.stdout) as Row[];
  for (const row of rows) keepers.add(row.keeperPid);
  return rows;
}

// A shell with a known prompt and no rc files, the same on every machine.
const SHELL = `env PS1='$ ' bash --norc --noprofile`;
// Its prompt at the end of the output (bash may turn bracketed paste on after it; a redraw ends
// by placing the cursor).
const PROMPT = /\$ (\x1b\[[0-9;?]*[A-Za-z])*$/;

/**
 * A keeper started by hand in a host's sessions directory, as one of another burrow build would
 * have been: `protocol` is the only keeper protocol it speaks (0: the first keepers, without hello).
 */
async function startKeeperOfBuild(host: RunningDaemon, name: string, command: string, protocol: number | undefined): Promise<number> {
  const spec: KeeperSpec = {
    name,
    socket: join(host.dir, 'state', 'sessions', `${name}.sock`),
    shell: '/bin/sh',
    args: ['-c', command],
    command,
    cwd: host.home,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', TERM: 'xterm-256color' },
    term: 'xterm-256color',
    cols: 80,
    rows: 24,
    ringBytes: 1024 * 1024,
    lingerSeconds: 0,
    writer: 'last-input',
  };
  const env = { ...process.env };
  delete env['BURROW_TEST_KEEPER_PROTOCOL'];
  if (protocol !== undefined) env['BURROW_TEST_KEEPER_PROTOCOL'] = String(protocol);
  const keeper = fileURLToPath(new URL('../dist/daemon/session/keeper.cjs', import.meta.url));
  const child = spawn(process.execPath, [keeper, JSON.stringify(spec)], { detached: true, stdio: ['ignore', 'pipe', 'ignore'], env });
  child.unref();
  keepers.add(child.pid!);
  const line = await new Promise<string>((r) => createInterface({ input: child.stdout! }).once('line', r));
  expect(line).toBe('ready');
  return child.pid!;
}

afterEach(() => {
  for (const t of terms.splice(0)) {
    try {
      t.pty.kill('SIGKILL');
    } catch {
      // gone
    }
  }
});
afterAll(async () => {
  // Keepers outlive daemons by design: the tests end theirs.
  for (const pid of keepers) if (alive(pid)) process.kill(pid, 'SIGTERM');
  await stopAllDaemons();
});

describe('persistent sessions', () => {
  let host: RunningDaemon;
  let agent: RunningDaemon;
  beforeAll(async () => {
    ({ host, agent } = await hostAndAgent(['--session-cap', '4']));
  }, 60_000);
  afterEach(async () => {
    // A failed test leaves no session behind for the next one (the cap is small here).
    for (const r of await list(agent, host.ticket)) await runCli(agent.cliEnv, ['session', 'kill', host.ticket, r.name]);
  });

  it('session list on a host with no sessions prints nothing and exits 0', async () => {
    const r = await runCli(agent.cliEnv, ['session', 'list', host.ticket]);
    expect(r).toMatchObject({ code: 0, stdout: '', stderr: '' });
  });

  it('survives the client being killed: list shows it detached, attach redraws vi exactly and typing works', async () => {
    const a = openTerm(agent.cliEnv, ['ssh', host.ticket, '--session', 'vi1', SHELL]);
    await a.until(PROMPT);
    a.pty.write('echo MARK$((6*7))ER; vi -u NONE -N\r');
    await a.until(/MARK42ER/);
    await waitUntil('vi on the alternate screen', async () => (await a.screen()).alt && (await a.screen()).lines.some((l) => l.startsWith('~')));
    a.pty.write('iwritten before\x1b');
    await a.until(/written before/);
    // vi clears its mode line once it is sure the Esc was not the start of a key sequence.
    await waitUntil('vi back in normal mode', async () => (await a.screen()).lines[23] === '');
    const before = await a.screen();
    process.kill(a.pty.pid, 'SIGKILL');
    await a.exited;

    await waitUntil('the session to show no client', async () => (await list(agent, host.ticket)).find((r) => r.name === 'vi1')?.clients === 0);
    const [row] = (await list(agent, host.ticket)).filter((r) => r.name === 'vi1');
    expect(row).toMatchObject({ running: true, clients: 0, cols: 80, rows: 24, command: SHELL });

    const b = openTerm(agent.cliEnv, ['session', 'attach', host.ticket, 'vi1']);
    await b.until(/written before/);
    expect(exe(b.pty.pid)).toBe(NATIVE);
    await sleep(300);
    const after = await b.screen();
    expect(after.alt).toBe(true);
    expect(after.lines).toEqual(before.lines);
    expect(after.cursor).toEqual(before.cursor);

    // Typing reaches vi; leaving it shows the shell's screen with the marker again.
    b.pty.write('otyped after\x1b');
    await b.until(/typed after/);
    b.pty.write(':q!\r');
    await waitUntil('the normal screen', async () => !(await b.screen()).alt);
    expect((await b.screen()).lines.join('\n')).toContain('MARK42ER');
    b.pty.write('exit 3\r');
    expect(await b.exited).toBe(3);
    await waitUntil('the session to be gone', async () => !(await list(agent, host.ticket)).some((r) => r.name === 'vi1'));
  }, 60_000);

  it('two clients, one read-only: its keys never reach the shell, both see the output, the PTY takes the writer size', async () => {
    const w = openTerm(agent.cliEnv, ['ssh', host.ticket, '--session', 'pair', SHELL]);
    await w.until(PROMPT);
    const v = openTerm(agent.cliEnv, ['session', 'attach', host.ticket, 'pair', '--read-only']);
    await v.until(/\$ /);
    expect([exe(w.pty.pid), exe(v.pty.pid)]).toEqual([NATIVE, NATIVE]);
    v.pty.write('echo FROM-VIEWER\r');
    await sleep(500);
    w.pty.write('echo FROM-WRITER-$((2+2))\r');
    await w.until(/FROM-WRITER-4/);
    await v.until(/FROM-WRITER-4/);
    expect(w.raw()).not.toContain('FROM-VIEWER');
    expect(v.raw()).not.toContain('FROM-VIEWER');
    const [row] = (await list(agent, host.ticket)).filter((r) => r.name === 'pair');
    expect(row?.clients).toBe(2);
    // The PTY takes the writer's size, not a viewer's.
    v.pty.resize(60, 20);
    w.pty.resize(100, 30);
    await waitUntil('the PTY to take the writer size', async () => (await list(agent, host.ticket)).find((r) => r.name === 'pair')?.cols === 100);
    w.pty.write('stty size\r');
    await w.until(/30 100/);
    // ~d detaches the viewer; the shell lives on.
    v.pty.write('\r~d');
    expect(await v.exited).toBe(0);
    expect(v.raw()).toContain('detached from session pair');
    w.pty.write('echo STILL-$((1+1))\r');
    await w.until(/STILL-2/);
    // kill: the attached client ends with the shell (SIGHUP: 128+1), the session is gone.
    const k = await runCli(agent.cliEnv, ['session', 'kill', host.ticket, 'pair']);
    expect(k).toMatchObject({ code: 0, stderr: '' });
    expect(await w.exited).toBe(129);
    expect((await list(agent, host.ticket)).some((r) => r.name === 'pair')).toBe(false);
    const again = await runCli(agent.cliEnv, ['session', 'kill', host.ticket, 'pair']);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^burrow: NotFound: no session named pair/);
  }, 60_000);

  it('by default (--session-writer last-input) every writing client types, and the PTY takes the size of the last to type', async () => {
    const a = openTerm(agent.cliEnv, ['ssh', host.ticket, '--session', 'both', SHELL], 90, 25);
    await a.until(PROMPT);
    const b = openTerm(agent.cliEnv, ['session', 'attach', host.ticket, 'both'], 70, 20);
    await b.until(/\$ /);
    await waitUntil('the PTY to take the size of the client that attached last', async () => (await list(agent, host.ticket)).find((r) => r.name === 'both')?.cols === 70);
    a.pty.write('echo FROM-A-$((1+1)); stty size\r');
    await b.until(/FROM-A-2/);
    await a.until(/25 90/);
    b.pty.write('echo FROM-B-$((2+1)); stty size\r');
    await a.until(/FROM-B-3/);
    await b.until(/20 70/);
  }, 60_000);

  it('keepers of other burrow builds: an older one is spoken with, one that cannot be is a VersionMismatch and its shell lives on', async () => {
    const legacy = await startKeeperOfBuild(host, 'legacy', 'echo LEGACY-$((6*7)); exec sleep 600', 0);
    const newer = await startKeeperOfBuild(host, 'newer', 'echo NEWER-$((6*7)); exec sleep 600', 2);
    // The keeper from before the hello is listed and attached as before.
    const rows = await list(agent, host.ticket);
    expect(rows.map((r) => r.name)).toEqual(['legacy']);
    expect(rows[0]?.keeperPid).toBe(legacy);
    const v = openTerm(agent.cliEnv, ['session', 'attach', host.ticket, 'legacy', '--read-only']);
    await v.until(/LEGACY-42/);
    // The keeper that only speaks a newer protocol: left out of the list (said in the host's log), refused with a typed error.
    await host.waitLog((l) => l['event'] === 'session_version' && l['name'] === 'newer');
    const a = await runCli(agent.cliEnv, ['session', 'attach', host.ticket, 'newer']);
    expect(a.code).not.toBe(0);
    expect(a.stderr).toMatch(/^burrow: VersionMismatch: this session's keeper \(pid \d+\) speaks keeper protocol 2 to 2; burrowd speaks 1\. The shell lives on/);
    const k = await runCli(agent.cliEnv, ['session', 'kill', host.ticket, 'newer']);
    expect(k.stderr).toMatch(/^burrow: VersionMismatch: /);
    expect(alive(newer)).toBe(true);
    process.kill(newer, 'SIGTERM');
    await waitUntil('the newer keeper to end', () => !alive(newer));

    // A burrowd that speaks only a newer protocol: a current keeper is refused on the daemon's side, a keeper of its own build works.
    const host2 = await startDaemon({ args: ['--host'], env: { BURROW_TEST_KEEPER_PROTOCOL: '2' } });
    try {
      host2.authorizeKey(endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim()));
      const current = await startKeeperOfBuild(host2, 'current', 'echo CURRENT; exec sleep 600', undefined);
      await startKeeperOfBuild(host2, 'same', 'echo SAME-$((6*7)); exec sleep 600', 2);
      const refused = await runCli(agent.cliEnv, ['session', 'attach', host2.ticket, 'current']);
      expect(refused.stderr).toMatch(/^burrow: VersionMismatch: the session's keeper \(.*current\.sock\) speaks keeper protocol 1; this burrowd speaks 2 to 2\. The shell lives on/);
      expect(alive(current)).toBe(true);
      const s2 = openTerm(agent.cliEnv, ['session', 'attach', host2.ticket, 'same', '--read-only']);
      await s2.until(/SAME-42/);
      expect((await list(agent, host2.ticket)).map((r) => r.name)).toEqual(['same']);
      expect((await runCli(agent.cliEnv, ['session', 'kill', host2.ticket, 'same'])).code).toBe(0);
      process.kill(current, 'SIGTERM');
    } finally {
      await host2.stop();
    }
  }, 90_000);

  it('keeps the exit status of a shell that ended with no client until it is collected', async () => {
    const a = openTerm(agent.cliEnv, ['ssh', host.ticket, '--session', 'ends', 'echo started; sleep 1; exit 7']);
    await a.until(/started/);
    process.kill(a.pty.pid, 'SIGKILL');
    await waitUntil('the shell to end', async () => (await list(agent, host.ticket)).find((r) => r.name === 'ends')?.running === false);
    const [row] = (await list(agent, host.ticket)).filter((r) => r.name === 'ends');
    expect(row?.exit).toEqual({ code: 7 });
    const b = openTerm(agent.cliEnv, ['session', 'attach', host.ticket, 'ends']);
    expect(await b.exited).toBe(7);
    expect(b.raw()).toContain('started');
    await waitUntil('the collected session to go', async () => !(await list(agent, host.ticket)).some((r) => r.name === 'ends'));
    // An attached client ends with the shell's status.
    const c = openTerm(agent.cliEnv, ['ssh', host.ticket, '--session', 'ends2', 'exit 5']);
    expect(await c.exited).toBe(5);
  }, 60_000);

  it('refuses a session over the cap with a clear error, and attach to an unknown name', async () => {
    const started: Term[] = [];
    for (const n of ['c1', 'c2', 'c3', 'c4']) {
      const t = openTerm(agent.cliEnv, ['ssh', host.ticket, '--session', n, SHELL]);
      await t.until(PROMPT);
      started.push(t);
    }
    const over = await runCli(agent.cliEnv, ['ssh', host.ticket, '--session', 'c5', 'true']);
    expect(over.code).toBe(255);
    expect(over.stderr).toMatch(/^burrow: ChannelRefused: session limit of 4 reached/);
    const unknown = await runCli(agent.cliEnv, ['session', 'attach', host.ticket, 'nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/NotFound: no session named nope/);
    for (const n of ['c1', 'c2', 'c3', 'c4']) expect((await runCli(agent.cliEnv, ['session', 'kill', host.ticket, n])).code).toBe(0);
    for (const t of started) expect(await t.exited).toBe(129);
  }, 90_000);

  it('an idle session with no client expires after its linger time, and its shell ends', async () => {
    const a = openTerm(agent.cliEnv, ['ssh', host.ticket, '--session', 'brief', '--session-linger', '1', SHELL]);
    await a.until(PROMPT);
    const [row] = (await list(agent, host.ticket)).filter((r) => r.name === 'brief');
    process.kill(a.pty.pid, 'SIGKILL');
    await waitUntil('the session to expire', async () => !(await list(agent, host.ticket)).some((r) => r.name === 'brief'), 15_000);
    await waitUntil('its shell and keeper to end', () => !alive(row!.pid) && !alive(row!.keeperPid));
  }, 60_000);

  it('redraws a screen whose history would not fit in one frame (the screen itself, then live output)', async () => {
    // 250 columns, every cell its own colour: 1000 lines of history serialize to about 1.5 MiB.
    // (The marker is printed in two pieces so the echoed command line does not match it.)
    const paint = `awk 'BEGIN{for(i=0;i<1100;i++){s="";for(j=0;j<250;j++)s=s sprintf("\\033[3%dmx",j%8);print s}; print "\\033[0mPAINT" "ED"}'`;
    const a = openTerm(agent.cliEnv, ['ssh', host.ticket, '--session', 'wide', SHELL], 250, 30);
    await a.until(PROMPT);
    a.pty.write(`${paint}\r`);
    await a.until(/PAINTED/, 30_000);
    const b = openTerm(agent.cliEnv, ['session', 'attach', host.ticket, 'wide', '--read-only'], 250, 30);
    await b.until(/PAINTED/);
    a.pty.write('echo LIVE-$((5*5))\r');
    await b.until(/LIVE-25/);
  }, 60_000);

  it('escapes: ~? lists them, ~~ sends one tilde, ~. detaches; every way out gives the terminal back as it was', async () => {
    const attach = `${BURROW} session attach ${host.ticket} esc`;
    const check = (n: number): string => `echo "status $?"; [ "$(stty -g)" = "$before" ] && echo RESTORED-${n}`;
    const script = [`before=$(stty -g)`, `${BURROW} ssh ${host.ticket} --session esc "${SHELL}"`, check(1), attach, check(2), attach, check(3), 'sleep 60'].join('\n');
    const t = bashInPty(script, agent.cliEnv);
    const child = (): number => Number(readFileSync(`/proc/${t.term.pid}/task/${t.term.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
    try {
      await t.until(PROMPT);
      expect(exe(child())).toBe(NATIVE);
      t.term.write('\r~?');
      await t.until(/~d {3}- detach \(the shell lives on\)/);
      expect(t.screen()).toContain('Supported escape sequences:');
      // At a line start ~~ is one tilde: the shell gets `~; echo T$((2+3))`.
      t.term.write('~~; echo T$((2+3))\r');
      await t.until(/T5/);
      expect(t.screen()).toContain('$ ~; echo T');
      t.term.write('\r~.');
      await t.until(/RESTORED-1/);
      expect(t.screen()).toMatch(/detached from session esc \(burrow session attach \S+ esc\)\r+\nstatus 0\r?\n/);
      // Ended by a signal: the terminal is given back all the same.
      await waitUntil('the second attach', () => exe(child()) === NATIVE);
      await sleep(500);
      process.kill(child(), 'SIGTERM');
      await t.until(/RESTORED-2/);
      expect(t.screen()).toMatch(/status 143\r?\nRESTORED-2/);
      // The shell ending: its status is the client's.
      await waitUntil('the third attach', () => exe(child()) === NATIVE);
      await sleep(500);
      t.term.write('exit 4\r');
      await t.until(/RESTORED-3/);
      expect(t.screen()).toMatch(/status 4\r?\nRESTORED-3/);
    } finally {
      t.term.kill('SIGKILL');
    }
  }, 60_000);

  it('an unauthorized peer can neither list nor attach', async () => {
    const stranger = await startDaemon();
    const l = await runCli(stranger.cliEnv, ['session', 'list', host.ticket]);
    expect(l.code).toBe(255);
    expect(l.stdout).toBe('');
    expect(l.stderr).toMatch(/^burrow: (AuthRejected|PeerRefused): /);
    const a = await runCli(stranger.cliEnv, ['session', 'attach', host.ticket, 'vi1']);
    expect(a.code).toBe(255);
    expect(a.stderr).toMatch(/^burrow: (AuthRejected|PeerRefused): /);
    await stranger.stop();
  }, 60_000);
});

describe('--session-writer last-attach', () => {
  it('comes from the flag or config.json, defaults to last-input, and refuses other values', () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-writer-config-'));
    try {
      expect(parseDaemonArgs(['--state', dir], {}).sessions.writer).toBe('last-input');
      expect(parseDaemonArgs(['--state', dir, '--session-writer', 'last-attach'], {}).sessions.writer).toBe('last-attach');
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ sessionWriter: 'last-attach' }));
      expect(parseDaemonArgs(['--state', dir], {}).sessions.writer).toBe('last-attach');
      expect(() => parseDaemonArgs(['--state', dir, '--session-writer', 'first'], {})).toThrow(/--session-writer: "first" is not one of last-input, last-attach/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('only the client that attached last types; when it leaves, the one before takes over', async () => {
    const { host, agent } = await hostAndAgent(['--session-writer', 'last-attach']);
    try {
      const a = openTerm(agent.cliEnv, ['ssh', host.ticket, '--session', 'turns', SHELL]);
      await a.until(PROMPT);
      const b = openTerm(agent.cliEnv, ['session', 'attach', host.ticket, 'turns'], 70, 20);
      await b.until(/\$ /);
      for (const r of await list(agent, host.ticket)) keepers.add(r.keeperPid);
      a.pty.write('echo FROM-EARLIER\r');
      await sleep(500);
      b.pty.write('echo FROM-LATER-$((2+2))\r');
      await a.until(/FROM-LATER-4/);
      expect(a.raw()).not.toContain('FROM-EARLIER');
      expect(b.raw()).not.toContain('FROM-EARLIER');
      // The later client leaves: the earlier one writes again, and the PTY takes its size.
      b.pty.write('\r~d');
      expect(await b.exited).toBe(0);
      // The client is gone once the keeper has seen its channel close, which may trail its exit.
      await vi.waitFor(async () => expect((await list(agent, host.ticket)).find((r) => r.name === 'turns')?.clients).toBe(1), { timeout: 10_000, interval: 100 });
      a.pty.write('echo BACK-$((3+3)); stty size\r');
      await a.until(/BACK-6/);
      await a.until(/24 80/);
      expect((await runCli(agent.cliEnv, ['session', 'kill', host.ticket, 'turns'])).code).toBe(0);
      expect(await a.exited).toBe(129);
    } finally {
      await agent.stop();
      await host.stop();
    }
  }, 60_000);
});

describe('sessions across daemon restarts', () => {
  it('the agent killed under an attached client: it reconnects by itself, nothing lost or doubled', async () => {
    const { host, agent } = await hostAndAgent();
    // The client may restart the agent itself (autostart), on loopback and without relays.
    const env = { ...agent.cliEnv, BURROW_NO_AUTOSTART: '0', BURROW_RELAY: 'disabled', BURROW_BIND: '127.0.0.1:0' };
    try {
      const a = openTerm(env, ['ssh', host.ticket, '--session', 'count', 'for i in $(seq 1 300); do echo n$i; sleep 0.02; done; echo COUNT-DONE; sleep 60']);
      await a.until(/n20\r*\n/);
      // The native client attached; on the loss it hands over to the Node CLI, in the same process.
      expect(exe(a.pty.pid)).toBe(NATIVE);
      agent.proc.kill('SIGKILL');
      const killedAt = Date.now();
      await a.until(/connection lost, reconnecting/);
      // Keys typed while disconnected are dropped: were they sent late, the shell's PTY would echo them.
      a.pty.write('TYPED-WHILE-DOWN');
      const lostAt = a.raw().indexOf('connection lost');
      await waitUntil('output after reconnecting', () => /n\d+/.test(a.raw().slice(lostAt)), 10_000);
      expect(Date.now() - killedAt).toBeLessThan(10_000);
      await a.until(/COUNT-DONE/, 30_000);
      expect(exe(a.pty.pid)).toBe(process.execPath);
      const seen = [...a.raw().matchAll(/n(\d+)(?!\d)/g)].map((m) => Number(m[1]));
      expect(seen).toEqual(Array.from({ length: 300 }, (_, i) => i + 1));
      expect(a.raw().match(/connection lost, reconnecting/g)).toHaveLength(1);
      expect(a.raw()).not.toContain('TYPED-WHILE-DOWN');
      for (const r of await list({ ...agent, cliEnv: env }, host.ticket)) keepers.add(r.keeperPid);
      expect((await runCli(env, ['session', 'kill', host.ticket, 'count'])).code).toBe(0);
      expect(await a.exited).toBe(129);
    } finally {
      // The agent the client started is not the helper's: stop it through its socket.
      await runCli(env, ['daemon', 'stop']);
      await agent.stop();
      await host.stop();
    }
  }, 90_000);

  it('gives up with 255 after --reconnect-timeout when the agent does not come back, the terminal given back', async () => {
    const { host, agent } = await hostAndAgent();
    // Run from a shell that checks its terminal afterwards: the native client hands the lost
    // connection to the Node CLI, and the mode it leaves must be the one found at the start.
    const a = bashInPty(`before=$(stty -g); ${BURROW} ssh ${host.ticket} --session gone --reconnect-timeout 2 "${SHELL}"; echo "status $?"; [ "$(stty -g)" = "$before" ] && echo RESTORED; sleep 60`, agent.cliEnv);
    try {
      await a.until(PROMPT);
      for (const r of await list(agent, host.ticket)) keepers.add(r.keeperPid);
      agent.proc.kill('SIGKILL'); // and autostart is off: nothing brings it back
      const t0 = Date.now();
      await a.until(/status \d+/, 15_000);
      expect(a.screen()).toMatch(/status 255\r?\n/);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(1500);
      expect(a.screen()).toMatch(/burrow: Disconnected: gave up reconnecting/);
      await a.until(/RESTORED/);
    } finally {
      a.term.kill('SIGKILL');
      await agent.stop();
      await host.stop();
    }
  }, 60_000);

  it('the host daemon stopped and started again: same shell process, attach works, scrollback intact', async () => {
    const port = await freeUdpPort();
    const hostArgs = ['--grace', '1', '--bind', `127.0.0.1:${port}`];
    const { host, agent } = await hostAndAgent(hostArgs);
    const a = openTerm(agent.cliEnv, ['ssh', host.ticket, '--session', 'keep', SHELL]);
    await a.until(PROMPT);
    a.pty.write('for i in $(seq 1 60); do echo line$i; done; echo $$ > shell.pid\r');
    await a.until(/line60/);
    const [before] = await list(agent, host.ticket);
    expect(before?.name).toBe('keep');

    await host.stop('SIGTERM', { keepDir: true });
    // The attached client keeps its terminal and says so once.
    await a.until(/connection lost, reconnecting/);
    expect(alive(before!.pid)).toBe(true);
    const again = await startDaemon({ dir: host.dir, args: ['--host', ...hostArgs] });
    expect(again.endpointId).toBe(host.endpointId);
    // A dial the agent began while the host was down may run to its timeout: ask until answered.
    let rows: Row[] = [];
    await waitUntil('the restarted host to answer', async () => {
      const r = await runCli(agent.cliEnv, ['session', 'list', again.ticket, '--json']);
      if (r.code === 0) rows = JSON.parse(r.stdout) as Row[];
      return r.code === 0;
    }, 45_000);
    const [after] = rows;
    expect(after).toMatchObject({ name: 'keep', pid: before!.pid, running: true });
    expect(Number(readFileSync(`${again.home}/shell.pid`, 'utf8'))).toBe(before!.pid);

    // The first client comes back by itself; a second one sees the scrollback from before.
    await waitUntil('the first client to reattach', async () => (await list(agent, again.ticket))[0]?.clients === 1, 30_000);
    const b = openTerm(agent.cliEnv, ['session', 'attach', again.ticket, 'keep', '--read-only'], 80, 24);
    await b.until(/line60/);
    expect(b.raw()).toMatch(/line1\r*\n/);
    a.pty.write('echo AFTER-$((3+4))\r');
    await a.until(/AFTER-7/);
    await b.until(/AFTER-7/);
    expect((await runCli(agent.cliEnv, ['session', 'kill', again.ticket, 'keep'])).code).toBe(0);
    expect(await a.exited).toBe(129);
    await again.stop();
    await agent.stop();
  }, 150_000);

  it('the user host unit lets keepers outlive a restart of burrowd', () => {
    const unit = readFileSync(new URL('../systemd/burrow-host.service', import.meta.url), 'utf8');
    expect(unit).toMatch(/^KillMode=process$/m);
  });
});
