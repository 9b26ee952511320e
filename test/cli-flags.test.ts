// The CLI's flag grammar (cli/flags.ts over node:util.parseArgs) as ssh users type it.

import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../shared/errors.js';
import { parseSshArgs } from '../cli/commands/session.js';
import { parseFleetArgs } from '../cli/commands/fleet.js';

const refused = (f: () => unknown, message: string): void => {
  expect(f).toThrow(expect.objectContaining({ code: ErrorCodes.BadArgument, message }));
};

describe('ssh flags', () => {
  it('groups switches and takes values attached or as the next word, as OpenSSH does', () => {
    expect(parseSshArgs(['-tt', 'box'])).toMatchObject({ target: 'box', forcePty: true, rest: [] });
    expect(parseSshArgs(['-NL', '8080:host:80', 'box'])).toMatchObject({ target: 'box', noCommand: true, forwards: [{ type: 'local', spec: '8080:host:80' }] });
    expect(parseSshArgs(['-p22', '-oConnectTimeout=3', 'box'])).toMatchObject({ target: 'box', port: 22, connectTimeout: 3 });
    expect(parseSshArgs(['-o', 'User=alice', '-l', 'bob', '-R8022:localhost:22', '-D', '1080', 'box'])).toMatchObject({
      user: 'bob',
      forwards: [
        { type: 'remote', spec: '8022:localhost:22' },
        { type: 'dynamic', spec: '1080' },
      ],
    });
    expect(parseSshArgs(['-t', '-T', 'box']).forcePty).toBe(false); // the last one wins
  });

  it('takes options after TARGET; the first word after it starts the command, whose flags are its own', () => {
    expect(parseSshArgs(['box', '-t', 'ls', '-la', '--', '-x'])).toMatchObject({ target: 'box', forcePty: true, rest: ['ls', '-la', '--', '-x'] });
    expect(parseSshArgs(['box', '--', '-t'])).toMatchObject({ target: 'box', rest: ['-t'] });
    expect(parseSshArgs(['box', '--session', 'work', '--reconnect-timeout', '30'])).toMatchObject({ session: 'work', sessionFlags: { reconnectTimeoutMs: 30_000 } });
    expect(parseSshArgs(['box', '-h', '-Z']).help).toBe(true);
  });

  it('names what it refuses', () => {
    refused(() => parseSshArgs(['box', '-Z']), 'burrow ssh: unknown option -Z');
    refused(() => parseSshArgs(['box', '-p']), 'burrow ssh: -p needs a value');
    refused(() => parseSshArgs(['--session']), 'burrow ssh: --session needs a value');
    refused(() => parseSshArgs(['--t', 'box']), 'burrow ssh: unknown option --t');
    refused(() => parseSshArgs(['-tx', 'box']), 'burrow ssh: unknown option -x');
  });
});

describe('exec @GROUP flags', () => {
  it('takes options before or after the targets, --x=v or --x v, up to -- or the command', () => {
    expect(parseFleetArgs(['--fanout=4', '@web', '--json', '-n', 'uptime', '-p'])).toEqual({
      spec: '@web',
      command: 'uptime -p',
      flags: { fanout: 4, mode: 'json', noStdin: true },
    });
    expect(parseFleetArgs(['@web', '--timeout', '1.5', '--', '-x']).flags.timeoutMs).toBe(1500);
    refused(() => parseFleetArgs(['@web', '--fanout']), 'burrow exec: --fanout needs a value');
    refused(() => parseFleetArgs(['@web', '--gather', '--json', '--', 'x']), 'burrow exec: --gather and --json do not go together');
  });
});
