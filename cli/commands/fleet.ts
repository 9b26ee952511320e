// burrow exec @GROUP[,@G2,box] [options] -- CMD: one command on many hosts through the daemon's
// pool (shared/fleet.ts), output per host as it arrives, gathered like clubak, or as JSON lines,
// and always a summary on stderr. Exit: 0 when all succeeded, else the highest remote status,
// 255 when any host was unreachable.

import { closeSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { execMany, fleetExitStatus, DEFAULT_FANOUT, type HostResult } from '../../shared/fleet.js';
import { connectDaemon, endOnClosedStdout, usage, type CliContext } from '../context.js';
import { scanFlags } from '../flags.js';

const USAGE = 'usage: burrow exec @GROUP[,@G2,TARGET...] [--fanout N] [--connect-timeout S] [--timeout S] [--gather|--json] [--log-dir DIR] [-n] -- CMD...';
// stdin is read whole before the first host starts (every host gets the same bytes).
const MAX_STDIN = 64 * 1024 * 1024;

interface FleetFlags {
  fanout: number;
  connectTimeoutMs?: number;
  timeoutMs?: number;
  mode: 'lines' | 'gather' | 'json';
  logDir?: string;
  noStdin: boolean;
}

const FLEET_FLAGS = {
  fanout: { type: 'string' },
  'connect-timeout': { type: 'string' },
  timeout: { type: 'string' },
  'log-dir': { type: 'string' },
  gather: { type: 'boolean' },
  json: { type: 'boolean' },
  n: { type: 'boolean', short: 'n' },
} as const;

function seconds(flag: string, v: string): number {
  const n = Number(v);
  if (!/^\d+(\.\d+)?$/.test(v) || !(n > 0)) usage(`burrow exec: ${flag} takes seconds (> 0), not ${JSON.stringify(v)}`);
  return Math.round(n * 1000);
}

/** Options may come before or after the targets; `--` (or the first plain word after them) starts the command. */
export function parseFleetArgs(args: readonly string[]): { spec: string; command: string; flags: FleetFlags } {
  const flags: FleetFlags = { fanout: DEFAULT_FANOUT, mode: 'lines', noStdin: false };
  const given = scanFlags(args, FLEET_FLAGS, (m) => usage(m.startsWith('unknown option') ? `burrow exec: ${m}\n${USAGE}` : `burrow exec: ${m}`), { stopAt: 2 });
  for (const { raw, name, value = '' } of given.flags) {
    switch (name) {
      case 'fanout': {
        const n = Number(value);
        if (!/^\d+$/.test(value) || n < 1) usage(`burrow exec: --fanout takes a whole number >= 1, not ${JSON.stringify(value)}`);
        flags.fanout = n;
        break;
      }
      case 'connect-timeout':
        flags.connectTimeoutMs = seconds(raw, value);
        break;
      case 'timeout':
        flags.timeoutMs = seconds(raw, value);
        break;
      case 'log-dir':
        flags.logDir = value;
        break;
      case 'gather':
      case 'json':
        if (flags.mode !== 'lines') usage('burrow exec: --gather and --json do not go together');
        flags.mode = name;
        break;
      case 'n':
        flags.noStdin = true;
        break;
    }
  }
  const [spec] = given.positionals;
  const words = given.rest;
  if (spec === undefined || words.length === 0) usage(USAGE);
  return { spec, command: words.join(' '), flags };
}

/** Prefix every line with `NAME: `; a line cut between chunks waits for its end. */
class LinePrefixer {
  private readonly partial = new Map<string, Buffer>();

  constructor(private readonly write: (b: Buffer) => void) {}

  push(name: string, data: Buffer): void {
    let buf = this.partial.has(name) ? Buffer.concat([this.partial.get(name) as Buffer, data]) : data;
    const last = buf.lastIndexOf(0x0a);
    if (last < 0) {
      this.partial.set(name, buf);
      return;
    }
    const whole = buf.subarray(0, last);
    buf = buf.subarray(last + 1);
    if (buf.length > 0) this.partial.set(name, Buffer.from(buf));
    else this.partial.delete(name);
    const prefix = `${name}: `;
    this.write(Buffer.from(whole.toString('utf8').split('\n').map((l) => prefix + l + '\n').join('')));
  }

  /** The host ended: its last line, even without a newline. */
  flush(name: string): void {
    const rest = this.partial.get(name);
    if (rest === undefined) return;
    this.partial.delete(name);
    this.write(Buffer.from(`${name}: ${rest.toString('utf8')}\n`));
  }
}

/** Hosts whose output is byte for byte the same, under one `==> a,b,c <==` header, like clubak. */
export function gather(results: readonly HostResult[], stream: 'stdout' | 'stderr'): string {
  const groups = new Map<string, string[]>();
  for (const r of results) {
    const text = r[stream].toString('utf8');
    if (text === '') continue;
    const names = groups.get(text);
    if (names) names.push(r.target);
    else groups.set(text, [r.target]);
  }
  let out = '';
  for (const [text, names] of groups) out += `==> ${names.join(',')} <==\n${text}${text.endsWith('\n') ? '' : '\n'}`;
  return out;
}

/** The line for `--json`: the fields the issue names, output as text. */
export function jsonLine(r: HostResult): string {
  return JSON.stringify({ target: r.target, code: r.code, signal: r.signal, stdout: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8'), error: r.error, ms: r.ms }) + '\n';
}

/** The end-of-run summary: counts, then each non-empty list named. */
export function summary(results: readonly HostResult[]): string {
  const by = (o: HostResult['outcome']): HostResult[] => results.filter((r) => r.outcome === o);
  const ok = by('succeeded');
  const failed = by('failed');
  const timedOut = by('timedout');
  const unreachable = by('unreachable');
  const cancelled = by('cancelled');
  const counts = [`${ok.length} succeeded`, `${failed.length} failed`, `${timedOut.length} timed out`, `${unreachable.length} unreachable`];
  if (cancelled.length > 0) counts.push(`${cancelled.length} cancelled`);
  const lines = [`burrow: ${results.length} host${results.length === 1 ? '' : 's'}: ${counts.join(', ')}`];
  const list = (label: string, rs: HostResult[], detail?: (r: HostResult) => string): void => {
    if (rs.length > 0) lines.push(`  ${label}: ${rs.map((r) => r.target + (detail ? ` (${detail(r)})` : '')).join(', ')}`);
  };
  list('succeeded', ok);
  list('failed', failed, (r) => (r.signal !== null ? `signal ${r.signal}` : `exit ${r.code ?? '?'}`));
  list('timed out', timedOut);
  list('unreachable', unreachable, (r) => `${r.error?.code ?? '?'}: ${r.error?.message ?? ''}`);
  list('cancelled', cancelled);
  return lines.join('\n') + '\n';
}

/** `--log-dir`: NAME.stdout and NAME.stderr as output arrives, succeeded and failed lists at the end. */
class LogDir {
  private readonly fds = new Map<string, number>();

  constructor(private readonly dir: string) {
    mkdirSync(dir, { recursive: true });
  }

  private file(name: string, stream: string): string {
    return join(this.dir, `${name.replace(/[^A-Za-z0-9_.@:-]/g, '_').replace(/^\./, '_')}.${stream}`);
  }

  write(name: string, stream: 'stdout' | 'stderr', data: Buffer): void {
    const key = `${name}\0${stream}`;
    let fd = this.fds.get(key);
    if (fd === undefined) {
      fd = openSync(this.file(name, stream), 'w', 0o600);
      this.fds.set(key, fd);
    }
    writeSync(fd, data);
  }

  /** A host ended: close its files, and make both exist even when it printed nothing. */
  done(name: string): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      const key = `${name}\0${stream}`;
      const fd = this.fds.get(key);
      if (fd !== undefined) {
        closeSync(fd);
        this.fds.delete(key);
      } else writeFileSync(this.file(name, stream), '', { mode: 0o600 });
    }
  }

  finish(results: readonly HostResult[]): void {
    const names = (ok: boolean): string => results.filter((r) => (r.outcome === 'succeeded') === ok).map((r) => r.target + '\n').join('');
    writeFileSync(join(this.dir, 'succeeded'), names(true), { mode: 0o600 });
    writeFileSync(join(this.dir, 'failed'), names(false), { mode: 0o600 });
  }
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of process.stdin) {
    const b = c as Buffer;
    size += b.length;
    if (size > MAX_STDIN) throw new BurrowError(ErrorCodes.BadArgument, `stdin is over ${MAX_STDIN / 1024 / 1024} MiB: every host gets a copy, so it is held in memory; copy the file over first (burrow cp)`);
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

export async function fleetExecCommand(ctx: CliContext, args: string[]): Promise<number> {
  const { spec, command, flags } = parseFleetArgs(args);
  // A terminal is not read: typed input cannot go to many hosts at once (-n says the same for a pipe).
  const stdin = flags.noStdin || process.stdin.isTTY === true ? undefined : await readStdin();
  (await connectDaemon(ctx)).close(); // starts a daemon when none runs, before the many sessions
  endOnClosedStdout();
  const lines = new LinePrefixer((b) => process.stdout.write(b));
  const errLines = new LinePrefixer((b) => process.stderr.write(b));
  const log = flags.logDir !== undefined ? new LogDir(flags.logDir) : undefined;
  const abort = new AbortController();
  let finished: HostResult[] = [];
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (interrupts++ === 0) {
      process.stderr.write(`burrow: ${sig}: cancelling what still runs (again to quit at once)\n`);
      abort.abort();
      return;
    }
    process.stderr.write(summary(finished));
    process.exit(130);
  };
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  for (const s of signals) process.on(s, onSignal);
  try {
    const results = await execMany(spec, command, {
      socket: ctx.socket,
      state: ctx.state,
      fanout: flags.fanout,
      ...(flags.connectTimeoutMs !== undefined ? { connectTimeoutMs: flags.connectTimeoutMs } : {}),
      ...(flags.timeoutMs !== undefined ? { timeoutMs: flags.timeoutMs } : {}),
      ...(stdin !== undefined ? { stdin } : {}),
      collect: flags.mode !== 'lines',
      signal: abort.signal,
      onOutput: (name, stream, data) => {
        log?.write(name, stream, data);
        if (flags.mode === 'lines') (stream === 'stdout' ? lines : errLines).push(name, data);
      },
      onResult: (r) => {
        finished.push(r);
        log?.done(r.target);
        if (flags.mode === 'lines') {
          lines.flush(r.target);
          errLines.flush(r.target);
        } else if (flags.mode === 'json') process.stdout.write(jsonLine(r));
      },
    });
    finished = results;
    if (flags.mode === 'gather') {
      process.stdout.write(gather(results, 'stdout'));
      process.stderr.write(gather(results, 'stderr'));
    }
    log?.finish(results);
    process.stderr.write(summary(results));
    return fleetExitStatus(results);
  } finally {
    for (const s of signals) process.off(s, onSignal);
  }
}
