// burrow group add|remove|list: named lists of targets in the address book, used as @NAME.

import { addToGroup, readGroups, removeFromGroup } from '../../shared/groups.js';
import { usage, type CliContext } from '../context.js';

const USAGE = 'usage: burrow group add NAME TARGET... | group remove NAME [TARGET...] | group list [--json]';

export function groupCommand(ctx: CliContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case 'add': {
      const [name, ...members] = rest;
      if (name === undefined || members.length === 0) usage('usage: burrow group add NAME TARGET|@GROUP...');
      const list = addToGroup(ctx.state, name, members);
      process.stdout.write(`@${name}: ${list.length} member${list.length === 1 ? '' : 's'}\n`);
      return Promise.resolve(0);
    }
    case 'remove': {
      const [name, ...members] = rest;
      if (name === undefined) usage('usage: burrow group remove NAME [TARGET...]');
      const left = removeFromGroup(ctx.state, name, members);
      process.stdout.write(left === undefined ? `removed group ${name}\n` : `@${name}: ${left.length} member${left.length === 1 ? '' : 's'}\n`);
      return Promise.resolve(0);
    }
    case 'list': {
      if (rest.some((a) => a !== '--json')) usage('usage: burrow group list [--json]');
      const all = readGroups(ctx.state);
      if (rest.includes('--json')) process.stdout.write(JSON.stringify(all, null, 2) + '\n');
      else for (const [k, v] of Object.entries(all)) process.stdout.write(`${k}\t${v.join(',')}\n`);
      return Promise.resolve(0);
    }
    default:
      return usage(USAGE);
  }
}
