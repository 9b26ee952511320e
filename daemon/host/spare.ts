// Starting a session's process without forking the daemon on the way. Node's spawn forks the
// whole daemon (its page tables: 2 ms at 50 MiB of RSS, 20 ms at 250, with the event loop held)
// before the exec; sshd forks a small process instead. So a spare /bin/sh is started ahead of
// time, between commands, already holding the environment, directory, process group and stdio a
// command would get; the next command with the same base takes it, and the sh only exports the
// session's own variables and execs the program. The spare is refilled after each command ends.

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, realpathSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import type { Socket } from 'node:net';

export interface Launch {
  file: string;
  args: string[];
  cwd: string;
  /** The environment every command of this user and remote gets: what a spare is started with. */
  base: Record<string, string>;
  /** The session's own variables (env requests), laid over base. */
  extra: Record<string, string>;
}

// The spare reads a line count, then that many lines of script, from fd 3 and runs them. dash
// reads a pipe one byte per syscall (it must not read past what is its own), so the script is
// only the session's variables and the exec: ~1 µs a byte, and longer ones start the usual way.
const STUB = [
  'IFS= read -r n <&3 || exit 0',
  's=',
  'while [ "$n" -gt 0 ] && IFS= read -r l <&3; do s="$s$l',
  '"; n=$((n - 1)); done',
  'exec 3<&-',
  'eval "$s"',
].join('\n');
export const MAX_SCRIPT = 2048;
/** Spares kept, one per distinct base (user and remote): a host serving a few clients keeps one for each. */
const MAX_SPARES = 4;
/** An unused spare ends after this long. */
const SPARE_IDLE_MS = 10 * 60_000;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Names the spare's sh would treat as its own rather than pass on: their sessions start the usual way.
const SH_SPECIAL = new Set(['IFS', 'PPID', 'OPTIND', 'OPTARG', 'PS1', 'PS2', 'PS4', 'ENV', 'LINENO', 'PWD', 'OLDPWD', 'CDPATH', 'HISTFILE', 'MAIL', 'MAILCHECK', 'MAILPATH', 'FCEDIT', 'HISTSIZE', 'TERMCAP', 'n', 's', 'l']);

interface Spare {
  key: string;
  child: ChildProcess;
  idle: NodeJS.Timeout;
}

const spares: Spare[] = [];
/** Set once the host stops: no refills, and the spares still held are retired. */
let stopped = false;

// Spares are used only where /bin/sh is a plain POSIX sh: bash as sh passes SHLVL and _ to what it
// execs and treats some names (UID, EUID, BASH*) as read-only, so the command would not get the
// environment a direct spawn gives it.
const PLAIN_SH = ((): boolean => {
  try {
    return ['dash', 'busybox'].includes(basename(realpathSync('/bin/sh')));
  } catch {
    return false;
  }
})();

const quote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`;

function keyOf(l: Launch): string {
  return JSON.stringify([l.cwd, Object.entries(l.base).sort(([a], [b]) => (a < b ? -1 : 1))]);
}

/** The script a spare runs for `l`, or undefined when `l` must start the usual way. */
function scriptFor(l: Launch): string | undefined {
  // A relative program, or one that cannot run, starts the usual way: spawn's own error is the one users see.
  if (!l.file.startsWith('/')) return undefined;
  try {
    accessSync(l.file, fsConstants.X_OK);
    if (!statSync(l.cwd).isDirectory()) return undefined;
  } catch {
    return undefined;
  }
  if (!PLAIN_SH || stopped) return undefined;
  // The spare may be minutes old: enter the directory again, in case it was replaced since.
  const lines: string[] = [`cd -- ${quote(l.cwd)} || exit 126`];
  for (const [k, v] of Object.entries(l.extra)) {
    if (!NAME.test(k) || SH_SPECIAL.has(k) || v.includes('\0')) return undefined;
    lines.push(`export ${k}=${quote(v)}`);
  }
  if ([l.file, ...l.args].some((a) => a.includes('\0'))) return undefined;
  // sh exports PWD to what it runs; a program spawned directly has none unless given one.
  // sh exports OLDPWD after the cd, too.
  lines.push('unset PWD', ...('OLDPWD' in l.base ? [] : ['unset OLDPWD']), `exec ${[l.file, ...l.args].map(quote).join(' ')}`);
  const script = lines.join('\n') + '\n';
  return Buffer.byteLength(script) <= MAX_SCRIPT ? script : undefined;
}

function startSpare(key: string, l: Launch): void {
  let child: ChildProcess;
  try {
    child = spawn('/bin/sh', ['-c', STUB], { cwd: l.cwd, env: l.base, detached: true, stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
  } catch {
    return;
  }
  child.once('error', () => drop(spare));
  child.once('exit', () => drop(spare));
  // An idle spare must not keep the daemon's event loop alive.
  child.unref();
  for (const s of child.stdio) (s as Socket | null)?.unref();
  const spare: Spare = { key, child, idle: setTimeout(() => retire(spare), SPARE_IDLE_MS).unref() };
  spares.push(spare);
}

function drop(spare: Spare): boolean {
  const i = spares.indexOf(spare);
  if (i < 0) return false;
  spares.splice(i, 1);
  clearTimeout(spare.idle);
  return true;
}

/** End an unused spare: its read meets end of file and it exits. */
function retire(spare: Spare): void {
  if (drop(spare)) spare.child.stdio[3]?.destroy();
}

/**
 * Start `l` as spawn(file, args, { cwd, env: base + extra, detached: true, stdio: pipes }) would,
 * through a spare when one holds the same base; either way a spare for this base is made ready
 * once the process has ended. Throws as spawn throws.
 */
export function startCommand(l: Launch): ChildProcess {
  const key = keyOf(l);
  const script = scriptFor(l);
  const spare = script === undefined ? undefined : spares.find((s) => s.key === key);
  let child: ChildProcess;
  if (spare && script !== undefined && drop(spare) && spare.child.exitCode === null && spare.child.signalCode === null) {
    child = spare.child;
    child.ref();
    for (const s of child.stdio) (s as Socket | null)?.ref();
    const ctl = child.stdio[3] as Socket;
    ctl.end(`${script.split('\n').length - 1}\n${script}`);
    ctl.on('error', () => undefined); // the command may be gone before the script is read
  } else {
    child = spawn(l.file, l.args, { cwd: l.cwd, env: { ...l.base, ...l.extra }, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  }
  // setImmediate: the refill forks the daemon, so it waits until the exit status has gone out.
  if (script !== undefined) {
    child.once('close', () => {
      // No eviction: with more bases than spares, each command would fork twice (its own spawn
      // and a refill) and take no spare; the first bases keep theirs until they idle out.
      setImmediate(() => {
        if (!stopped && spares.length < MAX_SPARES && !spares.some((s) => s.key === key)) startSpare(key, l);
      });
    });
  }
  return child;
}

/** A host starting turns spares on; one stopping turns them off, retiring those held, so none is made while its commands are hung up. */
export function enableSpares(on: boolean): void {
  stopped = !on;
  if (!on) for (const s of [...spares]) retire(s);
}
