import { spawn } from 'node:child_process';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ForwardStatus } from '../shared/status.js';
import { BURROW, runCli, startDaemon, stopAllDaemons, type RunningDaemon, hostAndAgent } from './helpers/daemon.js';
import { freePort } from './helpers/sshd.js';

afterAll(stopAllDaemons);

function httpServer(body: string, listenOn: number | string): Promise<HttpServer> {
  const s = createHttpServer((_req, res) => res.end(body));
  return new Promise((resolve) => (typeof listenOn === 'number' ? s.listen(listenOn, '127.0.0.1', () => resolve(s)) : s.listen(listenOn, () => resolve(s))));
}

/** curl as a child process, asynchronously: the servers it fetches from live in this process. */
function curl(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn('curl', ['-sS', '--max-time', '20', ...args]);
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.once('close', (code) => resolve({ code, out, err }));
  });
}

const curlAsync = async (args: string[]): Promise<string> => (await curl(args)).out;

const fdCount = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

async function list(agent: RunningDaemon): Promise<ForwardStatus[]> {
  return JSON.parse((await runCli(agent.cliEnv, ['forward', 'list', '--json'])).stdout) as ForwardStatus[];
}

describe('port forwarding held by the daemon', () => {
  let host: RunningDaemon;
  let agent: RunningDaemon;
  let web: HttpServer;
  let webPort: number;
  beforeAll(async () => {
    ({ host, agent } = await hostAndAgent());
    webPort = await freePort();
    web = await httpServer('hello from the host side', webPort);
  });
  afterAll(() => {
    web?.close();
  });

  it('-L reaches an HTTP server on the host side, 20 fetches in parallel', async () => {
    const port = await freePort();
    const add = await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-L', `${port}:127.0.0.1:${webPort}`]);
    expect(add.code).toBe(0);
    expect(add.stdout).toMatch(/^forward \d+: -L 127\.0\.0\.1:\d+:127\.0\.0\.1:\d+ to /);
    const bodies = await Promise.all(Array.from({ length: 20 }, () => curlAsync([`http://127.0.0.1:${port}/`])));
    expect(bodies).toEqual(Array(20).fill('hello from the host side'));
    const f = (await list(agent)).find((x) => x.forward.includes(`:${port}:`));
    expect(f).toMatchObject({ detached: true, state: 'active', connections: 20 });
    expect(f!.bytesIn).toBeGreaterThan(20 * 'hello from the host side'.length);
    // counted in status too
    const st = JSON.parse((await runCli(agent.cliEnv, ['status', '--json'])).stdout) as { forwards: ForwardStatus[] };
    expect(st.forwards.some((x) => x.id === f!.id)).toBe(true);
  });

  it('-R lets the host side reach a service on this side', async () => {
    const svcPort = await freePort();
    const svc = await httpServer('hello from the client side', svcPort);
    const remotePort = await freePort();
    expect((await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-R', `${remotePort}:127.0.0.1:${svcPort}`])).code).toBe(0);
    // The host daemon listens on remotePort (loopback): fetch through it as a host-side program would.
    expect((await curl([`http://127.0.0.1:${remotePort}/`])).out).toBe('hello from the client side');
    svc.close();
  });

  it('-D is a SOCKS5 and SOCKS4a proxy resolving names on the host side', async () => {
    const socks = await freePort();
    expect((await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-D', String(socks)])).code).toBe(0);
    expect((await curl(['--socks5-hostname', `127.0.0.1:${socks}`, `http://localhost:${webPort}/`])).out).toBe('hello from the host side');
    expect((await curl(['--socks4a', `127.0.0.1:${socks}`, `http://localhost:${webPort}/`])).out).toBe('hello from the host side');
    expect((await curl(['--socks5', `127.0.0.1:${socks}`, `http://127.0.0.1:${webPort}/`])).out).toBe('hello from the host side');
  });

  it('forwards Unix sockets both ways', async () => {
    const remoteSock = join(host.dir, 'remote-web.sock');
    const s1 = await httpServer('over a unix socket', remoteSock);
    const localSock = join(agent.dir, 'local.sock');
    expect((await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-L', `${localSock}:${remoteSock}`])).code).toBe(0);
    expect((await curl(['--unix-socket', localSock, 'http://x/'])).out).toBe('over a unix socket');
    const clientSock = join(agent.dir, 'client-web.sock');
    const s2 = await httpServer('back over a unix socket', clientSock);
    const hostSideSock = join(host.dir, 'reverse.sock');
    expect((await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-R', `${hostSideSock}:${clientSock}`])).code).toBe(0);
    expect((await curl(['--unix-socket', hostSideSock, 'http://x/'])).out).toBe('back over a unix socket');
    s1.close();
    s2.close();
  });

  it('refuses a port already in use with a clear error, leaving nothing half-made', async () => {
    const busy: Server = createServer();
    const port = await freePort();
    await new Promise<void>((r) => busy.listen(port, '127.0.0.1', r));
    const before = (await list(agent)).length;
    const r = await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-L', `${port}:127.0.0.1:${webPort}`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/127\.0\.0\.1:\d+ is already in use/);
    expect((await list(agent)).length).toBe(before);
    busy.close();
    const bad = await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-L', 'nonsense']);
    expect(bad.stderr).toMatch(/bad forward "nonsense": .*the forms are -L \[bind:\]port:host:hostport/);
  });

  it('cancel removes the listener and frees the port', async () => {
    const port = await freePort();
    const add = await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-L', `${port}:127.0.0.1:${webPort}`]);
    const id = /^forward (\d+):/.exec(add.stdout)![1]!;
    expect((await runCli(agent.cliEnv, ['forward', 'cancel', id])).code).toBe(0);
    expect((await list(agent)).some((f) => f.id === id)).toBe(false);
    const s = createServer();
    await new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => resolve());
    });
    s.close();
    expect((await runCli(agent.cliEnv, ['forward', 'cancel', '9999'])).code).toBe(1);
  });

  it('keeps half-close: a client that finished sending still gets the answer', async () => {
    // The service answers only after the client's EOF, with how many bytes it got.
    const counter = createServer({ allowHalfOpen: true }, (s) => {
      let n = 0;
      s.on('data', (d: Buffer) => (n += d.length));
      s.once('end', () => s.end(`got ${n}`));
    });
    const cport = await freePort();
    await new Promise<void>((r) => counter.listen(cport, '127.0.0.1', r));
    const port = await freePort();
    await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-L', `${port}:127.0.0.1:${cport}`]);
    const answer = await new Promise<string>((resolve, reject) => {
      const c = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      let out = '';
      c.on('data', (d: Buffer) => (out += d.toString()));
      c.once('end', () => resolve(out));
      c.once('error', reject);
      c.end(Buffer.alloc(100_000));
    });
    expect(answer).toBe('got 100000');
    counter.close();
  });

  it('1000 short connections through one -L leak no sockets', async () => {
    const echo = createServer((s) => s.pipe(s));
    const echoPort = await freePort();
    await new Promise<void>((r) => echo.listen(echoPort, '127.0.0.1', r));
    const port = await freePort();
    await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-L', `${port}:127.0.0.1:${echoPort}`]);
    const once = (): Promise<void> =>
      new Promise((resolve, reject) => {
        const c = connect(port, '127.0.0.1');
        c.once('error', reject);
        c.once('data', () => c.end());
        c.once('close', () => resolve());
        c.write('x');
      });
    await Promise.all(Array.from({ length: 20 }, once)); // warm: lazy allocations happen here
    const agentBefore = fdCount(agent.proc.pid!);
    const hostBefore = fdCount(host.proc.pid!);
    for (let i = 0; i < 50; i++) await Promise.all(Array.from({ length: 20 }, once));
    await new Promise((r) => setTimeout(r, 500));
    expect(fdCount(agent.proc.pid!)).toBeLessThanOrEqual(agentBefore + 2);
    expect(fdCount(host.proc.pid!)).toBeLessThanOrEqual(hostBefore + 2);
    const f = (await list(agent)).find((x) => x.forward.includes(`:${port}:`));
    expect(f).toMatchObject({ connections: 1020, active: 0 });
    echo.close();
  }, 120_000);
});

describe('forward lifetimes', () => {
  it('burrow ssh -N -L holds a forward for as long as it runs', async () => {
    const { host, agent } = await hostAndAgent();
    const web = await httpServer('session forward', await freePort());
    const webPort = (web.address() as { port: number }).port;
    const port = await freePort();
    const p = spawn(BURROW, ['ssh', host.ticket, '-N', '-L', `${port}:127.0.0.1:${webPort}`], { env: { ...process.env, ...agent.cliEnv } });
    await new Promise<void>((resolve) => createInterface({ input: p.stderr }).on('line', (l) => l.includes('forwarding') && resolve()));
    expect((await curl([`http://127.0.0.1:${port}/`])).out).toBe('session forward');
    expect((await list(agent))[0]).toMatchObject({ detached: false });
    p.kill('SIGINT');
    // Like ssh -N ended by a signal: 255, quietly.
    expect(await new Promise((r) => p.once('close', r))).toBe(255);
    await vi.waitFor(async () => expect(await list(agent)).toEqual([]), { timeout: 2500, interval: 50 });
    web.close();
  });

  it('a detached forward works again after the host restarts', async () => {
    const udp = await freePort(); // a free TCP port number is almost always free for UDP too
    const first = await hostAndAgent(['--bind', `127.0.0.1:${udp}`]);
    const { agent } = first;
    let host = first.host;
    const web = await httpServer('still here', await freePort());
    const webPort = (web.address() as { port: number }).port;
    const lport = await freePort();
    const rport = await freePort();
    await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-L', `${lport}:127.0.0.1:${webPort}`]);
    await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-R', `${rport}:127.0.0.1:${webPort}`]);
    expect((await curl([`http://127.0.0.1:${lport}/`])).out).toBe('still here');
    await host.stop('SIGTERM', { keepDir: true });
    host = await startDaemon({ args: ['--host', '--bind', `127.0.0.1:${udp}`], dir: host.dir });
    expect((await curl([`http://127.0.0.1:${lport}/`])).out).toBe('still here');
    // -R is asked for again once the connection is re-made
    await vi.waitFor(async () => expect((await curl([`http://127.0.0.1:${rport}/`])).out).toBe('still here'), { timeout: 30_000, interval: 200 });
    web.close();
  }, 60_000);

  it("the host's permit-open policy refuses with a clear error", async () => {
    const { host, agent } = await hostAndAgent(['--permit-open', '127.0.0.1:1']);
    const web = await httpServer('secret', await freePort());
    const webPort = (web.address() as { port: number }).port;
    const port = await freePort();
    await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-L', `${port}:127.0.0.1:${webPort}`]);
    const r = await curl([`http://127.0.0.1:${port}/`]);
    expect(r.out).toBe('');
    const f = (await list(agent))[0]!;
    expect(f.lastError).toMatch(/permit-open policy does not allow 127\.0\.0\.1:\d+/);
    await host.waitLog((l) => l.event === 'forward_refused');
    web.close();
  });
});
