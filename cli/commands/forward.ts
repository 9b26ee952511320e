// burrow forward add|list|cancel: forwards held by the daemon (like `ssh -O forward`), and the
// session-scoped forwards of `burrow ssh -L/-R/-D`, which live as long as their connection.

import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import type { IpcConnection } from '../../shared/ipc/client.js';
import { errorFromFrame, resultValue, type Frame } from '../../shared/ipc/frames.js';
import type { ForwardStatus } from '../../shared/status.js';
import { ask, connectDaemon, usage, type CliContext } from '../context.js';
import { scanFlags } from '../flags.js';

export type ForwardType = 'local' | 'remote' | 'dynamic';
export const FORWARD_FLAGS: Record<string, ForwardType> = { '-L': 'local', '-R': 'remote', '-D': 'dynamic' };
const SPEC_FLAGS = { L: { type: 'string', short: 'L' }, R: { type: 'string', short: 'R' }, D: { type: 'string', short: 'D' } } as const;

/** Ask for a forward; without detach the returned connection holds it (close it to cancel). */
export async function requestForward(ctx: CliContext, target: string, type: ForwardType, spec: string, detach: boolean): Promise<{ conn: IpcConnection; status: ForwardStatus }> {
  const conn = await connectDaemon(ctx);
  return new Promise((resolve, reject) => {
    const onFrame = (f: Frame): void => {
      conn.off('frame', onFrame);
      if (f.t === 'result') resolve({ conn, status: resultValue('forward', f) });
      else if (f.t === 'error') reject(errorFromFrame(f));
      else reject(new BurrowError(ErrorCodes.UnexpectedFrame, `daemon answered ${f.t} to forward`));
    };
    conn.on('frame', onFrame);
    conn.once('close', (err?: BurrowError) => reject(err ?? new BurrowError(ErrorCodes.Disconnected, 'daemon closed the connection')));
    conn.send({ t: 'forward', target, type, spec, ...(detach ? { detach: true } : {}) });
  });
}

export function describeForward(s: ForwardStatus): string {
  const port = s.boundPort !== undefined && s.forward.startsWith('-R') && / \S*:0:/.test(s.forward) ? ` (host chose port ${s.boundPort})` : '';
  return `${s.forward}${port} to ${s.target}`;
}

export async function forwardCommand(ctx: CliContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case 'add': {
      const ADD_USAGE = 'usage: burrow forward add TARGET -L|-R|-D SPEC [...]';
      const notAForward = (word: string): never => usage(`burrow forward add: expected -L, -R or -D, got ${word}`);
      const given = scanFlags(rest, SPEC_FLAGS, (m) => (m.startsWith('unknown option ') ? notAForward(m.slice('unknown option '.length)) : usage(ADD_USAGE)));
      const [target, ...extra] = [...given.positionals, ...given.rest];
      if (target === undefined) usage(ADD_USAGE);
      if (extra[0] !== undefined) notAForward(extra[0]);
      if (given.flags.length === 0) usage(ADD_USAGE);
      for (const { raw, value } of given.flags) {
        const { conn, status } = await requestForward(ctx, target, FORWARD_FLAGS[raw] as ForwardType, value as string, true);
        conn.close();
        process.stdout.write(`forward ${status.id}: ${describeForward(status)}\n`);
      }
      return 0;
    }
    case 'list': {
      const r = await ask(ctx, { t: 'forwards' });
      const list = (r['forwards'] ?? []) as ForwardStatus[];
      if (rest.includes('--json')) process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      else if (list.length === 0) process.stdout.write('no forwards\n');
      else
        for (const f of list)
          process.stdout.write(
            `${f.id}\t${describeForward(f)}\t${f.state}\t${f.detached ? 'held by daemon' : 'held by a session'}\t${f.connections} connections (${f.active} open)\t${f.bytesIn}B in ${f.bytesOut}B out${f.lastError ? `\tlast error: ${f.lastError}` : ''}\n`,
          );
      return 0;
    }
    case 'cancel': {
      const which = rest.join(' ');
      if (which === '') usage('usage: burrow forward cancel ID|SPEC');
      const r = await ask(ctx, { t: 'forward_cancel', which });
      const n = Number(r['cancelled'] ?? 0);
      if (n === 0) {
        process.stderr.write(`burrow: no forward matches ${which}\n`);
        return 1;
      }
      process.stdout.write(`cancelled ${n} forward${n === 1 ? '' : 's'}\n`);
      return 0;
    }
    default:
      return usage('usage: burrow forward add TARGET -L|-R|-D SPEC | forward list [--json] | forward cancel ID|SPEC');
  }
}
