// burrow ssh-config: a Host block so stock OpenSSH tools reach every alias as NAME.burrow, and a
// known_hosts file with each alias's host key (its endpoint id), so strict checking passes with no
// first-use prompt. `burrow alias add` keeps that file current.

import { existsSync, mkdirSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { readAliases } from '../../shared/aliases.js';
import { ensurePrivateDir, writeFileAtomic } from '../../shared/fsutil.js';
import { endpointKeyLine } from '../../shared/sshkey.js';
import { parseTarget } from '../../shared/target.js';
import { ticketEndpointId } from '../../shared/ticket.js';
import { BURROW_BIN, NATIVE_BIN, usage, type CliContext } from '../context.js';

export const SSH_KNOWN_HOSTS = 'ssh_known_hosts';

/** Rewrite STATE/ssh_known_hosts from the alias book; returns its path. */
export function writeSshKnownHosts(state: string): string {
  const lines: string[] = [];
  for (const [name, value] of Object.entries(readAliases(state))) {
    let id: string | undefined;
    try {
      const t = parseTarget(value);
      if (t.kind === 'endpoint') id = t.id;
      else if (t.kind === 'ticket') id = ticketEndpointId(t.ticket);
    } catch {
      continue;
    }
    if (id) lines.push(`${name}.burrow ${endpointKeyLine(id, '').trim()}`);
  }
  ensurePrivateDir(state);
  const path = join(state, SSH_KNOWN_HOSTS);
  writeFileAtomic(path, lines.join('\n') + (lines.length ? '\n' : ''), 0o600);
  return path;
}

const quote = (s: string): string => (/^[A-Za-z0-9_./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

export function sshConfigCommand(ctx: CliContext, args: string[]): Promise<number> {
  if (args.length > 0) usage('usage: burrow ssh-config   (append its output to ~/.ssh/config)');
  const knownHosts = writeSshKnownHosts(ctx.state);
  // ssh keeps its own files in ~/.ssh, and `>> ~/.ssh/config` needs the directory: make it as ssh would
  // (an existing one is left as it is).
  const dotSsh = join(homedir(), '.ssh');
  if (!existsSync(dotSsh)) mkdirSync(dotSsh, { mode: 0o700 });
  const env = [process.env['BURROW_SOCKET'] ? `BURROW_SOCKET=${quote(ctx.socket)}` : '', process.env['BURROW_STATE'] ? `BURROW_STATE=${quote(ctx.state)}` : ''].filter(Boolean);
  // The native client when built: every ssh, scp, rsync or git run starts one proxy, and Node's
  // start-up would be paid each time. Otherwise this Node by its full path, which works without PATH.
  const client = existsSync(NATIVE_BIN) ? [quote(NATIVE_BIN)] : [quote(process.execPath), quote(BURROW_BIN)];
  const proxy = [...(env.length ? ['env', ...env] : []), ...client, 'proxy', '%h'].join(' ');
  process.stdout.write(
    [
      '# burrow: reach every alias as NAME.burrow with ssh, scp, sftp, rsync and git',
      'Host *.burrow',
      `    ProxyCommand ${proxy}`,
      `    UserKnownHostsFile ${quote(knownHosts)}`,
      '    StrictHostKeyChecking yes',
      '',
    ].join('\n'),
  );
  return Promise.resolve(0);
}
