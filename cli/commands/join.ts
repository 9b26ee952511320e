// burrow join CODE [--as ALIAS] [--force]: pair with the machine that ran `burrow invite`. The daemon finds
// it, proves the code and gets authorized; this records the alias, so `burrow ssh ALIAS` works.

import { addAlias, readAliases } from '../../shared/aliases.js';
import { BurrowError, ErrorCodes, printable } from '../../shared/errors.js';
import { formatCode, parseCode } from '../../shared/pair/code.js';
import { isSpent, markSpent, WRONG_CODE } from '../../shared/pair/spent.js';
import { isAliasName, isTicket } from '../../shared/target.js';
import { ticketEndpointId } from '../../shared/ticket.js';
import { ask, usage, type CliContext } from '../context.js';
import { hasFlag, lastValue, scanFlags } from '../flags.js';
import { writeSshKnownHosts } from './sshconfig.js';

const USAGE = 'usage: burrow join CODE [--as ALIAS] [--force]   (CODE from burrow invite on the other machine)';

/** The alias to use: the one asked for, else the host's offered name made valid and unique. */
function aliasFor(offered: string, ticket: string, existing: Record<string, string>): string {
  const base = offered.toLowerCase().replace(/[^a-z0-9_.-]+/g, '-').replace(/^[-.]+|[-.]+$/g, '').slice(0, 40) || 'host';
  const ok = (n: string): boolean => isAliasName(n) && (existing[n] === undefined || existing[n] === ticket);
  if (ok(base)) return base;
  for (let i = 2; i < 100; i++) if (ok(`${base}-${i}`)) return `${base}-${i}`;
  throw new BurrowError(ErrorCodes.BadArgument, `no free alias for ${offered}: use --as`);
}

export async function joinCommand(ctx: CliContext, args: string[]): Promise<number> {
  const given = scanFlags(args, { force: { type: 'boolean' }, as: { type: 'string' } }, () => usage(USAGE));
  if (given.rest.length > 0) usage(USAGE); // a code has no words that look like flags
  const words = given.positionals;
  const force = hasFlag(given, 'force');
  const alias = lastValue(given, 'as');
  if (words.length === 0) usage(USAGE);
  // Checked here so a typo costs nothing: a code that reaches the inviter is its one guess.
  const parsed = parseCode(words.join(' '));
  const code = formatCode(parsed);
  // A code whose PAKE run already failed here is not tried again: a squatter would get a new guess.
  if (!force && isSpent(ctx.state, parsed)) throw new BurrowError(ErrorCodes.PairingFailed, `this code already failed here (${WRONG_CODE}); --force tries it again, which gives whoever answered it another guess`);
  if (alias !== undefined) {
    if (!isAliasName(alias)) usage(`--as ${JSON.stringify(alias)}: use letters, digits, "_", "." and "-"`);
    if (readAliases(ctx.state)[alias] !== undefined) usage(`alias ${alias} already exists: burrow alias remove ${alias}, or choose another with --as`);
  }
  let r: Record<string, unknown>;
  try {
    r = await ask(ctx, { t: 'join', code });
  } catch (err) {
    if (err instanceof BurrowError && err.code === ErrorCodes.PairingFailed && err.message === WRONG_CODE) markSpent(ctx.state, parsed);
    throw err;
  }
  const ticket = String(r['ticket']);
  // The host's offered name is its choice: printed, never raw.
  const name = printable(String(r['name']));
  const endpointId = String(r['endpointId']);
  // The daemon checked this too; the alias must lead to the endpoint the pairing authenticated.
  if (!isTicket(ticket) || ticketEndpointId(ticket) !== endpointId) throw new BurrowError(ErrorCodes.PairingFailed, 'the host offered a ticket for another endpoint');
  const chosen = alias ?? aliasFor(name, ticket, readAliases(ctx.state));
  addAlias(ctx.state, chosen, ticket);
  writeSshKnownHosts(ctx.state);
  process.stdout.write(`paired with ${name} (${endpointId}), found via ${String(r['via'])}\n`);
  process.stdout.write(`alias: ${chosen}   try: burrow ssh ${chosen}\n`);
  return 0;
}
