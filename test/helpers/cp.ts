// The setup the cp tests share: an agent, and a host that authorizes it from its first start,
// reachable from the agent as the alias `box`.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { endpointKeyLine } from '../../shared/sshkey.js';
import { runCli, startDaemon, type RunningDaemon } from './daemon.js';

/** The two daemons, and `work`: an empty directory on the agent's side. */
export async function cpPair(agentArgs: string[] = []): Promise<{ host: RunningDaemon; agent: RunningDaemon; work: string }> {
  const agent = await startDaemon({ args: agentArgs });
  const agentId = (await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim();
  const host = await startDaemon({ args: ['--host'], endpoints: [agentId], keys: [endpointKeyLine(agentId)] });
  expect((await runCli(agent.cliEnv, ['alias', 'add', 'box', host.ticket])).code).toBe(0);
  const work = join(agent.dir, 'work');
  mkdirSync(work);
  return { host, agent, work };
}
