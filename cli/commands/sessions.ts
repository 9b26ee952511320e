// burrow session list|attach|kill, and the attach loop behind `burrow ssh --session`: a shell on
// the host that outlives this client. When the link drops, the terminal is kept and the client
// reattaches by itself from the last output offset it saw, so nothing is lost or shown twice.

import { BurrowError, ErrorCodes, exitCodeFor, toBurrowError, type ErrorCode } from '../../shared/errors.js';
import type { IpcConnection } from '../../shared/ipc/client.js';
import { errorFromFrame, type Frame } from '../../shared/ipc/frames.js';
import { ask, connectDaemon, usage, type CliContext } from '../context.js';
import { hasFlag, lastValue, scanFlags } from '../flags.js';
import { useTerminal } from '../terminal.js';
import { signalStatus } from '../../shared/fleet.js';
import type { SessionInfo } from '../../shared/sessions.js';
import { ESCAPE_HELP, EscapeFilter, sessionEnv } from './session.js';

export interface AttachOptions {
  target: string;
  name: string;
  /** Create the session when absent (burrow ssh --session). */
  create: boolean;
  command?: string;
  readOnly: boolean;
  /** Give up reconnecting after this many ms; undefined: never. */
  reconnectTimeoutMs?: number;
  /** Seconds the session lives on with no client; only when it is created here. */
  lingerSeconds?: number;
}

const USAGE = 'usage: burrow session list TARGET [--json] | session attach TARGET NAME [--read-only] [--reconnect-timeout SECONDS] | session kill TARGET NAME';
/** Errors after which reattaching cannot help: the session is gone or the request is wrong (the native client's header lists them too). */
export const ATTACH_FINAL_ERRORS: readonly ErrorCode[] = [ErrorCodes.NotFound, ErrorCodes.BadArgument, ErrorCodes.VersionMismatch];
const FINAL = new Set<string>(ATTACH_FINAL_ERRORS);
/**
 * Set by the native client (cli/native/burrow.c) when the connection of a session it had attached
 * is lost: `PID:OFFSET`, its pid (which exec kept) and the output offset it had shown. This
 * process then reconnects from there, as after a loss of its own; taken out of the environment so
 * that nothing started later inherits it.
 */
export const RESUME_ENV = 'BURROW_SESSION_RESUME';
const RETRY_FIRST_MS = 200;
const RETRY_MAX_MS = 2000;

export async function sessionsCommand(ctx: CliContext, args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  const words = rest.filter((a) => !a.startsWith('-'));
  switch (sub) {
    case 'list': {
      const [target] = words;
      if (target === undefined) usage(USAGE);
      const v = await ask(ctx, { t: 'sessions', target });
      const rows = (v['sessions'] ?? []) as SessionInfo[];
      if (rest.includes('--json')) process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
      else printTable(rows);
      return 0;
    }
    case 'kill': {
      const [target, name] = words;
      if (target === undefined || name === undefined) usage(USAGE);
      await ask(ctx, { t: 'session_kill', target, name });
      return 0;
    }
    case 'attach': {
      const { words: pos, readOnly, reconnectTimeoutMs } = parseAttachFlags(rest);
      const [target, name] = pos;
      if (target === undefined || name === undefined) usage(USAGE);
      return attachSession(ctx, { target, name, create: false, readOnly, ...(reconnectTimeoutMs !== undefined ? { reconnectTimeoutMs } : {}) });
    }
    default:
      return usage(USAGE);
  }
}

function parseAttachFlags(args: string[]): { words: string[]; readOnly: boolean; reconnectTimeoutMs?: number } {
  const given = scanFlags(args, { 'read-only': { type: 'boolean' }, 'reconnect-timeout': { type: 'string' } }, (m) =>
    usage(m.startsWith('--reconnect-timeout') ? '--reconnect-timeout needs a whole number of seconds' : `burrow session attach: ${m}`),
  );
  const timeout = lastValue(given, 'reconnect-timeout');
  const words = [...given.positionals, ...given.rest];
  return { words, readOnly: hasFlag(given, 'read-only'), ...(timeout !== undefined ? { reconnectTimeoutMs: seconds('--reconnect-timeout', timeout) * 1000 } : {}) };
}

/** A whole number of seconds for a flag. */
export function seconds(flag: string, v: string | undefined): number {
  if (v === undefined || !/^\d+$/.test(v)) usage(`${flag} needs a whole number of seconds`);
  return Number(v);
}

function printTable(rows: SessionInfo[]): void {
  if (rows.length === 0) return;
  const when = (t: number | null): string => (t === null ? '-' : new Date(t).toISOString().slice(0, 19).replace('T', ' '));
  const status = (r: SessionInfo): string => (r.running ? 'running' : r.exit?.signal ? `killed by SIG${r.exit.signal}` : `exited ${r.exit?.code ?? '?'}`);
  const table = [
    ['NAME', 'STATUS', 'CLIENTS', 'SIZE', 'CREATED', 'LAST ATTACHED', 'COMMAND'],
    ...rows.map((r) => [r.name, status(r), String(r.clients), `${r.cols}x${r.rows}`, when(r.created), when(r.lastAttached), r.command ?? '(login shell)']),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const row of table) process.stdout.write(row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join('  ') + '\n');
}

/**
 * Attach until the shell ends (its status is ours), the user detaches (~. or ~d: 0), or, with a
 * reconnect timeout, the host stays out of reach too long (255).
 */
export async function attachSession(ctx: CliContext, o: AttachOptions): Promise<number> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  const interactive = stdin.isTTY === true;
  const size = (): { cols: number; rows: number } => ({ cols: stdout.columns || 80, rows: stdout.rows || 24 });
  // LANG and every LC_*, as for a plain session (the host's allowlist decides).
  const env = sessionEnv(process.env);
  const { defer, cleanup } = useTerminal(interactive);
  const nl = interactive ? '\r\n' : '\n';
  const resume = process.env[RESUME_ENV];
  delete process.env[RESUME_ENV];
  // PID:OFFSET from the native client that exec'd this process (same pid); any other value is
  // stale, inherited from elsewhere, and ignored.
  const handed = resume === undefined ? null : /^(\d+):(\d+)$/.exec(resume);
  const resumeAt = handed && Number(handed[1]) === process.pid ? Number(handed[2]) : undefined;

  return new Promise<number>((resolve) => {
    let conn: IpcConnection | undefined;
    /** Attached now: keys go to the shell. Keys typed while not attached are dropped, never sent later. */
    let live = false;
    let offset: number | undefined = resumeAt;
    let attachedOnce = resumeAt !== undefined;
    let lostSince: number | undefined;
    let retryMs = RETRY_FIRST_MS;
    let finished = false;
    let retryTimer: NodeJS.Timeout | undefined;

    const finish = (code: number, message?: string): void => {
      if (finished) return;
      finished = true;
      if (retryTimer) clearTimeout(retryTimer);
      const c = conn;
      conn = undefined;
      c?.close();
      cleanup();
      if (message) process.stderr.write(message);
      stdin.pause();
      stdin.unref?.();
      resolve(code);
    };

    const lost = (err: BurrowError): void => {
      if (finished) return;
      conn = undefined;
      live = false;
      if (!attachedOnce || FINAL.has(err.code)) return finish(exitCodeFor(err.code), `${attachedOnce ? nl : ''}burrow: ${err.code}: ${err.message}\n`);
      if (lostSince === undefined) {
        lostSince = Date.now();
        process.stderr.write(`${nl}burrow: connection lost, reconnecting...${nl}`);
      }
      if (o.reconnectTimeoutMs !== undefined && Date.now() - lostSince >= o.reconnectTimeoutMs) {
        return finish(255, `burrow: ${ErrorCodes.Disconnected}: gave up reconnecting to ${o.target} after ${Math.round(o.reconnectTimeoutMs / 1000)} s (${err.message})\n`);
      }
      retryTimer = setTimeout(attempt, retryMs);
      retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
    };

    const onFrame = (c: IpcConnection, f: Frame): void => {
      if (finished || conn !== c) return;
      switch (f.t) {
        case 'attached':
          live = true;
          attachedOnce = true;
          lostSince = undefined;
          retryMs = RETRY_FIRST_MS;
          // Without the bytes we missed, the keeper redraws its screen: start from a clean terminal.
          if (f.screen && f.screen.length > 0) {
            if (stdout.isTTY) stdout.write('\x1bc');
            stdout.write(f.screen);
          }
          offset = f.offset;
          return;
        case 'stdout':
          stdout.write(f.data);
          if (offset !== undefined) offset += f.data.length;
          return;
        case 'exit':
          return finish(f.signal !== undefined ? signalStatus(f.signal) : (f.code ?? 255));
        case 'error':
          conn = undefined;
          c.close();
          return lost(errorFromFrame(f));
        default:
          return;
      }
    };

    const attempt = async (): Promise<void> => {
      retryTimer = undefined;
      let c: IpcConnection;
      try {
        // Autostart brings back an agent that is gone (killed, crashed).
        c = await connectDaemon(ctx);
      } catch (err) {
        return lost(toBurrowError(err));
      }
      if (finished) return c.close();
      conn = c;
      c.on('frame', (f: Frame) => onFrame(c, f));
      c.once('close', (err?: BurrowError) => {
        if (conn === c) lost(err ?? new BurrowError(ErrorCodes.Disconnected, 'the daemon closed the connection'));
      });
      c.send({
        t: 'session_open',
        target: o.target,
        name: o.name,
        // Only the first attach may create: a session that ended while we were away is not started
        // again (that would run its command a second time); NotFound then ends the client.
        ...(o.create && !attachedOnce ? { create: true } : {}),
        ...(o.command !== undefined && !attachedOnce ? { command: o.command } : {}),
        ...(o.readOnly ? { readOnly: true } : {}),
        ...(offset !== undefined ? { offset } : {}),
        ...(o.lingerSeconds !== undefined ? { linger: o.lingerSeconds } : {}),
        term: process.env['TERM'] || 'xterm-256color',
        ...size(),
        env,
      });
    };

    const escapes = interactive ? new EscapeFilter(true) : undefined;
    stdin.on('data', (chunk: Buffer) => {
      let data = chunk;
      if (escapes) {
        const r = escapes.filter(chunk);
        // ~. and ~d detach (the shell lives on); ~& too, there being nothing to wait for.
        if (r.actions.includes('disconnect') || r.actions.includes('background')) return finish(0, `${nl}burrow: detached from session ${o.name} (burrow session attach ${o.target} ${o.name})${nl}`);
        if (r.actions.includes('help')) stdout.write(`${nl}${ESCAPE_HELP}${nl}~d   - detach (the shell lives on)${nl}`);
        data = r.out;
      }
      if (live && conn && data.length > 0) conn.send({ t: 'stdin', data });
    });
    stdin.on('error', () => undefined);
    if (stdout.isTTY) {
      const onResize = (): void => {
        if (live) conn?.send({ t: 'resize', ...size() });
      };
      process.on('SIGWINCH', onResize);
      defer(() => process.off('SIGWINCH', onResize));
    }
    if (resumeAt !== undefined) {
      // Taken over from the native client, which lost the connection: say so, as after a loss here.
      lostSince = Date.now();
      process.stderr.write(`${nl}burrow: connection lost, reconnecting...${nl}`);
    }
    void attempt();
  });
}

/** `burrow ssh TARGET --session NAME [CMD]`: attach, creating the session when absent. */
export function sshSession(ctx: CliContext, target: string, name: string, command: string | undefined, flags: { reconnectTimeoutMs?: number; lingerSeconds?: number }): Promise<number> {
  if (!name) throw new BurrowError(ErrorCodes.BadArgument, 'burrow ssh --session needs a name');
  return attachSession(ctx, { target, name, create: true, readOnly: false, ...(command !== undefined ? { command } : {}), ...flags });
}
