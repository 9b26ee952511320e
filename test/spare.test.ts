// The built-in host starts commands through a warm spare sh when it has one (daemon/host/spare.ts):
// what a command sees must not depend on which way it was started, and spares end with their host.

import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { MAX_SCRIPT } from '../daemon/host/spare.js';
import { hostAndAgent, runCli, stopAllDaemons } from './helpers/daemon.js';

afterAll(stopAllDaemons);

// Environment, open descriptors, signal mask and ignored signals, umask, process group and
// session leadership, and directory.
const PROBE = [
  'env | sort',
  'ls /proc/$$/fd',
  'grep -E "^Sig(Blk|Ign)" /proc/$$/status',
  'umask',
  'read -r _ _ _ _ pgrp sid _ < /proc/$$/stat; [ "$pgrp" = $$ ] && [ "$sid" = $$ ] && echo leader',
  'pwd',
].join('; ');
// Too long for a spare's script: this one is always spawned by Node directly.
const SPAWNED = `${PROBE} # ${'x'.repeat(MAX_SCRIPT)}`;

/** Processes other than `except` whose environment names `home` as HOME. */
function processesWithHome(home: string, except: number | undefined): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== except)) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(`HOME=${home}`)) found.push(Number(pid));
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

describe('commands started by a spare', () => {
  it('see the same environment, descriptors, signals, umask, process group and directory as spawned ones', async () => {
    const { host, agent } = await hostAndAgent();
    const run = async (cmd: string): Promise<string> => {
      const r = await runCli(agent.cliEnv, ['exec', host.ticket, '--', cmd]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };
    const first = await run(PROBE); // no spare yet: spawned, and a spare is made ready after it
    const fromSpare = await run(PROBE);
    const spawned = await run(SPAWNED);
    expect(first).toContain('leader');
    expect(first).toContain(`HOME=${host.home}`);
    expect(fromSpare).toBe(first);
    expect(spawned).toBe(first);
  });

  it('end with their host', async () => {
    const { host, agent } = await hostAndAgent();
    await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'true']);
    const deadline = Date.now() + 5000;
    while (processesWithHome(host.home, host.proc.pid).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(processesWithHome(host.home, host.proc.pid).length).toBe(1); // the spare, ready for the next command
    await host.stop();
    const gone = Date.now() + 5000;
    while (processesWithHome(host.home, host.proc.pid).length > 0 && Date.now() < gone) await new Promise((r) => setTimeout(r, 50));
    expect(processesWithHome(host.home, host.proc.pid)).toEqual([]);
  });
});
