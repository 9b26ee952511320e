// The keys the agent offers, in order: the daemon's endpoint key, then ssh-agent, then the
// user's unencrypted ~/.ssh/id_ed25519, id_ecdsa, id_rsa. Encrypted keys are skipped: a daemon
// cannot prompt for a passphrase (load them into ssh-agent instead).

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import type { Identity } from '../identity.js';
import type { AuthMethod } from '../ssh/client.js';

export async function clientAuthMethods(identity: Identity, home: string, env: NodeJS.ProcessEnv = process.env): Promise<AuthMethod[]> {
  const methods: AuthMethod[] = [{ kind: 'key', privateKey: identity.privateKeyOpenSSH, label: 'burrow endpoint key' }];
  const agent = env['SSH_AUTH_SOCK'];
  if (agent) methods.push({ kind: 'agent', socket: agent });
  for (const name of ['id_ed25519', 'id_ecdsa', 'id_rsa']) {
    const path = join(home, '.ssh', name);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch {
      continue;
    }
    const parsed = ssh2.utils.parseKey(text);
    if (parsed instanceof Error) continue; // encrypted or unreadable
    methods.push({ kind: 'key', privateKey: text, label: path });
  }
  return methods;
}
