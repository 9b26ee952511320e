// Interactive traffic is not stuck behind bulk traffic to the same host: copies and forwards ride a
// connection of their own, so a stalled bulk channel cannot delay a keystroke (no timing asserted
// beyond a generous bound; latency figures are in bench/interactive).

import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn as burrowSpawn, type BurrowProcess } from '../shared/lib.js';
import type { ConnectionStatus } from '../shared/status.js';
import { runCli, stopAllDaemons, type RunningDaemon, hostAndAgent } from './helpers/daemon.js';
import { freePort } from './helpers/sshd.js';

afterAll(stopAllDaemons);

function echo(p: BurrowProcess, byte: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no echo of ${byte} within ${ms} ms`)), ms);
    const onData = (d: Buffer): void => {
      if (!d.toString().includes(byte)) return;
      clearTimeout(timer);
      p.stdout.off('data', onData);
      resolve();
    };
    p.stdout.on('data', onData);
    p.stdin.write(byte);
  });
}

describe('interactive channels beside bulk ones', () => {
  let host: RunningDaemon;
  let agent: RunningDaemon;
  let stall: Server;
  const stalled: Socket[] = [];
  beforeAll(async () => {
    ({ host, agent } = await hostAndAgent());
    await runCli(agent.cliEnv, ['alias', 'add', 'box', host.ticket]);
    // The far end of the forward accepts and then never reads.
    stall = createServer((s) => {
      s.pause();
      stalled.push(s);
    });
    await new Promise<void>((r) => stall.listen(0, '127.0.0.1', r));
  });
  afterAll(() => {
    for (const s of stalled) s.destroy();
    stall?.close();
  });

  it('a keystroke is echoed while a forward to the same host is stalled with its windows full', async () => {
    const cat = await burrowSpawn('box', 'cat', { socket: agent.socket });
    await echo(cat, 'a', 10_000);
    const port = await freePort();
    const stallPort = (stall.address() as { port: number }).port;
    expect((await runCli(agent.cliEnv, ['forward', 'add', 'box', '-L', `${port}:127.0.0.1:${stallPort}`])).code).toBe(0);
    // Push into the forward until nothing more is taken for a while (bounded: 64 MiB, 20 s).
    const sock = connect(port, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const chunk = Buffer.alloc(64 * 1024, 0x62);
    let pushed = 0;
    const deadline = Date.now() + 20_000;
    while (pushed < 64 * 1024 * 1024 && Date.now() < deadline) {
      if (sock.write(chunk)) {
        pushed += chunk.length;
        continue;
      }
      pushed += chunk.length;
      const drained = await Promise.race([new Promise<boolean>((r) => sock.once('drain', () => r(true))), new Promise<boolean>((r) => setTimeout(() => r(false), 1500))]);
      if (!drained) break; // the bulk path is full end to end
    }
    expect(pushed).toBeGreaterThan(2 * 1024 * 1024); // more than one SSH window is queued or held
    // The interactive channel still answers at once, many times over.
    for (const b of 'bcdefghij') await echo(cat, b, 3000);
    const st = JSON.parse((await runCli(agent.cliEnv, ['status', '--json'])).stdout) as { connections: ConnectionStatus[] };
    const lanes = st.connections.filter((c) => c.target === 'box').map((c) => c.lane ?? 'interactive').sort();
    expect(lanes).toEqual(['bulk', 'interactive']);
    sock.destroy();
    cat.stdin.end();
    await new Promise((r) => cat.once('exit', r));
    // disconnect closes both lanes
    expect((await runCli(agent.cliEnv, ['disconnect', 'box'])).code).toBe(0);
    const after = JSON.parse((await runCli(agent.cliEnv, ['status', '--json'])).stdout) as { connections: ConnectionStatus[] };
    expect(after.connections.filter((c) => c.target === 'box' && !c.lane)).toEqual([]);
  });
});
