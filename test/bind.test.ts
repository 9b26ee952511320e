// --bind binds exactly what it names (issues 12 and 11): no UDP socket on every IPv6 interface
// when an IPv4 address was given, only the named addresses in the ticket, one address per
// family, and a fixed port gives the same ticket across restarts.

import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { afterAll, describe, expect, it } from 'vitest';
import { parseBind, parseDaemonArgs, parseMaxStartups } from '../daemon/config.js';
import { parseTicket } from '../daemon/transport/iroh.js';
import { startDaemon, stopAllDaemons } from './helpers/daemon.js';

afterAll(stopAllDaemons);

function freeUdpPort(family: 'udp4' | 'udp6' = 'udp4'): Promise<number> {
  return new Promise((resolve) => {
    const s = createSocket(family);
    s.bind(0, family === 'udp4' ? '127.0.0.1' : '::1', () => {
      const port = s.address().port;
      s.close(() => resolve(port));
    });
  });
}

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

  it('MaxStartups takes N or START:RATE:FULL', () => {
    expect(parseMaxStartups('10:30:100')).toEqual({ start: 10, rate: 30, full: 100 });
    expect(parseMaxStartups('20')).toEqual({ start: 20, rate: 100, full: 20 });
    expect(() => parseMaxStartups('10:30')).toThrow(/START:RATE:FULL/);
    expect(() => parseMaxStartups('50:30:10')).toThrow(/START <= FULL/);
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
