// --bind binds exactly what it names (issues 12 and 11): no UDP socket on every IPv6 interface
// when an IPv4 address was given, only the named addresses in the ticket, one address per
// family, and a fixed port gives the same ticket across restarts.

import { mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { parseBind, parseDaemonArgs, parseMaxStartups } from '../daemon/config.js';
import { parseTicket } from '../daemon/transport/iroh.js';
import { BURROWD, startDaemon, stopAllDaemons, freeUdpPort } from './helpers/daemon.js';

afterAll(stopAllDaemons);

/** The local addresses of a process's UDP sockets, read from /proc (ip:port, [ipv6]:port). */
function udpSockets(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const out: string[] = [];
  for (const [file, v6] of [['/proc/net/udp', false], ['/proc/net/udp6', true]] as const) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || !inodes.has(f[9]!)) continue;
      const [hex, portHex] = f[1]!.split(':') as [string, string];
      const port = parseInt(portHex, 16);
      // The kernel prints each 32-bit word of the address in host (little-endian) order.
      const words = hex.match(/.{8}/g)!.map((w) => w.match(/../g)!.reverse().join(''));
      if (!v6) out.push(`${words[0]!.match(/../g)!.map((b) => parseInt(b, 16)).join('.')}:${port}`);
      else {
        const groups = words.join('').match(/.{4}/g)!.map((g) => parseInt(g, 16).toString(16));
        const text = groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
        out.push(`[${text}]:${port}`);
      }
    }
  }
  return out.sort();
}

/**
 * The sockets once start-up is over: iroh opens a short-lived 0.0.0.0 UDP socket while it probes
 * the network at start (not a listener; gone within a second), so poll for a bounded while.
 */
async function steadyUdpSockets(pid: number, ok: (s: string[]) => boolean): Promise<string[]> {
  let last: string[] = [];
  for (let i = 0; i < 50; i++) {
    last = udpSockets(pid);
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  return last;
}

describe('--bind parsing', () => {
  it('takes IPv4:PORT and [IPv6]:PORT, one per family, the last of a family winning', () => {
    expect(parseBind('127.0.0.1:7000')).toEqual(['127.0.0.1:7000']);
    expect(parseBind('0.0.0.0:7000,[::]:7001')).toEqual(['0.0.0.0:7000', '[::]:7001']);
    expect(parseBind('127.0.0.1:0,127.0.0.1:7000')).toEqual(['127.0.0.1:7000']);
    expect(() => parseBind('localhost:7000')).toThrow(/is not IPv4:PORT or \[IPv6\]:PORT/);
    expect(() => parseBind('[::1]:70000')).toThrow(/--bind/);
    const opts = parseDaemonArgs(['--state', '/nonexistent-burrow-test', '--bind', '127.0.0.1:7000', '--bind', '[::1]:7001'], {});
    expect(opts.bind).toEqual(['127.0.0.1:7000', '[::1]:7001']);
  });

  it('--foreground, which units from earlier versions pass, is accepted and changes nothing', () => {
    const base = ['--state', '/nonexistent-burrow-test', '--host'];
    expect(parseDaemonArgs([...base, '--foreground'], {})).toEqual(parseDaemonArgs(base, {}));
  });

  it('MaxStartups takes N or START:RATE:FULL', () => {
    expect(parseMaxStartups('10:30:100')).toEqual({ start: 10, rate: 30, full: 100 });
    expect(parseMaxStartups('20')).toEqual({ start: 20, rate: 100, full: 20 });
    expect(() => parseMaxStartups('10:30')).toThrow(/START:RATE:FULL/);
    expect(() => parseMaxStartups('50:30:10')).toThrow(/START <= FULL/);
  });

  it('durations that become timers stop at a day: past 2^31 ms Node would fire them at once', () => {
    const parse = (...a: string[]) => parseDaemonArgs(['--state', '/nonexistent-burrow-test', ...a], {});
    expect(parse('--login-grace-time', '86400').hostLimits.loginGraceMs).toBe(86_400_000);
    expect(() => parse('--login-grace-time', '2147484')).toThrow(/--login-grace-time: 2147484 is over the limit of 86400 seconds/);
    expect(() => parse('--keepalive-interval', '3000000')).toThrow(/--keepalive-interval: .*over the limit/);
    expect(() => parse('--persist', '90000')).toThrow(/--persist: .*over the limit/);
    expect(() => parse('--grace', '90000')).toThrow(/--grace: .*over the limit/);
  });

  it('defaults: keepalive every 5 s of silence, 2 unanswered pings (a dead peer noticed within 15 s)', () => {
    const o = parseDaemonArgs(['--state', '/nonexistent-burrow-test'], {});
    expect(o.keepalive).toEqual({ intervalMs: 5000, countMax: 2 });
    expect([o.hostLimits.keepaliveIntervalMs, o.hostLimits.keepaliveCountMax]).toEqual([5000, 2]);
  });
});

describe('--bind binds exactly what it names', () => {
  it('an IPv4 address alone: no socket on any non-loopback IPv6 address, only it in the ticket, the same ticket after a restart', async () => {
    const port = await freeUdpPort();
    let d = await startDaemon({ args: ['--host', '--bind', `127.0.0.1:${port}`] });
    // iroh cannot leave out the family not named: it is held on loopback, never on every interface.
    const expected = (s: string): boolean => s === `127.0.0.1:${port}` || s.startsWith('[::1]:');
    const sockets = await steadyUdpSockets(d.proc.pid!, (all) => all.every(expected));
    expect(sockets).toContain(`127.0.0.1:${port}`);
    for (const s of sockets) expect(expected(s)).toBe(true);
    expect(parseTicket(d.ticket).direct).toEqual([`127.0.0.1:${port}`]);
    const ticket = d.ticket;
    await d.stop('SIGTERM', { keepDir: true });
    d = await startDaemon({ args: ['--host', '--bind', `127.0.0.1:${port}`], dir: d.dir });
    expect(d.ticket).toBe(ticket);
    await d.stop();
  }, 60_000);

  it('an IPv4 and an IPv6 address: exactly those two bound and advertised, stable across restarts', async () => {
    const p4 = await freeUdpPort();
    const p6 = await freeUdpPort('udp6');
    const args = ['--host', '--bind', `127.0.0.1:${p4}`, '--bind', `[::1]:${p6}`];
    let d = await startDaemon({ args });
    const want = [`127.0.0.1:${p4}`, `[::1]:${p6}`];
    expect(await steadyUdpSockets(d.proc.pid!, (all) => JSON.stringify(all) === JSON.stringify(want))).toEqual(want);
    expect(parseTicket(d.ticket).direct).toEqual([`127.0.0.1:${p4}`, `[::1]:${p6}`]);
    const ticket = d.ticket;
    await d.stop('SIGTERM', { keepDir: true });
    d = await startDaemon({ args, dir: d.dir });
    expect(d.ticket).toBe(ticket);
    await d.stop();
  }, 60_000);
});

// unshare -n needs root (or user namespaces); where it is refused the test cannot build a machine without IPv6.
const canUnshare = spawnSync('unshare', ['-n', 'true'], { timeout: 5000 }).status === 0;

describe('--bind on a machine without IPv6', () => {
  it.skipIf(!canUnshare)('--bind 127.0.0.1:0 starts with IPv6 disabled (a network namespace): the IPv6 stand-in is left out and logged', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-test-'));
    const script = 'ip link set lo up && sysctl -qw net.ipv6.conf.all.disable_ipv6=1 && exec "$0" "$@"';
    const args = [BURROWD, '--state', join(dir, 'state'), '--socket', join(dir, 'agent.sock'), '--relay', 'disabled', '--bind', '127.0.0.1:0', '--host'];
    const proc = spawn('unshare', ['-n', 'sh', '-c', script, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    const logs: string[] = [];
    createInterface({ input: proc.stderr! }).on('line', (l) => logs.push(l));
    const exited = new Promise<number | null>((r) => proc.once('exit', (c) => r(c)));
    try {
      const ticket = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no ticket within 20 s: ${logs.join('\n')}`)), 20_000);
        void exited.then((c) => reject(new Error(`burrowd exited with ${c}: ${logs.join('\n')}`)));
        createInterface({ input: proc.stdout! }).on('line', (l) => {
          const m = /^ticket: (.*)$/.exec(l);
          if (m) (clearTimeout(timer), resolve(m[1]!));
        });
      });
      expect(parseTicket(ticket).direct).toHaveLength(1);
      expect(parseTicket(ticket).direct[0]).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(logs.some((l) => l.includes('"event":"bind_standin_skipped"') && l.includes('"family":"v6"'))).toBe(true);
    } finally {
      proc.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
      if (proc.exitCode === null) proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
