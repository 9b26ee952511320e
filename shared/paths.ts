// Where burrow keeps things: state (keys, lists, aliases) and the IPC socket.
// BURROW_STATE and BURROW_SOCKET override both, so tests can run several daemons side by side.

import { homedir } from 'node:os';
import { join } from 'node:path';

type Env = Readonly<Record<string, string | undefined>>;

function uid(): number {
  return typeof process.getuid === 'function' ? process.getuid() : 0;
}

/** State directory: $BURROW_STATE, else $XDG_STATE_HOME/burrow, else ~/.local/state/burrow. */
export function stateDir(env: Env = process.env): string {
  if (env['BURROW_STATE']) return env['BURROW_STATE'];
  const xdg = env['XDG_STATE_HOME'];
  return join(xdg ? xdg : join(homedir(), '.local', 'state'), 'burrow');
}

/** IPC socket: $BURROW_SOCKET, else $XDG_RUNTIME_DIR/burrow/agent.sock, else /tmp/burrow-$UID/agent.sock. */
export function socketPath(env: Env = process.env): string {
  if (env['BURROW_SOCKET']) return env['BURROW_SOCKET'];
  const runtime = env['XDG_RUNTIME_DIR'];
  return runtime ? join(runtime, 'burrow', 'agent.sock') : join('/tmp', `burrow-${uid()}`, 'agent.sock');
}

/** Files inside the state directory. */
export const StateFiles = {
  /** The daemon's ed25519 key (OpenSSH format): iroh endpoint key, SSH host key and user key. */
  key: 'endpoint.key',
  /** Endpoint ids allowed to connect (one per line, optional comment); empty = anyone with a key. */
  authorizedEndpoints: 'authorized_endpoints',
  /** SSH public keys allowed to log in, in addition to ~/.ssh/authorized_keys. */
  authorizedKeys: 'authorized_keys',
  /** Host keys of plain SSH targets that burrow accepted. */
  knownHosts: 'known_hosts',
  /** Names for tickets and endpoint ids. */
  aliases: 'aliases.json',
  /** Named lists of targets (`@NAME`), beside the aliases. */
  groups: 'groups.json',
} as const;
