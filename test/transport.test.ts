import { createHash, randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../shared/errors.js';
import { fromIrohBytes, toIrohBytes, type IrohConnection, type IrohStream, type IrohTransport } from '../daemon/transport/iroh.js';
import { dialTcp } from '../daemon/transport/tcp.js';
import { bindLoopback, readAll } from './helpers/iroh.js';
import { createServer } from 'node:net';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const fixture = (name: string): string => fileURLToPath(new URL(`../dist/test/fixtures/${name}.js`, import.meta.url));

let open: IrohTransport[] = [];
afterEach(async () => {
  await Promise.all(open.map((t) => t.close()));
  open = [];
});

async function pair(authorize?: (id: string) => boolean): Promise<{ server: IrohTransport; client: IrohTransport; accepted: IrohConnection[]; dialed: IrohConnection }> {
  const server = await bindLoopback();
  const client = await bindLoopback();
  open.push(server, client);
  const accepted: IrohConnection[] = [];
  server.serve({
    authorize: (id) => Promise.resolve(authorize === undefined || authorize(id) ? { ok: true } : { ok: false, reason: 'not on the list' }),
    onConnection: (c) => accepted.push(c),
  });
  const dialed = await client.dial(server.ticket(), 10_000);
  return { server, client, accepted, dialed };
}

async function acceptedStream(accepted: IrohConnection[]): Promise<IrohStream> {
  for (let i = 0; i < 200 && accepted.length === 0; i++) await new Promise((r) => setTimeout(r, 25));
  const c = accepted[0];
  if (!c) throw new Error('no connection accepted');
  return c.acceptStream();
}

describe('iroh transport', () => {
  it('carries 8 MiB of random bytes each way intact', async () => {
    const { accepted, dialed } = await pair();
    const up = randomBytes(8 * 1024 * 1024);
    const down = randomBytes(8 * 1024 * 1024);
    const c = await dialed.openStream();
    c.end(up);
    const s = await acceptedStream(accepted);
    s.end(down);
    const [gotUp, gotDown] = await Promise.all([readAll(s), readAll(c)]);
    expect(sha(gotUp)).toBe(sha(up));
    expect(sha(gotDown)).toBe(sha(down));
    expect(c.bytesOut).toBe(up.length);
    expect(c.bytesIn).toBe(down.length);
  });

  it('half-closes each direction on its own', async () => {
    const { accepted, dialed } = await pair();
    const c = await dialed.openStream();
    c.write('ping');
    const s = await acceptedStream(accepted);
    // client finishes its side; the server sees end but can still answer
    c.end();
    expect((await readAll(s)).toString()).toBe('ping');
    expect(s.writable).toBe(true);
    s.write('pong after your eof');
    s.end();
    expect((await readAll(c)).toString()).toBe('pong after your eof');
  });

  it('refuses an endpoint that is not authorized before any stream is accepted', async () => {
    const { accepted, dialed, client } = await pair(() => false);
    // The refusal (a connection close) may already have arrived when the stream is opened, or come
    // on the first read: either way it is PeerRefused with the host's reason.
    const err = await dialed.openStream().then(
      (c) =>
        new Promise<Error & { code?: string }>((resolve) => {
          c.on('error', resolve);
          c.write('hello?');
          c.resume();
        }),
      (e: Error & { code?: string }) => e,
    );
    expect(err.code).toBe(ErrorCodes.PeerRefused);
    expect(err.message).toContain('not on the list');
    expect(accepted).toHaveLength(0);
    expect(client.endpointId).toMatch(/^[0-9a-f]{64}$/);
  });

  it('authorizes by the remote endpoint id', async () => {
    const allowed = new Set<string>();
    const server = await bindLoopback();
    const client = await bindLoopback();
    open.push(server, client);
    allowed.add(client.endpointId);
    const seen: string[] = [];
    server.serve({
      authorize: (id) => {
        seen.push(id);
        return Promise.resolve(allowed.has(id) ? { ok: true } : { ok: false, reason: 'no' });
      },
      onConnection: (c) => void c.acceptStream().then((s) => s.on('error', () => undefined).pipe(s)),
    });
    const conn = await client.dial(server.ticket(), 10_000);
    const s = await conn.openStream();
    s.end('echo me');
    expect((await readAll(s)).toString()).toBe('echo me');
    expect(seen).toEqual([client.endpointId]);
  });

  it('reports a direct path with an RTT', async () => {
    const { dialed } = await pair();
    const s = await dialed.openStream();
    s.on('error', () => undefined); // afterEach closes the endpoints under it
    s.write('x');
    const p = dialed.path();
    expect(p.kind).toBe('direct');
    expect(p.remoteAddr).toMatch(/^(127\.0\.0\.1|\[::1\]):\d+$/);
    expect(typeof p.rttMs).toBe('number');
  });

  it('times out dialing a peer that does not answer', async () => {
    const client = await bindLoopback();
    open.push(client);
    const ghost = await bindLoopback();
    const ticket = ghost.ticket();
    await ghost.close();
    const t0 = Date.now();
    await expect(client.dial(ticket, 1500)).rejects.toMatchObject({ code: expect.stringMatching(/ConnectTimeout|ConnectFailed/) });
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('rejects a malformed ticket with BadTarget', async () => {
    const client = await bindLoopback();
    open.push(client);
    await expect(client.dial('endpointnotavalidticketatallxxxxxxxxxxxxxxxxxxxx', 1000)).rejects.toMatchObject({ code: ErrorCodes.BadTarget });
    await expect(client.dial('not-a-target', 1000)).rejects.toMatchObject({ code: ErrorCodes.BadTarget });
  });

  it('converts bytes to and from the binding exactly', () => {
    const b = randomBytes(70_000);
    expect(fromIrohBytes(toIrohBytes(b)).equals(b)).toBe(true);
    expect(fromIrohBytes([]).length).toBe(0);
  });

  it('leaves no handle open after close: the process exits by itself', () => {
    const r = spawnSync(process.execPath, [fixture('transport-exit')], { timeout: 30_000, encoding: 'utf8' });
    expect(r.error).toBeUndefined();
    expect(r.stdout).toContain('transfer ok');
    expect(r.status).toBe(0);
  });

  it('survives binding, connecting and closing 20 times in a loop', () => {
    const r = spawnSync(process.execPath, [fixture('transport-loop'), '20'], { timeout: 120_000, encoding: 'utf8' });
    expect(r.error).toBeUndefined();
    expect(r.stderr).toBe('');
    expect(r.stdout.trim().split('\n')).toHaveLength(20);
    expect(r.status).toBe(0);
  });
});

describe('tcp transport', () => {
  it('gives a connected Duplex and a typed error for a closed port', async () => {
    const srv = createServer((s) => s.pipe(s));
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as { port: number }).port;
    const s = await dialTcp('127.0.0.1', port, 5000);
    s.end('hi');
    expect((await readAll(s)).toString()).toBe('hi');
    await new Promise<void>((r) => srv.close(() => r()));
    await expect(dialTcp('127.0.0.1', port, 5000)).rejects.toMatchObject({ code: ErrorCodes.ConnectFailed });
  });
});
