// One command on many hosts: execMany() runs it on each target through the daemon's pool, one
// IPC session per host (the same path as a single exec), at most `fanout` at a time, and reports
// each host honestly: succeeded, failed (its status), timed out, unreachable, or cancelled.

import { constants as osConstants } from 'node:os';
import { BurrowError, ErrorCodes, toBurrowError, type ErrorCode } from './errors.js';
import { readGroups, expandTargets } from './groups.js';
import { IpcConnection } from './ipc/client.js';
import { spawn, type BurrowProcess } from './lib.js';
import { socketPath, stateDir } from './paths.js';
import { bareSignal } from './signals.js';

export const DEFAULT_FANOUT = 32;
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
// After a cancel, a command that has not ended on INT is dropped (and hung up) this much later.
const CANCEL_GRACE_MS = 1000;

export type HostOutcome = 'succeeded' | 'failed' | 'timedout' | 'unreachable' | 'cancelled';

export interface HostResult {
  /** The target as written (or as listed in its group). */
  target: string;
  outcome: HostOutcome;
  /** The remote exit status, or null (signal, error, not run). */
  code: number | null;
  /** The signal name without SIG when the remote process died of one. */
  signal: string | null;
  stdout: Buffer;
  stderr: Buffer;
  /** Why there is no exit status: unreachable, timed out or cancelled. */
  error: { code: ErrorCode; message: string } | null;
  /** From the request to the end, in ms. */
  ms: number;
}

export interface ExecManyOptions {
  socket?: string;
  /** Where `@group` names are looked up (default: burrow's state dir). */
  state?: string;
  /** At most this many hosts at once (default 32). */
  fanout?: number;
  /** Per host, give up reaching it after this many ms (default 10 s). */
  connectTimeoutMs?: number;
  /** Per host, end the command once it has run this many ms (default: no limit). */
  timeoutMs?: number;
  /** Sent to every host's command, then end of input; without it, end of input at once. */
  stdin?: string | Uint8Array;
  env?: Record<string, string>;
  /** Keep each host's output in its result (default true; false for output streamed elsewhere). */
  collect?: boolean;
  onOutput?(target: string, stream: 'stdout' | 'stderr', data: Buffer): void;
  /** A host finished (in whatever way), in the order they finish. */
  onResult?(r: HostResult): void;
  /** Abort: hosts not started are not; running commands get INT, and are dropped 1 s later. */
  signal?: AbortSignal;
}

/**
 * Run `command` on every target. `targets` are target specs (`@group`, `a,b`, aliases, ...);
 * results come back in target order. Rejects only for bad specs, never for a host's failure.
 */
export async function execMany(targets: string | readonly string[], command: string, opts: ExecManyOptions = {}): Promise<HostResult[]> {
  const specs = typeof targets === 'string' ? [targets] : targets;
  const needGroups = specs.some((s) => s.includes('@'));
  const list = expandTargets(specs, needGroups ? readGroups(opts.state ?? stateDir()) : {});
  const fanout = opts.fanout ?? DEFAULT_FANOUT;
  if (!Number.isSafeInteger(fanout) || fanout < 1) throw new BurrowError(ErrorCodes.BadArgument, `fanout must be a whole number >= 1, not ${fanout}`);
  // One listener on the caller's signal, whatever the fanout, cancels every running host.
  const cancels = new Set<() => void>();
  const onAbort = (): void => {
    for (const c of cancels) c();
  };
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await mapLimit(list, fanout, async (target) => {
      const r = opts.signal?.aborted ? notRun(target) : await runOne(target, command, opts, cancels);
      opts.onResult?.(r);
      return r;
    });
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** fn over items, at most `limit` at a time, results in item order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function notRun(target: string): HostResult {
  return { target, outcome: 'cancelled', code: null, signal: null, stdout: Buffer.alloc(0), stderr: Buffer.alloc(0), error: { code: ErrorCodes.Disconnected, message: 'cancelled before it started' }, ms: 0 };
}

async function runOne(target: string, command: string, opts: ExecManyOptions, cancels: Set<() => void>): Promise<HostResult> {
  const began = Date.now();
  const collect = opts.collect ?? true;
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let aborted = false;
  const done = (outcome: HostOutcome, fields: Partial<HostResult>): HostResult => ({
    target,
    outcome,
    code: null,
    signal: null,
    stdout: Buffer.concat(out),
    stderr: Buffer.concat(err),
    error: null,
    ms: Date.now() - began,
    ...fields,
  });
  let p: BurrowProcess;
  try {
    const connection = await IpcConnection.connect({ socket: opts.socket ?? socketPath() });
    p = await spawn(target, command, {
      connection,
      connectTimeoutMs: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      ...(opts.env ? { env: opts.env } : {}),
    });
  } catch (e) {
    const b = toBurrowError(e);
    return done('unreachable', { error: { code: b.code, message: b.message } });
  }
  const onData = (stream: 'stdout' | 'stderr', keep: Buffer[]) => (d: Buffer) => {
    if (collect) keep.push(d);
    opts.onOutput?.(target, stream, d);
  };
  p.stdout.on('data', onData('stdout', out));
  p.stderr.on('data', onData('stderr', err));
  p.stdin.end(opts.stdin);

  let grace: NodeJS.Timeout | undefined;
  const onAbort = (): void => {
    aborted = true;
    p.kill('INT');
    grace = setTimeout(() => p.disconnect(), CANCEL_GRACE_MS);
  };
  if (opts.signal?.aborted) onAbort();
  else cancels.add(onAbort);
  try {
    return await new Promise<HostResult>((resolve) => {
      // Output still in the streams arrives before 'end'; the result waits for both.
      const ended = Promise.all([new Promise((r) => p.stdout.once('end', r)), new Promise((r) => p.stderr.once('end', r))]);
      p.once('exit', (code: number | null, signal: string | null) => {
        void ended.then(() => {
          const ok = code === 0 && signal === null;
          resolve(done(aborted && !ok ? 'cancelled' : ok ? 'succeeded' : 'failed', { code, signal }));
        });
      });
      p.once('error', (e: BurrowError) => {
        void ended.then(() => {
          const outcome: HostOutcome = aborted ? 'cancelled' : e.code === ErrorCodes.CommandTimeout ? 'timedout' : 'unreachable';
          resolve(done(outcome, { error: { code: e.code, message: e.message } }));
        });
      });
    });
  } finally {
    clearTimeout(grace);
    cancels.delete(onAbort);
  }
}

/** The exit status of a run, like ssh's and pdsh's: 0 when all succeeded, else the highest remote status; 255 when any host was unreachable. */
export function fleetExitStatus(results: readonly HostResult[]): number {
  let worst = 0;
  for (const r of results) {
    switch (r.outcome) {
      case 'unreachable':
        return 255;
      case 'failed':
        worst = Math.max(worst, r.signal !== null ? signalStatus(r.signal) : (r.code ?? 255));
        break;
      case 'timedout':
        worst = Math.max(worst, 124); // as timeout(1)
        break;
      case 'cancelled':
        worst = Math.max(worst, 128 + osConstants.signals.SIGINT);
        break;
      case 'succeeded':
        break;
    }
  }
  return worst;
}

/** 128+N for signal N, as a shell reports it. */
export function signalStatus(name: string): number {
  const n = (osConstants.signals as Record<string, number>)[`SIG${bareSignal(name)}`];
  return n !== undefined ? 128 + n : 255;
}
