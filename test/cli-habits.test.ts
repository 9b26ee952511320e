// What an OpenSSH user brings to burrow in the first hour (issue 11): version and help, forward
// cancel by spec, PTY choice, ssh's options and escapes, the session environment, plain error
// messages, and the small rest (status aliases, ssh-config, system install, the agent unit).

import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { renderUnit } from '../cli/commands/system.js';
import type { ForwardStatus } from '../shared/status.js';
import { BURROW, BURROWD, runCli, startDaemon, stopAllDaemons, type RunningDaemon, hostAndAgent } from './helpers/daemon.js';
import { bashInPty } from './helpers/pty.js';
import { freePort } from './helpers/sshd.js';

afterAll(stopAllDaemons);

const VERSION = '0.1.0';
const ERROR_LINE = /^burrow: [A-Z][A-Za-z]+: [^\n]+\n$/;
const temps: string[] = [];
afterAll(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'burrow-habits-'));
  temps.push(d);
  return d;
}

describe('version and help', () => {
  it('burrow --version, -V and version print the version, and the daemon\'s when one answers', async () => {
    const d = tmp();
    const none = { BURROW_SOCKET: join(d, 'none.sock'), BURROW_STATE: join(d, 'state'), BURROW_NO_AUTOSTART: '1' };
    for (const args of [['--version'], ['-V'], ['version']]) {
      const r = await runCli(none, args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toBe(`burrow ${VERSION}\n`);
    }
    const agent = await startDaemon();
    const r = await runCli(agent.cliEnv, ['--version']);
    expect(r.stdout).toBe(`burrow ${VERSION}\nburrowd ${VERSION} (pid ${agent.proc.pid}, ${agent.socket})\n`);
    await agent.stop();
    const daemon = spawnSync(process.execPath, [BURROWD, '--version'], { encoding: 'utf8' });
    expect(daemon.status).toBe(0);
    expect(daemon.stdout).toBe(`burrowd ${VERSION}\n`);
  });

  it('--help or -h after any subcommand prints its usage and exits 0', async () => {
    const env = { BURROW_SOCKET: join(tmp(), 'none.sock'), BURROW_NO_AUTOSTART: '1' };
    const cases = [
      ['ssh', '--help'],
      ['ssh', 'box', '-h'],
      ['exec', '--help'],
      ['cp', '-h'],
      ['forward', 'cancel', '--help'],
      ['forward', '-h'],
      ['status', '--help'],
      ['alias', 'add', '-h'],
      ['host', '--help'],
      ['system', 'install', '--help'],
      ['daemon', '-h'],
      ['info', '-h'],
      ['check', '-h'],
      ['disconnect', '-h'],
      ['proxy', '-h'],
      ['ssh-config', '-h'],
      ['completion', '-h'],
      ['version', '-h'],
    ];
    for (const args of cases) {
      const r = await runCli(env, args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stderr, args.join(' ')).toBe('');
      expect(r.stdout, args.join(' ')).toMatch(new RegExp(`^usage: burrow ${args[0]} `));
    }
  });
});

describe('forward cancel by spec', () => {
  let host: RunningDaemon;
  let agent: RunningDaemon;
  beforeAll(async () => {
    ({ host, agent } = await hostAndAgent());
  });
  const list = async (): Promise<ForwardStatus[]> => JSON.parse((await runCli(agent.cliEnv, ['forward', 'list', '--json'])).stdout) as ForwardStatus[];

  it('accepts the spec as typed at add, and as forward list prints it, with or without the flag', async () => {
    const port = await freePort();
    const spec = `${port}:127.0.0.1:9`;
    const forms = [['-L', spec], [`-L${spec}`], [spec], [`-L 127.0.0.1:${spec}`], [`127.0.0.1:${spec}`], [`-L 127.0.0.1:${spec} to ${host.ticket}`]];
    for (const form of forms) {
      expect((await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-L', spec])).code).toBe(0);
      const listed = (await list()).map((f) => f.forward);
      expect(listed).toEqual([`-L 127.0.0.1:${spec}`]);
      const r = await runCli(agent.cliEnv, ['forward', 'cancel', ...form]);
      expect(r.stdout, form.join(' ')).toBe('cancelled 1 forward\n');
      expect(await list()).toEqual([]);
    }
    const socks = await freePort();
    for (const form of [['-D', String(socks)], [`-D${socks}`], [String(socks)]]) {
      expect((await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-D', String(socks)])).code).toBe(0);
      const r = await runCli(agent.cliEnv, ['forward', 'cancel', ...form]);
      expect(r.stdout, form.join(' ')).toBe('cancelled 1 forward\n');
    }
    const none = await runCli(agent.cliEnv, ['forward', 'cancel', '-L', '1:127.0.0.1:2']);
    expect(none.code).toBe(1);
  });

  it('cancelling an -R Unix-socket forward removes the socket file on the host', async () => {
    const dir = tmp();
    const sock = join(dir, 'remote.sock');
    expect((await runCli(agent.cliEnv, ['forward', 'add', host.ticket, '-R', `${sock}:127.0.0.1:9`])).code).toBe(0);
    expect(existsSync(sock)).toBe(true);
    expect((await runCli(agent.cliEnv, ['forward', 'cancel', '-R', `${sock}:127.0.0.1:9`])).stdout).toBe('cancelled 1 forward\n');
    await vi.waitFor(() => expect(existsSync(sock)).toBe(false), { timeout: 5000, interval: 50 });
    // the connection is still held by the daemon (persist): only the forward went
    expect((await runCli(agent.cliEnv, ['check', host.ticket])).code).toBe(0);
  });
});

describe('burrow ssh like ssh', () => {
  let host: RunningDaemon;
  let agent: RunningDaemon;
  let agentId: string;
  beforeAll(async () => {
    ({ host, agent, agentId } = await hostAndAgent());
  });

  it('a shell with piped stdin, or -T, gets no PTY; -t gets one', async () => {
    const script = 'tty; echo "tty=$SSH_TTY"; exit\n';
    const piped = await runCli(agent.cliEnv, ['ssh', host.ticket], { input: script });
    expect(piped.stdout).toContain('not a tty');
    expect(piped.stdout).toContain('tty=\n');
    const noPty = await runCli(agent.cliEnv, ['ssh', '-T', host.ticket], { input: script });
    expect(noPty.stdout).toContain('not a tty');
    const forced = await runCli(agent.cliEnv, ['ssh', '-t', host.ticket], { input: script });
    expect(forced.stdout).toMatch(/\/dev\/pts\/\d+/);
    expect(forced.stdout).toMatch(/tty=\/dev\/pts\/\d+/);
  });

  it('sends LANG and every LC_*, and the host sets SSH_CONNECTION and SSH_CLIENT with the peer id', async () => {
    const env = { ...agent.cliEnv, LANG: 'C.UTF-8', LC_TIME: 'C', LC_PAPER: 'C.UTF-8', LC_ALL: '' };
    for (const cmd of [['ssh', host.ticket, 'echo'], ['exec', host.ticket, '--', 'echo']]) {
      const r = await runCli(env, [...cmd, '"$LANG|$LC_TIME|$LC_PAPER|$SSH_CLIENT|$SSH_CONNECTION|${SSH_TTY-none}"']);
      expect(r.stdout, cmd[0]).toBe(`C.UTF-8|C|C.UTF-8|${agentId} 0 0|${agentId} 0 ${host.endpointId} 0|none\n`);
    }
  });

  it('takes -p, -l, -v and -o where they mean something, and names an -o it refuses', async () => {
    const ok = await runCli(agent.cliEnv, ['ssh', '-v', '-o', 'ConnectTimeout=5', '-oRequestTTY=no', '-o', 'StrictHostKeyChecking=accept-new', '-o', 'ServerAliveInterval=30', '-l', 'someone', host.ticket, 'echo', 'fine']);
    expect(ok.stdout).toBe('fine\n');
    expect(ok.code).toBe(0);
    expect(ok.stderr).toMatch(/debug1: burrow ssh to someone@endpoint/);
    const refused = await runCli(agent.cliEnv, ['ssh', '-o', 'ForwardAgent=yes', host.ticket, 'true']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(ERROR_LINE);
    expect(refused.stderr).toMatch(/^burrow: BadArgument: burrow ssh: -o ForwardAgent is not supported \(burrow takes ConnectTimeout, /);
    const noCheck = await runCli(agent.cliEnv, ['ssh', '-o', 'StrictHostKeyChecking=no', host.ticket, 'true']);
    expect(noCheck.stderr).toMatch(/StrictHostKeyChecking=no is not supported/);
    const port = await runCli(agent.cliEnv, ['ssh', '-p', '2222', host.ticket, 'true']);
    expect(port.code).toBe(2);
    expect(port.stderr).toMatch(/-p 2222 applies to host\[:port\] targets/);
    // -p on a host name reaches that port: here nothing listens, so the error names it
    const closed = await freePort();
    const tcp = await runCli(agent.cliEnv, ['ssh', '-p', String(closed), '-l', 'nobody', '127.0.0.1', 'true']);
    expect(tcp.stderr).toBe(`burrow: ConnectFailed: connect to 127.0.0.1:${closed}: ECONNREFUSED\n`);
  });

  it('escapes ~?, ~#, ~C and ~& in a terminal, as ssh has them', async () => {
    const port = await freePort();
    const { term, until } = bashInPty(`${BURROW} ssh -L ${port}:127.0.0.1:9 ${host.ticket}; echo "rc=$?"`, agent.cliEnv, 100, 30);
    try {
      term.write('echo READY$((40+2))\r');
      await until(/READY42/);
      term.write('\r~?');
      await until(/Supported escape sequences:[\s\S]*~#/);
      term.write('~#');
      await until(/#0 session: shell on endpoint[\s\S]*#1 forward -L 127\.0\.0\.1:\d+:127\.0\.0\.1:9/);
      term.write('~C');
      await until(/commands are not supported/);
      term.write('echo STILL$((1+1))\r');
      await until(/STILL2/);
      term.write('\r~&');
      await until(/~& \[backgrounded\][\s\S]*rc=0/);
    } finally {
      term.kill();
    }
    // the session's forward is gone with it
    const forwards = JSON.parse((await runCli(agent.cliEnv, ['forward', 'list', '--json'])).stdout) as ForwardStatus[];
    expect(forwards).toEqual([]);
  }, 60_000);
});

describe('plain error messages', () => {
  it('a bare endpoint id with relay and discovery off: no address is known, use a ticket', async () => {
    const { host, agent } = await hostAndAgent();
    const r = await runCli(agent.cliEnv, ['exec', host.endpointId, '--', 'true']);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(ERROR_LINE);
    expect(r.stderr).toMatch(new RegExp(`^burrow: ConnectFailed: no address is known for endpoint ${host.endpointId} .*ticket`));
    expect(r.stderr).not.toMatch(/\.rs\b|::|cargo|iroh/);
  });

  it('an unknown alias: no alias or host by that name', async () => {
    const agent = await startDaemon();
    for (const name of ['nosuchbox', 'nosuchbox.burrow']) {
      const r = await runCli(agent.cliEnv, ['exec', name, '--', 'true']);
      expect(r.stderr).toBe('burrow: UnknownTarget: no alias or host named "nosuchbox" (burrow alias list shows the aliases)\n');
    }
  });

  it('a client the host does not list hears how to authorize it', async () => {
    const agent = await startDaemon();
    const agentId = (await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim();
    const host = await startDaemon({ args: ['--host'], endpoints: ['0'.repeat(64)] });
    const r = await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'true']);
    expect(r.stderr).toBe(`burrow: PeerRefused: this host has not authorized endpoint ${agentId}: on the host run \`burrow host authorize ${agentId}\`\n`);
  });

  it('ConnectTimeout states the real wait', async () => {
    const { host, agent } = await hostAndAgent();
    const ticket = host.ticket;
    await host.stop();
    const r = await runCli(agent.cliEnv, ['ssh', '-o', 'ConnectTimeout=1', ticket, 'true']);
    expect(r.stderr).toMatch(ERROR_LINE);
    expect(r.stderr).toMatch(/^burrow: ConnectTimeout: no connection to endpoint\S+ within 1 s/);
    expect(r.ms).toBeGreaterThanOrEqual(1000);
    expect(r.ms).toBeLessThan(8000);
  });
});

describe('the small rest', () => {
  it('burrow status names the alias of a connection made by ticket', async () => {
    const { host, agent } = await hostAndAgent();
    expect((await runCli(agent.cliEnv, ['alias', 'add', 'box', host.ticket])).code).toBe(0);
    expect((await runCli(agent.cliEnv, ['exec', host.ticket, '--', 'true'])).code).toBe(0);
    const text = await runCli(agent.cliEnv, ['status']);
    expect(text.stdout).toMatch(/\nbox \(endpoint\S*\.\.\.\)\t/);
    const json = JSON.parse((await runCli(agent.cliEnv, ['status', '--json'])).stdout) as { connections: { alias?: string }[] };
    expect(json.connections[0]?.alias).toBe('box');
  });

  it('burrow ssh-config makes ~/.ssh (0700) when there is none', async () => {
    const home = tmp();
    const r = await runCli({ HOME: home, BURROW_STATE: join(home, 'state'), BURROW_NO_AUTOSTART: '1' }, ['ssh-config']);
    expect(r.code).toBe(0);
    expect(statSync(join(home, '.ssh')).mode & 0o777).toBe(0o700);
  });

  it('burrow system install without a systemd user bus says so in one line and leaves no units', async () => {
    const d = tmp();
    const units = join(d, 'units');
    mkdirSync(join(d, 'run'), { mode: 0o700 });
    const env: Record<string, string> = { HOME: d, BURROW_SYSTEMD_DIR: units, XDG_RUNTIME_DIR: join(d, 'run'), DBUS_SESSION_BUS_ADDRESS: `unix:path=${join(d, 'run', 'no-bus')}` };
    const r = await runCli(env, ['system', 'install', '--user']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(ERROR_LINE);
    expect(r.stderr).toMatch(/^burrow: IoError: no systemd user bus here/);
    expect(r.stdout).toBe('');
    expect(existsSync(units)).toBe(false);
  });

  it("the agent's user unit has no PrivateTmp", () => {
    expect(renderUnit('burrow-agent.service')).not.toMatch(/^PrivateTmp/m);
  });
});


describe('burrowd --help', () => {
  it('prints the whole usage on stdout and exits 0', async () => {
    const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
      const p = spawn(process.execPath, [BURROWD, '--help']);
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      p.once('close', (code) => resolve({ code, out, err }));
    });
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/^usage: burrowd /);
    expect(r.out).toContain('\n               [--session-cap N]'); // continuation lines keep their indentation
  });
});
