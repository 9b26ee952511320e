// burrow invite [--as NAME] [--ttl S] [--detach] | invite list [--json] | invite cancel [NAMEPLATE]:
// a one-use pairing code served by this machine's (host) daemon. Without --detach the invitation
// lives as long as this command: it ends when someone joins, the code is burned, or it expires.

import { BurrowError, ErrorCodes, printable } from '../../shared/errors.js';
import { errorFromFrame, type Frame } from '../../shared/ipc/frames.js';
import { ask, connectDaemon, usage, type CliContext } from '../context.js';
import { scanFlags } from '../flags.js';

const USAGE = 'usage: burrow invite [--as NAME] [--ttl SECONDS] [--detach] | invite list [--json] | invite cancel [NAMEPLATE]';

interface InvitationView {
  nameplate: string;
  name: string;
  state: string;
  expiresAt: number;
  detached: boolean;
  joinedBy?: { endpointId: string; name: string };
}

function parseOpen(args: string[]): { name?: string; ttl?: number; detach: boolean } {
  const given = scanFlags(args, { detach: { type: 'boolean' }, as: { type: 'string' }, ttl: { type: 'string' } }, (m) => usage(m.endsWith('needs a value') ? `${m}; ${USAGE}` : USAGE));
  if (given.positionals.length > 0 || given.rest.length > 0) usage(USAGE);
  const out: { name?: string; ttl?: number; detach: boolean } = { detach: false };
  for (const f of given.flags) {
    if (f.name === 'detach') out.detach = true;
    else if (f.name === 'as') out.name = f.value;
    else if (!/^\d+$/.test(f.value ?? '')) usage(`--ttl: ${JSON.stringify(f.value)} is not a number of seconds`);
    else out.ttl = Number(f.value);
  }
  return out;
}

const inMinutes = (at: number): string => {
  const s = Math.max(0, Math.round((at - Date.now()) / 1000));
  return s >= 120 ? `${Math.round(s / 60)} min` : `${s} s`;
};

export async function inviteCommand(ctx: CliContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  if (verb === 'list') {
    const r = await ask(ctx, { t: 'invitations' });
    const list = (r['invitations'] ?? []) as InvitationView[];
    if (rest.includes('--json')) process.stdout.write(JSON.stringify(list, null, 2) + '\n');
    else if (list.length === 0) process.stdout.write('no open invitations\n');
    else for (const i of list) process.stdout.write(`${i.nameplate}\t${printable(i.name)}\t${i.state}\texpires in ${inMinutes(i.expiresAt)}\t${i.detached ? 'held by daemon' : 'held by burrow invite'}\n`);
    return 0;
  }
  if (verb === 'cancel') {
    if (rest.length > 1) usage(USAGE);
    const r = await ask(ctx, { t: 'invite_cancel', ...(rest[0] !== undefined ? { which: rest[0] } : {}) });
    const n = Number(r['cancelled'] ?? 0);
    if (n === 0) {
      process.stderr.write(`burrow: no open invitation${rest[0] !== undefined ? ` ${rest[0]}` : 's'}\n`);
      return 1;
    }
    process.stdout.write(`cancelled ${n} invitation${n === 1 ? '' : 's'}\n`);
    return 0;
  }
  const opts = parseOpen(args);
  const conn = await connectDaemon(ctx);
  return new Promise<number>((resolve, reject) => {
    conn.on('frame', (f: Frame) => {
      if (f.t === 'invitation') {
        process.stdout.write(`code: ${f.code}\n`);
        process.stdout.write(`on the other machine run: burrow join ${f.code}   (one use, expires in ${inMinutes(f.expiresAt)})\n`);
        if (f.where) process.stdout.write(`reachable through ${f.where}\n`);
        if (opts.detach) {
          process.stdout.write('the daemon holds this invitation: burrow invite list | burrow invite cancel ' + f.nameplate + '\n');
          conn.close();
          resolve(0);
        }
      } else if (f.t === 'stderr') {
        process.stderr.write(f.data);
      } else if (f.t === 'result') {
        const by = f.value['joinedBy'] as { endpointId: string; name: string } | undefined;
        // The joiner chose its name: printed, never raw.
        process.stdout.write(`joined: ${printable(by?.name ?? '?')} (${printable(by?.endpointId ?? '?')}) is authorized\n`);
        conn.close();
        resolve(0);
      } else if (f.t === 'error') {
        reject(errorFromFrame(f));
      } else reject(new BurrowError(ErrorCodes.UnexpectedFrame, `daemon answered ${f.t} to invite`));
    });
    conn.once('close', (err?: BurrowError) => reject(err ?? new BurrowError(ErrorCodes.Disconnected, 'daemon closed the connection')));
    conn.send({ t: 'invite', ...(opts.name !== undefined ? { name: opts.name } : {}), ...(opts.ttl !== undefined ? { ttl: opts.ttl } : {}), ...(opts.detach ? { detach: true } : {}) });
  });
}
