// burrow ssh and burrow exec: one session through the daemon, bytes both ways with backpressure,
// and the remote exit status as ours (128+N for signal N, like ssh).

import { constants as osConstants } from 'node:os';
import { exitCodeFor, type BurrowError } from '../../shared/errors.js';
import type { IpcConnection } from '../../shared/ipc/client.js';
import { signalStatus } from '../../shared/fleet.js';
import { isManyTargets } from '../../shared/groups.js';
import { isLocaleEnv, spawn } from '../../shared/lib.js';
import { readAliases } from '../../shared/aliases.js';
import { aliasCandidate, parseTarget } from '../../shared/target.js';
import { connectDaemon, usage, type CliContext } from '../context.js';
import { scanFlags } from '../flags.js';
import { onSignal } from '../signals.js';
import { useTerminal } from '../terminal.js';
import { FORWARD_FLAGS, describeForward, requestForward, type ForwardType } from './forward.js';
import { seconds, sshSession } from './sessions.js';

export interface SessionSpec {
  target: string;
  /** undefined: a login shell. */
  command?: string;
  pty: boolean;
  /** Seconds to wait for the connection (ssh -o ConnectTimeout). */
  connectTimeout?: number;
  /** Env names sent besides LANG and LC_* (ssh -o SendEnv). */
  sendEnv?: string[];
  /** What ~# lists besides the session itself. */
  forwards?: { conn: IpcConnection; text: string }[];
  verbose?: boolean;
}

export const SSH_USAGE = 'usage: burrow ssh TARGET [-t|-T] [-N] [-v] [-p PORT] [-l USER] [-o OPTION=VALUE] [-L spec] [-R spec] [-D [bind:]port] [CMD...]';

/**
 * The OpenSSH client options burrow honours with -o (case-insensitive names, as ssh reads them).
 * Accepted only where the value means what it does for ssh; the rest are refused by name.
 */
const SSH_OPTIONS = ['ConnectTimeout', 'User', 'Port', 'RequestTTY', 'SendEnv', 'StrictHostKeyChecking', 'BatchMode', 'ServerAliveInterval', 'ServerAliveCountMax', 'LogLevel'] as const;
export const SSH_OPTION_NAMES: readonly string[] = SSH_OPTIONS;

interface SshArgs {
  target?: string;
  rest: string[];
  forcePty?: boolean;
  noCommand: boolean;
  port?: number;
  user?: string;
  connectTimeout?: number;
  sendEnv: string[];
  verbose: boolean;
  help: boolean;
  forwards: { type: ForwardType; spec: string }[];
  /** --session NAME: a persistent shell (cli/commands/sessions.ts). */
  session?: string;
  sessionFlags: { reconnectTimeoutMs?: number; lingerSeconds?: number };
}

function positiveInt(what: string, v: string): number {
  if (!/^\d{1,6}$/.test(v) || Number(v) === 0) usage(`burrow ssh: ${what} takes a whole number of seconds or a port, got ${JSON.stringify(v)}`);
  return Number(v);
}

/** One `-o Key=Value` (or `Key Value`), applied to the parsed arguments. */
function applyOption(a: SshArgs, text: string): void {
  const m = /^\s*([A-Za-z]+)\s*(?:=|\s)\s*(.*?)\s*$/.exec(text);
  if (!m) usage(`burrow ssh: -o ${JSON.stringify(text)} is not Key=Value`);
  const key = SSH_OPTIONS.find((k) => k.toLowerCase() === (m[1] as string).toLowerCase());
  const value = m[2] as string;
  switch (key) {
    case 'ConnectTimeout':
      a.connectTimeout = positiveInt('ConnectTimeout', value);
      return;
    case 'User':
      a.user = value;
      return;
    case 'Port':
      a.port = positiveInt('Port', value);
      return;
    case 'RequestTTY': {
      const v = value.toLowerCase();
      if (v === 'yes' || v === 'force') a.forcePty = true;
      else if (v === 'no') a.forcePty = false;
      else if (v === 'auto') a.forcePty = undefined;
      else usage(`burrow ssh: RequestTTY takes yes, no, force or auto, got ${JSON.stringify(value)}`);
      return;
    }
    case 'SendEnv':
      a.sendEnv.push(...value.split(/[\s,]+/).filter(Boolean));
      return;
    case 'StrictHostKeyChecking': {
      // burrow always checks: an endpoint id is its host key, and new TCP hosts are recorded (accept-new).
      const v = value.toLowerCase();
      if (v !== 'yes' && v !== 'accept-new') usage(`burrow ssh: StrictHostKeyChecking=${value} is not supported: burrow always checks host keys (yes and accept-new are what it does)`);
      return;
    }
    case 'BatchMode':
    case 'ServerAliveInterval':
    case 'ServerAliveCountMax':
    case 'LogLevel':
      // Accepted and moot: burrow never prompts, probes every silent connection (burrowd --keepalive-interval), logs in burrowd.
      return;
    default:
      usage(`burrow ssh: -o ${m[1]} is not supported (burrow takes ${SSH_OPTIONS.join(', ')})`);
  }
}

/** ssh's flags that burrow takes; one-letter switches group (-tt, -Nv), valued ones take -p22 or -p 22. */
const SSH_FLAGS = {
  t: { type: 'boolean', short: 't' },
  T: { type: 'boolean', short: 'T' },
  N: { type: 'boolean', short: 'N' },
  v: { type: 'boolean', short: 'v' },
  q: { type: 'boolean', short: 'q' },
  L: { type: 'string', short: 'L' },
  R: { type: 'string', short: 'R' },
  D: { type: 'string', short: 'D' },
  p: { type: 'string', short: 'p' },
  l: { type: 'string', short: 'l' },
  o: { type: 'string', short: 'o' },
  h: { type: 'boolean', short: 'h' },
  help: { type: 'boolean' },
  session: { type: 'string' },
  'reconnect-timeout': { type: 'string' },
  'session-linger': { type: 'string' },
} as const;

/** Options before or after TARGET, as with ssh; the first word after TARGET starts the remote command. */
export function parseSshArgs(args: string[]): SshArgs {
  const a: SshArgs = { rest: [], noCommand: false, sendEnv: [], verbose: false, help: false, forwards: [], sessionFlags: {} };
  const given = scanFlags(args, SSH_FLAGS, (m) => usage(`burrow ssh: ${m}`), { stopAt: 2, stopOn: ['h', 'help'] });
  for (const { name, raw, value = '' } of given.flags) {
    switch (name) {
      case 'h':
      case 'help':
        a.help = true;
        return a;
      case 't':
      case 'T':
        a.forcePty = name === 't';
        break;
      case 'N':
        a.noCommand = true;
        break;
      case 'v':
        a.verbose = true;
        break;
      case 'L':
      case 'R':
      case 'D':
        a.forwards.push({ type: FORWARD_FLAGS[raw] as ForwardType, spec: value });
        break;
      case 'p':
        a.port = positiveInt('-p', value);
        break;
      case 'l':
        a.user = value;
        break;
      case 'o':
        applyOption(a, value);
        break;
      case 'session':
        a.session = value;
        break;
      case 'reconnect-timeout':
        a.sessionFlags.reconnectTimeoutMs = seconds(raw, value) * 1000;
        break;
      case 'session-linger':
        a.sessionFlags.lingerSeconds = seconds(raw, value);
        break;
      // -q: accepted and moot (burrow prints no banner to quiet)
    }
  }
  const [target] = given.positionals;
  if (target !== undefined) a.target = target;
  a.rest = given.rest;
  return a;
}

/** TARGET with -l USER and -p PORT folded in (a user or port written in TARGET wins, as in ssh). */
export function effectiveTarget(target: string, user: string | undefined, port: number | undefined, isAlias: (name: string) => boolean): string {
  let t = target;
  if (port !== undefined) {
    const parsed = parseTarget(target);
    const name = aliasCandidate(parsed);
    if (name !== undefined && isAlias(name)) usage(`burrow ssh: -p ${port} applies to host[:port] targets; ${name} is an alias, whose address says where it is`);
    if (parsed.kind !== 'tcp') usage(`burrow ssh: -p ${port} applies to host[:port] targets; ${target} is reached by its endpoint id`);
    if (parsed.port === undefined) t = `${t.includes(':') && !t.startsWith('[') ? `[${t}]` : t}:${port}`;
  }
  if (user !== undefined && !t.includes('@')) t = `${user}@${t}`;
  return t;
}

/** `ssh TARGET [options] [CMD...]`; options may come before or after TARGET, as with ssh. */
export async function sshCommand(ctx: CliContext, args: string[]): Promise<number> {
  const a = parseSshArgs(args);
  if (a.help) {
    process.stdout.write(SSH_USAGE + '\n');
    return 0;
  }
  if (a.target === undefined) usage(SSH_USAGE);
  const target = effectiveTarget(a.target, a.user, a.port, (name) => name in readAliases(ctx.state));
  const debug = (msg: string): void => {
    if (a.verbose) process.stderr.write(`debug1: ${msg}\r\n`);
  };
  debug(`burrow ssh to ${target} through the daemon at ${ctx.socket}`);
  if (a.session !== undefined) {
    if (a.forwards.length > 0 || a.noCommand) usage('burrow ssh --session: forwards belong to plain sessions, not persistent ones');
    return sshSession(ctx, target, a.session, a.rest.length > 0 ? a.rest.join(' ') : undefined, a.sessionFlags);
  }
  // Each forward is held by its own daemon connection: they all go when this process does.
  const held: { conn: IpcConnection; text: string }[] = [];
  for (const f of a.forwards) {
    const h = await requestForward(ctx, target, f.type, f.spec, false);
    held.push({ conn: h.conn, text: describeForward(h.status) });
    process.stderr.write(`burrow: forwarding ${describeForward(h.status)}\n`);
  }
  if (a.noCommand) {
    if (a.forwards.length === 0) usage('burrow ssh -N: nothing to do without -L, -R or -D');
    // No command: hold the forwards until interrupted (or the daemon goes away). Like ssh, a
    // signal ends it with 255, quietly.
    return new Promise((resolve) => {
      const stop = (): void => {
        for (const c of held) c.conn.close();
        resolve(255);
      };
      for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) onSignal(sig, stop, true);
      for (const c of held) c.conn.once('close', () => resolve(255));
    });
  }
  const command = a.rest.length > 0 ? a.rest.join(' ') : undefined;
  // Like ssh: a PTY for an interactive shell on a terminal, or when asked with -t.
  const pty = a.forcePty ?? (command === undefined && process.stdin.isTTY === true);
  debug(`${command === undefined ? 'shell' : 'command'}, ${pty ? 'with' : 'without'} a PTY`);
  const code = await runSession(ctx, {
    target,
    ...(command !== undefined ? { command } : {}),
    pty,
    ...(a.connectTimeout !== undefined ? { connectTimeout: a.connectTimeout } : {}),
    sendEnv: a.sendEnv,
    forwards: held,
    verbose: a.verbose,
  });
  for (const c of held) c.conn.close();
  return code;
}

/** `exec TARGET -- CMD...`: no PTY, stdout and stderr apart. */
export async function execCommand(ctx: CliContext, args: string[]): Promise<number> {
  // Many targets (@group, a,b) or fan-out options first: the fleet runs it.
  if (args[0] !== undefined && (args[0].startsWith('-') || isManyTargets(args[0]))) return (await import('./fleet.js')).fleetExecCommand(ctx, args);
  const [target, sep, ...cmd] = args;
  const words = sep === '--' ? cmd : sep !== undefined ? [sep, ...cmd] : [];
  if (target === undefined || target.startsWith('-') || words.length === 0) usage('usage: burrow exec TARGET -- CMD...');
  return runSession(ctx, { target, command: words.join(' '), pty: false });
}

/** What an escape asks for; `send` is always the bytes that go on to the remote. */
export type EscapeAction = 'disconnect' | 'help' | 'channels' | 'background' | 'command' | 'suspend';

const ESCAPE_KEYS: Record<number, EscapeAction> = { 0x2e: 'disconnect', 0x3f: 'help', 0x23: 'channels', 0x26: 'background', 0x43: 'command', 0x1a: 'suspend' };

export const ESCAPE_HELP = [
  'Supported escape sequences:',
  ' ~.   - terminate connection',
  ' ~&   - background burrow (forwarded connections already open run on in the daemon)',
  ' ~#   - list forwarded connections',
  ' ~?   - this message',
  ' ~~   - send the escape character by typing it twice',
  '(Note that escapes are only recognized immediately after newline.)',
  'Not supported: ~C (use burrow forward add|cancel), ~R, ~V, ~v, ~B, ~^Z.',
].join('\r\n');

/** OpenSSH's escapes after a newline: `~.`, `~?`, `~#`, `~&`, `~C`, and `~~` for a literal `~`. */
export class EscapeFilter {
  private atLineStart = true;
  private pendingTilde = false;

  /** detachKey: `~d` detaches too (persistent sessions), as `~.` does. */
  constructor(private readonly detachKey = false) {}

  /** The bytes to send, and the escapes typed in this chunk, in order. */
  filter(chunk: Buffer): { out: Buffer; actions: EscapeAction[] } {
    const out: number[] = [];
    const actions: EscapeAction[] = [];
    for (const b of chunk) {
      if (this.pendingTilde) {
        this.pendingTilde = false;
        const action = this.detachKey && b === 0x64 /* d */ ? 'disconnect' : ESCAPE_KEYS[b];
        if (action) {
          actions.push(action);
          if (action === 'disconnect' || action === 'background') return { out: Buffer.from(out), actions };
          continue;
        }
        if (b === 0x7e /* ~ */) {
          out.push(0x7e);
          this.atLineStart = false;
          continue;
        }
        out.push(0x7e); // not an escape: the tilde goes through with what follows
      } else if (this.atLineStart && b === 0x7e) {
        this.pendingTilde = true;
        continue;
      }
      out.push(b);
      this.atLineStart = b === 0x0d || b === 0x0a;
    }
    return { out: Buffer.from(out), actions };
  }
}

/** LANG and every LC_* (the host's built-in allowlist), plus the names asked for with SendEnv. */
export function sessionEnv(env: NodeJS.ProcessEnv, extra: readonly string[] = []): Record<string, string> {
  const out: Record<string, string> = {};
  const patterns = extra.map((p) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`));
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined || v === '') continue;
    if (isLocaleEnv(k) || patterns.some((p) => p.test(k))) out[k] = v;
  }
  return out;
}

export async function runSession(ctx: CliContext, spec: SessionSpec): Promise<number> {
  const connection = await connectDaemon(ctx);
  const stdin = process.stdin;
  const stdout = process.stdout;
  const interactive = spec.pty && stdin.isTTY === true;
  const size = (): { cols: number; rows: number } => ({ cols: stdout.columns || 80, rows: stdout.rows || 24 });
  const env = sessionEnv(process.env, spec.sendEnv);
  const p = await spawn(spec.target, spec.command, {
    connection,
    env,
    pty: spec.pty ? { term: process.env['TERM'] || 'xterm-256color', ...size() } : false,
    ...(spec.connectTimeout !== undefined ? { connectTimeoutMs: spec.connectTimeout * 1000 } : {}),
  });

  const { defer, cleanup } = useTerminal(interactive);
  p.stdout.on('data', (d: Buffer) => stdout.write(d));
  p.stderr.on('data', (d: Buffer) => process.stderr.write(d));

  return new Promise<number>((resolve) => {
    let finished = false;
    const finish = (code: number, message?: string): void => {
      if (finished) return;
      finished = true;
      cleanup();
      if (message) process.stderr.write(message);
      stdin.pause();
      stdin.unref?.();
      resolve(code);
    };
    p.once('exit', (code: number | null, signal: string | null) => finish(signal !== null ? signalStatus(signal) : (code ?? 255)));
    p.once('error', (err: BurrowError) => finish(exitCodeFor(err.code), `${interactive ? '\r\n' : ''}burrow: ${err.code}: ${err.message}\n`));

    const escapes = interactive ? new EscapeFilter() : undefined;
    stdin.on('data', (chunk: Buffer) => {
      let data = chunk;
      if (escapes) {
        const r = escapes.filter(chunk);
        data = r.out;
        for (const action of r.actions) {
          if (action === 'disconnect') {
            p.disconnect();
            return finish(255, `\r\nConnection to ${spec.target} closed.\r\n`);
          }
          if (action === 'background') {
            // As ssh's ~&: take no new forwarded connections; those open run on in the daemon (it
            // holds their channels) while this process ends, the session after an EOF as ssh's child does.
            if (data.length > 0) p.stdin.write(data);
            for (const f of spec.forwards ?? []) f.conn.close();
            p.stdin.end(() => p.disconnect());
            return finish(0, '~& [backgrounded]\r\n');
          }
          if (action === 'help') process.stderr.write(`~?\r\n${ESCAPE_HELP}\r\n`);
          else if (action === 'channels') {
            const lines = [`  #0 session: ${spec.command === undefined ? 'shell' : `command ${JSON.stringify(spec.command.slice(0, 60))}`} on ${spec.target}${spec.pty ? ' (PTY)' : ''}`];
            (spec.forwards ?? []).forEach((f, i) => lines.push(`  #${i + 1} forward ${f.text}`));
            process.stderr.write(`~#\r\nThe following connections are open:\r\n${lines.join('\r\n')}\r\n`);
          } else if (action === 'command') process.stderr.write('~C\r\ncommands are not supported: use burrow forward add|cancel from another shell\r\n');
          else if (action === 'suspend') process.stderr.write('~^Z\r\nsuspending is not supported\r\n');
        }
      }
      if (!p.stdin.write(data)) {
        stdin.pause();
        p.stdin.once('drain', () => stdin.resume());
      }
    });
    stdin.once('end', () => p.stdin.end());
    stdin.on('error', () => p.stdin.end());

    if (spec.pty && stdout.isTTY) {
      const onResize = (): void => p.resize(size().cols, size().rows);
      process.on('SIGWINCH', onResize);
      defer(() => process.off('SIGWINCH', onResize));
    }
    // Like ssh: TERM or HUP to us ends the session (the host hangs up the remote command) and us,
    // so `timeout` and a closing terminal can always end a session.
    for (const sig of ['SIGTERM', 'SIGHUP'] as const) {
      const h = (): void => {
        finish(128 + osConstants.signals[sig]);
        p.disconnect();
      };
      defer(onSignal(sig, h));
    }
    if (!interactive) {
      // Without a PTY, ^C here would only kill us; pass it on so the remote command decides. A
      // second one ends us here (128+N), for a remote that ignores it or a daemon that stopped reading.
      let seen = 0;
      const h = (): void => {
        if (seen++ > 0) {
          finish(128 + osConstants.signals.SIGINT);
          return p.disconnect();
        }
        p.kill('SIGINT');
      };
      defer(onSignal('SIGINT', h));
    }
  });
}
