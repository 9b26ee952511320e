// A built-in host and an agent, with an ssh config through which stock OpenSSH tools reach the host
// as box.burrow via `burrow proxy` (the config `burrow ssh-config` writes).

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { endpointKeyLine } from '../../shared/sshkey.js';
import { runCli, startDaemon, type RunningDaemon } from './daemon.js';
import { keygen } from './sshd.js';

export interface ProxySetup {
  host: RunningDaemon;
  agent: RunningDaemon;
  /** ssh -F config that reaches the host as box.burrow. */
  config: string;
  key: string;
  work: string;
}

/** A host, an agent, an OpenSSH user key the host authorizes, and `burrow ssh-config` output. */
export async function proxySetup(hostArgs: string[] = []): Promise<ProxySetup> {
  const agent = await startDaemon();
  const agentId = (await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim();
  const host = await startDaemon({ args: ['--host', ...hostArgs], endpoints: [agentId] });
  const work = join(agent.dir, 'work');
  mkdirSync(work);
  const key = join(agent.dir, 'user_key');
  const { pub } = keygen(key, 'openssh-user');
  host.authorizeKey(pub);
  host.authorizeKey(endpointKeyLine(agentId));
  expect((await runCli(agent.cliEnv, ['alias', 'add', 'box', host.ticket])).code).toBe(0);
  const cfg = await runCli(agent.cliEnv, ['ssh-config']);
  // The ProxyCommand must reach this test's agent: its socket and state go in by env.
  const config = join(agent.dir, 'ssh_config');
  writeFileSync(
    config,
    cfg.stdout.replace('ProxyCommand ', `ProxyCommand env BURROW_SOCKET=${agent.socket} BURROW_STATE=${agent.state} BURROW_NO_AUTOSTART=1 `) +
      `    IdentityFile ${key}\n    IdentitiesOnly yes\n    BatchMode yes\n    LogLevel ERROR\n`,
  );
  return { host, agent, config, key, work };
}
