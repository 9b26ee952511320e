// Pairing on a LAN with no server: the inviter answers mDNS for its nameplate and join asks.
// Multicast needs an interface that allows it; loopback here does not, so the exchange runs in a
// fresh user+network namespace whose loopback is given MULTICAST and a route for 224.0.0.0/4:
// nothing leaves the namespace. Skipped where unprivileged namespaces are not allowed.

import { spawnSync } from 'node:child_process';
import { packagePath } from '../shared/package.js';
import { describe, expect, it } from 'vitest';

const fixture = packagePath('dist/test/fixtures/pair-mdns.js');
const NETNS_SETUP = 'ip link set lo up && ip link set lo multicast on && ip route add 224.0.0.0/4 dev lo';
const canUnshare = spawnSync('unshare', ['-rn', 'sh', '-c', NETNS_SETUP], { timeout: 10_000 }).status === 0;

describe('pairing over mDNS', () => {
  it.skipIf(!canUnshare)('invite + join find each other by mDNS with the pkarr relay disabled, then exec ALIAS works', () => {
    const r = spawnSync('unshare', ['-rn', 'sh', '-c', `${NETNS_SETUP} && exec "$0" "$1"`, process.execPath, fixture], { timeout: 120_000, encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Record<string, { code: number; stdout: string; stderr: string }>;
    expect(out['invite']?.code).toBe(0);
    expect(out['join']?.stderr).toBe('');
    expect(out['join']?.stdout).toContain('found via mdns');
    expect(out['exec']).toMatchObject({ code: 0, stdout: 'over-mdns\n' });
  }, 150_000);
});
