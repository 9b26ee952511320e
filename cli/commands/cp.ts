// burrow cp [-r] [-p] [-L] [--resume] [--json] SRC... DST, with TARGET:path on one side. The daemon
// moves the bytes; this prints progress: a bar on a terminal, nothing on a pipe, JSON with --json.

import { resolve } from 'node:path';
import { BurrowError, ErrorCodes, exitCodeFor, isErrorCode, printable } from '../../shared/errors.js';
import type { Frame } from '../../shared/ipc/frames.js';
import { parseCopySpec } from '../../shared/target.js';
import { connectDaemon, usage, type CliContext } from '../context.js';
import { hasFlag, scanFlags } from '../flags.js';
import { humanBytes } from '../format.js';

const CP_FLAGS = {
  r: { type: 'boolean', short: 'r' },
  p: { type: 'boolean', short: 'p' },
  L: { type: 'boolean', short: 'L' },
  resume: { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

const USAGE = 'usage: burrow cp [-r] [-p] [-L] [--resume] [--json] [--] SRC... DST   (TARGET:path on one side; several SRC go into the directory DST)';

/** One JSON line; DEL and C1 controls, which JSON.stringify leaves raw, escaped as \u00NN (same value). */
const jsonLine = (v: unknown): string => `${JSON.stringify(v).replace(/[\x7f-\x9f]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`)}\n`;

export async function cpCommand(ctx: CliContext, args: string[]): Promise<number> {
  const given = scanFlags(args, CP_FLAGS, (m) => usage(`burrow cp: ${m}\n${USAGE}`));
  const has = (name: keyof typeof CP_FLAGS): boolean => hasFlag(given, name);
  const flags = { recursive: has('r'), preserve: has('p'), resume: has('resume'), follow: has('L'), json: has('json') };
  const paths = [...given.positionals, ...given.rest]; // after `--`, paths even if they look like `-x`
  const dstText = paths.pop();
  if (dstText === undefined || paths.length === 0) usage(USAGE);
  const dst = parseCopySpec(dstText);
  if (paths.some((p) => parseCopySpec(p).kind === dst.kind)) usage(`burrow cp: the sources must be on one side and the destination on the other (TARGET:path on one side only)\n${USAGE}`);
  // The daemon has its own working directory: local paths travel absolute, a trailing / kept.
  const abs = (s: string): string => (parseCopySpec(s).kind === 'local' ? resolve(s) + (s.endsWith('/') && s !== '/' ? '/' : '') : s);
  const srcs = paths.map(abs);

  const conn = await connectDaemon(ctx);
  const bar = !flags.json && process.stderr.isTTY === true;
  const began = Date.now();
  let lastLine = '';
  return new Promise<number>((done) => {
    let finished = false;
    // Everything below reaching the terminal may carry a remote's names or a server's words.
    const finish = (code: number, message?: string): void => {
      if (finished) return;
      finished = true;
      if (bar && lastLine) process.stderr.write('\n');
      if (message) process.stderr.write(printable(message));
      conn.close();
      done(code);
    };
    conn.on('frame', (f: Frame) => {
      if (f.t === 'progress') {
        if (flags.json) process.stdout.write(jsonLine({ event: 'progress', path: f.path, bytes: f.bytes, size: f.size, files: f.files, totalBytes: f.totalBytes }));
        else if (bar) {
          const secs = Math.max(0.001, (Date.now() - began) / 1000);
          const rate = f.totalBytes / secs;
          const pct = f.size > 0 ? Math.floor((100 * f.bytes) / f.size) : 100;
          const eta = rate > 0 && f.size > f.bytes ? `${Math.ceil((f.size - f.bytes) / rate)}s` : '--';
          const path = printable(f.path, false);
          const name = path.length > 40 ? `…${path.slice(-39)}` : path;
          lastLine = `${name}  ${String(pct).padStart(3)}%  ${humanBytes(f.bytes)}/${humanBytes(f.size)}  ${humanBytes(rate)}/s  ETA ${eta}`;
          process.stderr.write(`\r${lastLine.padEnd(78)}`);
        }
      } else if (f.t === 'stderr') {
        // A warning or the failure of one of several sources; the copy goes on.
        const text = Buffer.from(f.data).toString('utf8');
        const line = printable(text);
        if (flags.json) process.stdout.write(jsonLine({ event: 'warning', message: text.trimEnd() }));
        else process.stderr.write(bar && lastLine ? `\r${' '.repeat(78)}\r${line}` : line);
      } else if (f.t === 'result') {
        if (flags.json) process.stdout.write(jsonLine({ event: 'done', ...f.value }));
        // Like cp and scp: something skipped or failed makes the status 1, though the rest was copied.
        const v = f.value as { skipped?: unknown; failed?: unknown };
        finish(Number(v.skipped ?? 0) + Number(v.failed ?? 0) > 0 ? 1 : 0);
      } else if (f.t === 'error') {
        const code = isErrorCode(f.code) ? f.code : ErrorCodes.Internal;
        if (flags.json) process.stdout.write(jsonLine({ event: 'error', code, message: f.message }));
        finish(exitCodeFor(code), `burrow: ${code}: ${f.message}\n`);
      } else finish(255, `burrow: ${ErrorCodes.UnexpectedFrame}: daemon sent ${f.t} during cp\n`);
    });
    conn.on('close', (err?: BurrowError) => finish(255, `burrow: ${ErrorCodes.Disconnected}: ${err ? err.message : 'the daemon closed the session'}\n`));
    conn.send({
      t: 'cp',
      src: srcs[0]!,
      dst: abs(dstText),
      ...(srcs.length > 1 ? { srcs } : {}),
      ...(flags.recursive ? { recursive: true } : {}),
      ...(flags.preserve ? { preserve: true } : {}),
      ...(flags.resume ? { resume: true } : {}),
      ...(flags.follow ? { follow: true } : {}),
    });
  });
}
