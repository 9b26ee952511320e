// Where burrow keeps things: state (keys, lists, aliases) and the IPC socket.
// BURROW_STATE and BURROW_SOCKET override both, so tests can run several daemons side by side.

import { chmodSync, lstatSync, mkdirSync, statSync, type Stats } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { BurrowError, ErrorCodes } from './errors.js';

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

/**
 * Where the socket is looked for, in order; the native client (cli/native/build.ts generates its
 * header from these) follows the same rules.
 */
export const SocketRules = {
  /** An explicit socket path. */
  env: 'BURROW_SOCKET',
  /** Else the socket goes in $XDG_RUNTIME_DIR/<dir>/<name>. */
  runtimeEnv: 'XDG_RUNTIME_DIR',
  dir: 'burrow',
  name: 'agent.sock',
  /** Else in <tmpPrefix>$UID/<name>. */
  tmpPrefix: '/tmp/burrow-',
} as const;

/** IPC socket: $BURROW_SOCKET, else $XDG_RUNTIME_DIR/burrow/agent.sock, else /tmp/burrow-$UID/agent.sock. */
export function socketPath(env: Env = process.env): string {
  const explicit = env[SocketRules.env];
  if (explicit) return explicit;
  const runtime = env[SocketRules.runtimeEnv];
  return runtime ? join(runtime, SocketRules.dir, SocketRules.name) : join(`${SocketRules.tmpPrefix}${uid()}`, SocketRules.name);
}

/**
 * The directories burrow makes for its socket by itself. Anyone can create /tmp/burrow-$UID
 * first, so these are held to the strict rule: a real directory (no symlink), ours, mode 0700.
 */
function ownSocketDirs(env: Env): string[] {
  const runtime = env[SocketRules.runtimeEnv];
  return [...(runtime ? [join(runtime, SocketRules.dir)] : []), `${SocketRules.tmpPrefix}${uid()}`];
}

function unsafe(message: string): BurrowError {
  return new BurrowError(ErrorCodes.UnsafeSocket, `${message}; refusing to use it`);
}

const octal = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0');

function statOrUndefined(stat: (p: string) => Stats, path: string): Stats | undefined {
  try {
    return stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw unsafe(`cannot check ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/**
 * Check the directory of the socket at `path` so that no other user can control what we connect
 * to or bind (SECURITY.md). burrow's own directory must be a real directory of ours with no
 * group or other bits; one the user named (through $BURROW_SOCKET or --socket) may be reached
 * through symlinks and owned by root, but must not be writable by group or others.
 * `fix` (the daemon) tightens our own directory's mode instead of refusing it.
 * Returns false when the directory does not exist; throws UnsafeSocket naming path and owner.
 */
export function checkSocketDir(path: string, opts: { fix?: boolean; env?: Env } = {}): boolean {
  const dir = dirname(path);
  const me = uid();
  if (ownSocketDirs(opts.env ?? process.env).includes(dir)) {
    const st = statOrUndefined(lstatSync, dir);
    if (!st) return false;
    if (st.isSymbolicLink()) throw unsafe(`${dir} is a symlink (owned by uid ${st.uid}), not a directory`);
    if (!st.isDirectory()) throw unsafe(`${dir} is not a directory (owned by uid ${st.uid})`);
    if (st.uid !== me) throw unsafe(`${dir} is owned by uid ${st.uid}, not you`);
    if ((st.mode & 0o077) !== 0) {
      if (!opts.fix) throw unsafe(`${dir} is open to other users (mode ${octal(st.mode)}, not 0700)`);
      chmodSync(dir, 0o700); // ours and not a symlink (checked above), in a sticky or private parent
    }
    return true;
  }
  const st = statOrUndefined(statSync, dir);
  if (!st) return false;
  if (!st.isDirectory()) throw unsafe(`${dir} is not a directory`);
  if (st.uid !== me && st.uid !== 0) throw unsafe(`${dir} is owned by uid ${st.uid}, not you`);
  if ((st.mode & 0o022) !== 0) throw unsafe(`${dir} is writable by other users (mode ${octal(st.mode)})`);
  return true;
}

/**
 * Check the socket file itself: when present it must be a socket (not a symlink) owned by us.
 * Returns false when there is none.
 */
export function checkSocketFile(path: string): boolean {
  const st = statOrUndefined(lstatSync, path);
  if (!st) return false;
  if (st.isSymbolicLink()) throw unsafe(`${path} is a symlink (owned by uid ${st.uid}), not a socket`);
  if (st.uid !== uid()) throw unsafe(`${path} is owned by uid ${st.uid}, not you`);
  return true;
}

/** What a client checks before connecting: false when there is no socket (no daemon). */
export function checkSocket(path: string, env: Env = process.env): boolean {
  return checkSocketDir(path, { env }) && checkSocketFile(path);
}

/** What the daemon does before binding: make the directory (0700) when missing, then check it. */
export function prepareSocketDir(path: string, env: Env = process.env): void {
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  } catch {
    // e.g. a dangling symlink in its place: the check below says what is there
  }
  if (!checkSocketDir(path, { fix: true, env })) throw new BurrowError(ErrorCodes.IoError, `cannot create ${dirname(path)}`);
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
