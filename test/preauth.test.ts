// The host's pre-auth limits, like sshd's (issue 12): LoginGraceTime closes connections that never
// authenticate, MaxStartups and a per-peer cap bound how many may wait, and an authorized client
// still gets in meanwhile.

import { afterAll, describe, expect, it } from 'vitest';
import { endpointKeyLine } from '../shared/sshkey.js';
import type { IrohConnection, IrohTransport } from '../daemon/transport/iroh.js';
import { bindLoopback } from './helpers/iroh.js';
import { runCli, startDaemon, stopAllDaemons, type RunningDaemon } from './helpers/daemon.js';

afterAll(stopAllDaemons);

/** `n` connections from one endpoint, each opening its SSH stream and sending only a banner. */
async function silentStreams(t: IrohTransport, ticket: string, n: number): Promise<{ held: IrohConnection[]; refused: number }> {
  const results = await Promise.all(
    Array.from({ length: n }, async () => {
      try {
        const c = await t.dial(ticket, 10_000);
        const s = await c.openStream();
        s.on('error', () => undefined);
        s.write('SSH-2.0-silent\r\n');
        s.resume();
        return c;
      } catch {
        return null; // refused before a stream opened
      }
    }),
  );
  const held = results.filter((c): c is IrohConnection => c !== null);
  return { held, refused: n - held.length };
}

async function authorizedAgent(host: RunningDaemon): Promise<RunningDaemon> {
  const agent = await startDaemon();
  host.authorizeKey(endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim()));
  return agent;
}

describe('pre-auth limits on the host', () => {
  it('50 silent SSH streams are closed after the login grace time; an authorized client connects meanwhile', async () => {
    const host = await startDaemon({ args: ['--host', '--login-grace-time', '3', '--max-startups', '100', '--per-peer-startups', '100'] });
    const agent = await authorizedAgent(host);
    const prober = await bindLoopback();
    try {
      const t0 = Date.now();
      const { held } = await silentStreams(prober, host.ticket, 50);
      expect(held.length).toBe(50);
      const closedAll = Promise.all(held.map((c) => c.closed));
      const r = await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo still-in']);
      expect(r.stdout).toBe('still-in\n');
      await Promise.race([closedAll, new Promise((_, rej) => setTimeout(() => rej(new Error('silent connections still open 10 s after the grace time')), 13_000))]);
      const ms = Date.now() - t0;
      expect(ms).toBeGreaterThanOrEqual(2900);
      await new Promise((r) => setTimeout(r, 200));
      expect(host.logs.filter((l) => l.event === 'login_grace_expired')).toHaveLength(50);
      console.log(`[preauth] 50 silent streams all closed ${ms} ms after they opened (grace 3 s)`);
      // The authorized connection was not counted against anyone: it works on.
      expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo after'])).stdout).toBe('after\n');
    } finally {
      await prober.close();
      await agent.stop();
      await host.stop();
    }
  }, 60_000);

  it('one endpoint holds at most --per-peer-startups unauthenticated connections; the rest are refused at once and logged', async () => {
    const host = await startDaemon({ args: ['--host', '--max-startups', '50'] }); // the default per-peer cap, 10
    const agent = await authorizedAgent(host);
    const prober = await bindLoopback();
    try {
      const { held } = await silentStreams(prober, host.ticket, 20);
      await new Promise((r) => setTimeout(r, 500));
      const open = held.filter((c) => !c.isClosed);
      expect(open.length).toBe(10);
      const refusals = host.logs.filter((l) => l.event === 'connection_refused' && /from this endpoint/.test(String(l['reason'])));
      expect(refusals).toHaveLength(10);
      expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'echo other-peer-ok'])).stdout).toBe('other-peer-ok\n');
      for (const c of held) c.close('test done');
    } finally {
      await prober.close();
      await agent.stop();
      await host.stop();
    }
  }, 60_000);
});
