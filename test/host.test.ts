import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client as SshClient, ClientChannel, ExecOptions } from 'ssh2';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ErrorCodes } from '../shared/errors.js';
import { identityFromSeed, type Identity } from '../daemon/identity.js';
import { HostAuth } from '../daemon/host/auth.js';
import { Host } from '../daemon/host/server.js';
import { connectSsh, execCollect, type HostKeyPolicy } from '../daemon/ssh/client.js';
import type { IrohConnection, IrohTransport } from '../daemon/transport/iroh.js';
import { startDaemon, stopAllDaemons, type RunningDaemon } from './helpers/daemon.js';
import { bindLoopback, quietLog } from './helpers/iroh.js';
import { startSshd, type RunningSshd } from './helpers/sshd.js';

/** A client: its own iroh endpoint and identity (the same key is its SSH user key). */
interface TestClient {
  id: Identity;
  transport: IrohTransport;
}

const clients: TestClient[] = [];
async function newClient(): Promise<TestClient> {
  const seed = randomBytes(32);
  const c = { id: identityFromSeed(seed, 'test-client'), transport: await bindLoopback(seed) };
  clients.push(c);
  return c;
}

async function ssh(c: TestClient, ticket: string, opts: { hostKey?: HostKeyPolicy; key?: string; username?: string } = {}): Promise<{ client: SshClient; conn: IrohConnection }> {
  const conn = await c.transport.dial(ticket, 10_000);
  const stream = await conn.openStream();
  const client = await connectSsh({
    stream,
    username: opts.username ?? 'me',
    auth: [{ kind: 'key', privateKey: opts.key ?? c.id.privateKeyOpenSSH, label: 'endpoint key' }],
    hostKey: opts.hostKey ?? { kind: 'endpoint', endpointId: conn.remoteId },
  });
  return { client, conn };
}

function sh(client: SshClient, cmd: string, stdin?: Buffer | string): ReturnType<typeof execCollect> {
  return execCollect(client, cmd, stdin);
}

function channel(client: SshClient, cmd: string, opts: ExecOptions = {}): Promise<ClientChannel> {
  return new Promise((resolve, reject) => client.exec(cmd, opts, (err, ch) => (err ? reject(err) : resolve(ch))));
}

/** Read a channel until `pattern` shows up in its output. */
function waitFor(ch: ClientChannel, pattern: RegExp, ms = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`no ${pattern} in ${JSON.stringify(text)}`)), ms);
    const onData = (d: Buffer): void => {
      text += d.toString();
      if (pattern.test(text)) {
        clearTimeout(timer);
        ch.off('data', onData);
        resolve(text);
      }
    };
    ch.on('data', onData);
  });
}

const exitOf = (ch: ClientChannel): Promise<{ code: number | null; signal: string | null }> =>
  new Promise((resolve) => ch.once('exit', (code: number | null, signal?: string) => resolve({ code: signal ? null : code, signal: signal ?? null })));

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.transport.close()));
});
afterAll(stopAllDaemons);

describe('built-in host', () => {
  let host: RunningDaemon;
  let me: TestClient;
  let session: { client: SshClient; conn: IrohConnection };

  beforeAll(async () => {
    host = await startDaemon({ args: ['--host', '--max-sessions', '60', '--accept-env', 'BURROW_TEST_OK'] });
  });

  async function login(): Promise<SshClient> {
    me = await newClient();
    host.authorizeKey(me.id.publicKeyLine);
    session = await ssh(me, host.ticket);
    return session.client;
  }

  it('prints an endpoint id and a ticket that name the same key', () => {
    expect(host.endpointId).toMatch(/^[0-9a-f]{64}$/);
    expect(host.ticket).toMatch(/^endpoint[a-z0-9]+$/);
  });

  it('exec returns stdout and stderr separately, and exit codes 0, 1, 42', async () => {
    const client = await login();
    const r0 = await sh(client, 'echo out; echo err >&2');
    expect(r0).toMatchObject({ code: 0, signal: null });
    expect(r0.stdout.toString()).toBe('out\n');
    expect(r0.stderr.toString()).toBe('err\n');
    expect((await sh(client, 'false')).code).toBe(1);
    expect((await sh(client, 'exit 42')).code).toBe(42);
    // late stderr after stdout closed is not lost
    const late = await sh(client, 'exec 1>&-; sleep 0.2; echo late >&2; exit 3');
    expect(late.stderr.toString()).toBe('late\n');
    expect(late.code).toBe(3);
  });

  it('runs commands in $HOME with the user environment', async () => {
    const client = await login();
    const r = await sh(client, 'pwd; echo $HOME; echo $BURROW_REMOTE');
    expect(r.stdout.toString().split('\n')).toEqual([host.home, host.home, me.id.endpointId, '']);
  });

  it('kill -TERM $$ gives exit-signal TERM', async () => {
    const client = await login();
    const r = await sh(client, 'kill -TERM $$');
    expect(r.code).toBeNull();
    expect(r.signal).toMatch(/^(SIG)?TERM$/);
  });

  it('streams 10 MiB of stdin to sha256sum and gets the right digest', async () => {
    const client = await login();
    const data = randomBytes(10 * 1024 * 1024);
    const r = await sh(client, 'sha256sum', data);
    expect(r.stdout.toString().split(' ')[0]).toBe(createHash('sha256').update(data).digest('hex'));
    expect(r.code).toBe(0);
  });

  it('delivers a signal request to the process group', async () => {
    const client = await login();
    const ch = await channel(client, 'sleep 30');
    const exit = exitOf(ch);
    await new Promise((r) => setTimeout(r, 300));
    ch.signal('INT');
    expect((await exit).signal).toMatch(/^(SIG)?INT$/);
  });

  it('accepts LANG and allowlisted env, ignores the rest', async () => {
    const client = await login();
    const ch = await channel(client, 'echo "$LANG|$LC_ALL|$BURROW_TEST_OK|$EVIL"', { env: { LANG: 'C.UTF-8', LC_ALL: 'C', BURROW_TEST_OK: 'yes', EVIL: 'x' } });
    const out = waitFor(ch, /\n/);
    expect((await out).trim()).toBe('C.UTF-8|C|yes|');
  });

  it('gives a PTY: tty prints a /dev/pts path and TERM is set', async () => {
    const client = await login();
    const ch = await channel(client, 'tty; echo $TERM', { pty: { term: 'xterm-256color', rows: 30, cols: 100 } });
    const exit = exitOf(ch);
    const text = await waitFor(ch, /xterm-256color/);
    expect(text).toMatch(/\/dev\/pts\/\d+/);
    expect((await exit).code).toBe(0);
  });

  it('shell with a PTY follows window-change (stty size)', async () => {
    const client = await login();
    const ch = await new Promise<ClientChannel>((resolve, reject) =>
      client.shell({ term: 'xterm', rows: 24, cols: 80 }, (err, c) => (err ? reject(err) : resolve(c))),
    );
    const exit = exitOf(ch);
    ch.write('stty size\n');
    await waitFor(ch, /24 80/);
    ch.setWindow(40, 120, 0, 0);
    await new Promise((r) => setTimeout(r, 200));
    ch.write('stty size\n');
    await waitFor(ch, /40 120/);
    ch.write('exit 7\n');
    expect((await exit).code).toBe(7);
  });

  it('runs 50 concurrent exec channels on one connection', async () => {
    const client = await login();
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => sh(client, `sleep 0.$((RANDOM % 5)); echo run-${i}; exit $((${i} % 7))`)));
    results.forEach((r, i) => {
      expect(r.stdout.toString()).toBe(`run-${i}\n`);
      expect(r.code).toBe(i % 7);
    });
  });

  it('hangs up the processes of a dropped connection', async () => {
    const client = await login();
    const pidFile = join(host.home, `pid-${Date.now()}`);
    const ch = await channel(client, `echo $$ > ${pidFile}; exec sleep 60`);
    ch.on('data', () => undefined);
    await vi.waitFor(() => expect(existsSync(pidFile)).toBe(true), { timeout: 5000, interval: 50 });
    const pid = Number(readFileSync(pidFile, 'utf8'));
    expect(pid).toBeGreaterThan(1);
    session.conn.close('test drops the connection');
    const alive = (): boolean => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    await vi.waitFor(() => expect(alive()).toBe(false), { timeout: 10_000, interval: 100 });
  });

  it('refuses a key that is not authorized, and the log says why', async () => {
    const stranger = await newClient(); // endpoint allowed (no list), key not authorized
    await expect(ssh(stranger, host.ticket)).rejects.toMatchObject({ code: ErrorCodes.AuthRejected });
    const line = await host.waitLog((l) => l.event === 'auth_refused' && l['remote'] === stranger.id.endpointId);
    expect(line['reason']).toBe('key not authorized');
    expect(line['key']).toMatch(/^SHA256:/);
  });

  it('refuses a second stream on the same connection', async () => {
    await login();
    const extra = await session.conn.openStream();
    extra.on('error', () => undefined); // the host resets it: that is the point
    extra.write('SSH-2.0-sneaky\r\n');
    await host.waitLog((l) => l.event === 'stream_refused' && l['remote'] === me.id.endpointId);
    // the first stream still works
    expect((await sh(session.client, 'echo still here')).stdout.toString()).toBe('still here\n');
  });

  it('refuses sessions over the channel limit with a clear reason', async () => {
    const limited = await startDaemon({ args: ['--host', '--max-sessions', '2'] });
    const c = await newClient();
    limited.authorizeKey(c.id.publicKeyLine);
    const { client } = await ssh(c, limited.ticket);
    const a = await channel(client, 'sleep 2');
    const b = await channel(client, 'sleep 2');
    await expect(channel(client, 'true')).rejects.toThrow(/channel limit of 2 reached/);
    a.on('data', () => undefined);
    b.on('data', () => undefined);
    await Promise.all([exitOf(a), exitOf(b)]);
    // a freed slot is usable again
    expect((await sh(client, 'echo again')).stdout.toString()).toBe('again\n');
    await limited.stop();
  });
});

describe('host authorization by endpoint id', () => {
  it('refuses an endpoint id not on a non-empty list before any stream, and logs why', async () => {
    const friend = await newClient();
    const stranger = await newClient();
    const host = await startDaemon({ args: ['--host'], endpoints: [`${friend.id.endpointId} friend`], keys: [friend.id.publicKeyLine, stranger.id.publicKeyLine] });
    await expect(ssh(stranger, host.ticket)).rejects.toMatchObject({ code: ErrorCodes.PeerRefused });
    const line = await host.waitLog((l) => l.event === 'connection_refused' && l['remote'] === stranger.id.endpointId);
    expect(line['reason']).toBe('endpoint not authorized');
    const { client } = await ssh(friend, host.ticket);
    expect((await sh(client, 'echo hi')).stdout.toString()).toBe('hi\n');
    // edits apply to the next connection without a restart
    host.authorizeEndpoint(stranger.id.endpointId);
    const again = await ssh(stranger, host.ticket);
    expect((await sh(again.client, 'echo now')).stdout.toString()).toBe('now\n');
    await host.stop();
  });
});

describe('host key check on the client', () => {
  it('refuses a host key that is not the dialed endpoint id', async () => {
    // A host whose SSH host key is not its endpoint key: the client must refuse it.
    const seed = randomBytes(32);
    const transport = await bindLoopback(seed);
    const impostorKey = identityFromSeed(randomBytes(32));
    const host = new Host({ identity: impostorKey, backend: { kind: 'builtin', maxSessions: 4, acceptEnv: [], forwarding: { permitOpen: null, gatewayPorts: false } }, auth: new HostAuth('/nonexistent', '/nonexistent', quietLog), log: quietLog });
    transport.serve({ authorize: host.authorize, onConnection: (c) => host.handle(c) });
    const c = await newClient();
    await expect(ssh(c, transport.ticket())).rejects.toMatchObject({ code: ErrorCodes.HostKeyMismatch });
    host.close();
    await transport.close();
  });
});

describe('sshd backend', () => {
  let sshd: RunningSshd;
  beforeAll(async () => {
    sshd = await startSshd();
  });
  afterAll(async () => {
    await sshd?.stop();
  });

  const sshdKey = (sshdHostPub: string): HostKeyPolicy => ({
    kind: 'check',
    verify: (key) => (key.toString('base64') === sshdHostPub.split(' ')[1] ? { ok: true } : { ok: false, message: 'not the sshd host key' }),
  });

  it('refuses to start without authorized endpoints unless --open', async () => {
    await expect(startDaemon({ args: ['--host', '--host-backend', 'sshd', '--sshd-address', `127.0.0.1:${sshd.port}`] })).rejects.toThrow(/authorized_endpoints/);
  });

  it('pipes an authorized endpoint to the real sshd, and refuses others', async () => {
    const friend = await newClient();
    const stranger = await newClient();
    const host = await startDaemon({ args: ['--host', '--host-backend', 'sshd', '--sshd-address', `127.0.0.1:${sshd.port}`], endpoints: [friend.id.endpointId] });
    const { client } = await ssh(friend, host.ticket, { key: sshd.clientKey, username: sshd.user, hostKey: sshdKey(sshd.hostKeyPub) });
    const r = await sh(client, 'echo via-sshd; echo e >&2; exit 5');
    expect(r.stdout.toString()).toBe('via-sshd\n');
    expect(r.stderr.toString()).toBe('e\n');
    expect(r.code).toBe(5);
    const data = randomBytes(2 * 1024 * 1024);
    const d = await sh(client, 'sha256sum', data);
    expect(d.stdout.toString().split(' ')[0]).toBe(createHash('sha256').update(data).digest('hex'));
    client.end();
    await expect(ssh(stranger, host.ticket, { key: sshd.clientKey, username: sshd.user, hostKey: sshdKey(sshd.hostKeyPub) })).rejects.toMatchObject({
      code: ErrorCodes.PeerRefused,
    });
    await host.stop();
  });
});
