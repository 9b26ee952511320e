// A daemon the CLI starts by itself reads the same STATE/config.json as `burrowd` run by hand
// (issue 12, item 8): the user's relay choice holds whoever starts the daemon.

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { DaemonStatusReport } from '../shared/status.js';
import { runCli } from './helpers/daemon.js';

describe('autostart', () => {
  const dir = mkdtempSync(join(tmpdir(), 'burrow-auto-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('starts the daemon with the relay, bind and persist of config.json', async () => {
    const state = join(dir, 'state');
    mkdirSync(state, { mode: 0o700 });
    writeFileSync(join(state, 'config.json'), JSON.stringify({ relay: 'disabled', bind: '127.0.0.1:0', persist: 77 }));
    // No BURROW_RELAY or BURROW_BIND: only the file says where to bind and that there is no relay.
    const env: Record<string, string> = { BURROW_SOCKET: join(dir, 'agent.sock'), BURROW_STATE: state, BURROW_NO_AUTOSTART: '0', HOME: dir, BURROW_RELAY: '', BURROW_BIND: '' };
    const r = await runCli(env, ['status', '--json'], { timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as DaemonStatusReport;
    try {
      expect(s.daemon).toMatchObject({ relay: 'disabled', persist: 77 });
      // (IPv6 is item 7's, another change: only the IPv4 socket is checked here.)
      expect(s.daemon.sockets.filter((a) => !a.startsWith('[')).every((a) => a.startsWith('127.0.0.1:'))).toBe(true);
    } finally {
      await runCli(env, ['daemon', 'stop']);
    }
  }, 40_000);
});
