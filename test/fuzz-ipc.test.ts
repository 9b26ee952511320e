// Fuzzing the agent's IPC socket (issue 12): random frames from the frame table, mutated frame
// streams and raw garbage, each on its own connection to a live agent, while a real exec keeps
// working. Asserts no crash, no undecodable reply, and bounded memory. 5,000 connections by
// default (CI); BURROW_FUZZ_RUNS=N for more.
//
// Requests are drawn so that fuzzing cannot harm the machine or itself: commands come from a
// fixed harmless list, copies name two local paths (always refused), forward specs never parse,
// `stop` is never sent and `disconnect` never names the live host.

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ErrorCodes } from '../shared/errors.js';
import { parseForward } from '../shared/forward.js';
import { encodeFrame } from '../shared/ipc/codec.js';
import { MAX_FRAME, PROTOCOL_VERSION, type Frame } from '../shared/ipc/frames.js';
import { spawn } from '../shared/lib.js';
import { runCli, stopAllDaemons, type RunningDaemon, hostAndAgent } from './helpers/daemon.js';
import { RawIpc, alive, rssMiB } from './helpers/raw-ipc.js';

const RUNS = Number(process.env['BURROW_FUZZ_RUNS'] ?? 5000);
/** Connections in flight at once (each fast-check case is one batch). */
const BATCH = 4;

afterAll(stopAllDaemons);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Build frames that may be invalid on purpose: the codec encodes any map. */
const enc = (f: Record<string, unknown>): Buffer => encodeFrame(f as Frame);
const hello = enc({ t: 'hello', v: PROTOCOL_VERSION });

function arbitraries(ticket: string) {
  const garbageTarget = fc.oneof(
    fc.string({ maxLength: 40 }).map((s) => `-${s}`),
    fc.string({ maxLength: 40 }).map((s) => `${s} x`),
    fc.constant(''),
    fc.constant('no-such-alias.burrow'),
    fc.string({ minLength: 300, maxLength: 2000 }).map((s) => `${s}!`),
  );
  const anyTarget = fc.oneof(garbageTarget, fc.constant(ticket));
  const command = fc.constantFrom('true', 'cat', 'echo fuzz', 'sleep 0.2', 'exit 3', 'kill -TERM $$', 'head -c 100000 /dev/zero');
  const bigUint = fc.oneof(fc.nat(500), fc.constantFrom(0, 2 ** 16, 2 ** 32, 2 ** 40, Number.MAX_SAFE_INTEGER));
  const env = fc.dictionary(fc.string({ maxLength: 12 }), fc.string({ maxLength: 20 }), { maxKeys: 4 });
  const badSpec = fc
    .tuple(fc.constantFrom('local', 'remote', 'dynamic', 'sideways', ''), fc.string({ maxLength: 60 }))
    .filter(([type, spec]) => {
      if (type !== 'local' && type !== 'remote' && type !== 'dynamic') return true;
      try {
        parseForward(type, spec);
        return false;
      } catch {
        return true;
      }
    });
  const request: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
    fc.record({ t: fc.constant('exec'), target: anyTarget, command, pty: fc.option(fc.boolean(), { nil: undefined }), term: fc.option(fc.string({ maxLength: 30 }), { nil: undefined }), cols: fc.option(bigUint, { nil: undefined }), rows: fc.option(bigUint, { nil: undefined }), env: fc.option(env, { nil: undefined }) }, { requiredKeys: ['t', 'target', 'command'] }),
    fc.record({ t: fc.constant('shell'), target: garbageTarget }),
    fc.record({ t: fc.constant('proxy'), target: anyTarget }),
    fc.record({ t: fc.constant('cp'), src: fc.string({ maxLength: 30 }).map((s) => `/${s}`), dst: fc.string({ maxLength: 30 }).map((s) => `/${s}`), recursive: fc.boolean() }),
    badSpec.chain(([type, spec]) => fc.record({ t: fc.constant('forward'), target: anyTarget, type: fc.constant(type), spec: fc.constant(spec), detach: fc.boolean() })),
    fc.constant({ t: 'forwards' }),
    fc.record({ t: fc.constant('forward_cancel'), which: fc.string({ maxLength: 20 }) }),
    fc.record({ t: fc.constant('info'), target: anyTarget }),
    fc.constant({ t: 'status' }),
    fc.record({ t: fc.constant('check'), target: anyTarget }),
    fc.record({ t: fc.constant('disconnect'), target: garbageTarget }),
  );
  const stream: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
    fc.record({ t: fc.constant('stdin'), data: fc.uint8Array({ maxLength: 2048 }).map((a) => Buffer.from(a)) }),
    fc.constant({ t: 'eof' }),
    fc.record({ t: fc.constant('resize'), cols: bigUint, rows: bigUint }),
    fc.record({ t: fc.constant('signal'), name: fc.oneof(fc.constantFrom('INT', 'TERM', 'KILL', 'SIGUSR1', 'STOP', 'TSTP', 'WINCH', 'sigint'), fc.string({ maxLength: 20 })) }),
    // frames that only the daemon sends, or that come at the wrong time
    fc.constantFrom({ t: 'hello', v: PROTOCOL_VERSION }, { t: 'exit', code: 0 }, { t: 'result', value: {} }, { t: 'error', code: 'X', message: 'y' }, { t: 'status' }),
    // right type, wrong shape
    fc.record({ t: fc.constantFrom('stdin', 'resize', 'signal', 'exec', 'hello'), x: fc.anything({ maxDepth: 2 }) }),
  );
  const session = fc
    .tuple(fc.boolean(), fc.oneof({ weight: 5, arbitrary: request }, { weight: 1, arbitrary: stream }), fc.array(stream, { maxLength: 6 }))
    .map(([withHello, req, rest]) => ({ frames: 1 + rest.length + (withHello ? 1 : 0), bytes: Buffer.concat([...(withHello ? [hello] : []), enc(req), ...rest.map(enc)]) }));
  const mutation = fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
    fc.record({ kind: fc.constant('length' as const), at: fc.nat(), value: fc.oneof(fc.nat(64), fc.constant(MAX_FRAME), fc.constant(MAX_FRAME + 1), fc.constant(0xffffffff)) }),
  );
  const mutated = fc.tuple(session, fc.array(mutation, { minLength: 1, maxLength: 3 })).map(([s, ms]) => {
    let b = Buffer.from(s.bytes);
    for (const m of ms) {
      const at = b.length === 0 ? 0 : m.at % b.length;
      if (m.kind === 'flip' && b.length > 0) b[at] = m.value;
      else if (m.kind === 'cut') b = b.subarray(0, at);
      else if (m.kind === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from(m.bytes), b.subarray(at)]);
      else if (m.kind === 'length' && b.length >= 4) b.writeUInt32BE(m.value >>> 0, Math.min(at, b.length - 4));
    }
    return { frames: s.frames, bytes: b };
  });
  const garbage = fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 512 })).map(([withHello, a]) => ({ frames: withHello ? 2 : 1, bytes: Buffer.concat([...(withHello ? [hello] : []), Buffer.from(a)]) }));
  return fc.oneof({ weight: 4, arbitrary: session }, { weight: 4, arbitrary: mutated }, { weight: 2, arbitrary: garbage });
}

describe('IPC fuzz', () => {
  let host: RunningDaemon;
  let agent: RunningDaemon;
  beforeAll(async () => {
    ({ host, agent } = await hostAndAgent());
  }, 60_000);

  /** One connection: write the bytes, give the daemon a moment to answer or close, then hang up. */
  async function oneCase(bytes: Buffer): Promise<RawIpc> {
    const c = await RawIpc.open(agent.socket);
    c.write(bytes);
    await c.closedWithin(60);
    c.destroy();
    await c.done;
    return c;
  }

  it(`survives ${RUNS} connections of random, mutated and garbage frames while an exec keeps working`, async () => {
    const pid = agent.proc.pid!;
    const p = await spawn(host.ticket, 'cat', { socket: agent.socket });
    let echoed = '';
    p.stdout.on('data', (b: Buffer) => (echoed += b.toString()));
    const ping = async (word: string): Promise<void> => {
      p.stdin.write(`${word}\n`);
      await vi.waitFor(() => expect(echoed).toContain(`${word}\n`), { timeout: 10_000, interval: 10 });
    };
    await ping('warm');

    // The two frames that crashed the agent before, by name.
    const check = await RawIpc.hello(agent.socket);
    check.send({ t: 'check', target: `${'u'.repeat(MAX_FRAME - 64)}@h` });
    expect(await check.next()).toMatchObject({ t: 'error', code: ErrorCodes.BadTarget });
    check.destroy();
    const sig = await RawIpc.hello(agent.socket);
    sig.send({ t: 'exec', target: host.ticket, command: 'sleep 5' });
    sig.send({ t: 'signal', name: 'STOP' });
    expect(await sig.next()).toMatchObject({ t: 'error', code: ErrorCodes.BadArgument });
    sig.destroy();
    await ping('after-named');

    const rssBefore = rssMiB(pid);
    let connections = 0;
    let frames = 0;
    let bytes = 0;
    let badReplies = 0;
    const rssAt: number[] = [];
    const t0 = Date.now();
    await fc.assert(
      fc.asyncProperty(fc.array(arbitraries(host.ticket), { minLength: BATCH, maxLength: BATCH }), async (batch) => {
        const done = await Promise.all(batch.map((c) => oneCase(c.bytes)));
        connections += batch.length;
        frames += batch.reduce((n, c) => n + c.frames, 0);
        bytes += batch.reduce((n, c) => n + c.bytes.length, 0);
        badReplies += done.filter((c) => c.badReply !== undefined).length;
        expect(alive(pid)).toBe(true);
        if (connections % 500 < BATCH) await ping(`at-${connections}`);
        if (connections % 1000 < BATCH) rssAt.push(Math.round(rssMiB(pid)));
      }),
      { numRuns: Math.ceil(RUNS / BATCH), endOnFailure: true },
    );
    await sleep(1000);
    const rssAfter = rssMiB(pid);
    await ping('end');
    p.stdin.end();
    const code = await new Promise<number | null>((r) => p.once('exit', (c: number | null) => r(c)));
    const s = JSON.parse((await runCli(agent.cliEnv, ['status', '--json'])).stdout) as { daemon: { ipcSessions: number; ipcBufferedBytes: number } };
    // eslint-disable-next-line no-console
    console.log(
      `fuzz: ${connections} connections, ${frames} frames, ${(bytes / 1048576).toFixed(1)} MiB in ${((Date.now() - t0) / 1000).toFixed(0)} s; ` +
        `crashes 0; undecodable replies ${badReplies}; agent RSS ${rssBefore.toFixed(1)} -> ${rssAfter.toFixed(1)} MiB (every 1000: ${rssAt.join(', ')}); ` +
        `left open ${s.daemon.ipcSessions - 1} sessions, ${s.daemon.ipcBufferedBytes} buffered bytes`,
    );
    expect(code).toBe(0);
    expect(badReplies).toBe(0);
    expect(alive(pid)).toBe(true);
    // Bounded, not flat: the allocator keeps what sessions used (native threads' arenas, V8's heap
    // sizing), about +80 MiB after 2,000 connections here, then level however long it runs.
    expect(rssAfter - rssBefore).toBeLessThan(128);
    if (rssAt.length >= 4) expect(rssAfter - (rssAt[Math.floor(rssAt.length / 2)] ?? 0)).toBeLessThan(32);
    expect(s.daemon.ipcBufferedBytes).toBe(0);
  }, 900_000);
});
