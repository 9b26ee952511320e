// burrow alias add|list|remove: the address book in the state dir, edited directly.

import { addAlias, readAliases, removeAlias } from '../../shared/aliases.js';
import { usage, type CliContext } from '../context.js';
import { writeSshKnownHosts } from './sshconfig.js';

export function aliasCommand(ctx: CliContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case 'add': {
      const [name, target, ...more] = rest;
      if (name === undefined || target === undefined || more.length > 0) usage('usage: burrow alias add NAME TICKET|ENDPOINT_ID|[user@]host[:port]');
      addAlias(ctx.state, name, target);
      writeSshKnownHosts(ctx.state); // keep ssh NAME.burrow's host keys current
      process.stdout.write(`${name} -> ${target.length > 60 ? `${target.slice(0, 57)}...` : target}\n`);
      return Promise.resolve(0);
    }
    case 'list': {
      const all = readAliases(ctx.state);
      if (rest.includes('--json')) process.stdout.write(JSON.stringify(all, null, 2) + '\n');
      else for (const [k, v] of Object.entries(all)) process.stdout.write(`${k}\t${v}\n`);
      return Promise.resolve(0);
    }
    case 'remove': {
      const [name, ...more] = rest;
      if (name === undefined || more.length > 0) usage('usage: burrow alias remove NAME');
      if (removeAlias(ctx.state, name)) {
        writeSshKnownHosts(ctx.state);
        return Promise.resolve(0);
      }
      process.stderr.write(`burrow: no alias named ${name}\n`);
      return Promise.resolve(1);
    }
    default:
      return usage('usage: burrow alias add NAME TARGET | alias list [--json] | alias remove NAME');
  }
}
