// The native client (cli/native/burrow.c) serves `exec`, `proxy` and session attach and hands
// everything else to the Node CLI. Both must behave the same: each case here runs through
// bin/burrow (native) and through the Node CLI alone, against a real host and agent daemon or a
// stand-in daemon that answers with chosen frames, and the results must agree.

import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as nodePty from '@lydell/node-pty';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, exitCodeFor, isErrorCode } from '../shared/errors.js';
import { FrameDecoder, encodeFrame } from '../shared/ipc/codec.js';
import { PROTOCOL_VERSION, type Frame } from '../shared/ipc/frames.js';
import { BURROW, BURROW_JS, runCli, stopAllDaemons, type CliResult, type RunningDaemon, hostAndAgent } from './helpers/daemon.js';

const NATIVE = new URL('../dist/native/burrow', import.meta.url).pathname;
const CLIENTS = [
  { name: 'native', node: false },
  { name: 'node', node: true },
] as const;

afterAll(stopAllDaemons);

describe('native client', () => {
  let host: RunningDaemon;
  let agent: RunningDaemon;
  beforeAll(async () => {
    ({ host, agent } = await hostAndAgent());
  }, 60_000);

  /** The same arguments through both clients. */
  const both = (args: string[], opts: { input?: string | Buffer; env?: Record<string, string> } = {}): Promise<CliResult[]> =>
    Promise.all(CLIENTS.map((c) => runCli({ ...agent.cliEnv, ...opts.env }, args, { node: c.node, ...(opts.input !== undefined ? { input: opts.input } : {}) })));

  it('was built (the build needs a C compiler; .ci/run installs one)', () => {
    expect(existsSync(NATIVE)).toBe(true);
  });

  it('keeps stdout, stderr and the exit status apart, as the Node CLI does', async () => {
    const [n, j] = await both(['exec', host.ticket, '--', 'echo out; echo err >&2; exit 7']);
    expect(n).toMatchObject({ code: 7, stdout: 'out\n', stderr: 'err\n' });
    expect(j).toMatchObject({ code: n?.code, stdout: n?.stdout, stderr: n?.stderr });
  });

  it('joins words like ssh, with or without --', async () => {
    for (const args of [['exec', host.ticket, '--', 'echo', 'a', 'b'], ['exec', host.ticket, 'echo', 'a', 'b']]) {
      const rs = await both(args);
      for (const r of rs) expect(r).toMatchObject({ code: 0, stdout: 'a b\n' });
    }
  });

  it('streams 4 MiB of stdin and gives 128+n for a remote signal', async () => {
    const data = Buffer.alloc(4 << 20, 'burrow');
    const digest = createHash('sha256').update(data).digest('hex');
    for (const r of await both(['exec', host.ticket, '--', 'sha256sum'], { input: data })) expect(r).toMatchObject({ code: 0, stdout: `${digest}  -\n` });
    for (const r of await both(['exec', host.ticket, '--', 'kill -TERM $$'])) expect(r.code).toBe(128 + 15);
    for (const r of await both(['exec', host.ticket, '--', 'kill -PWR $$'])) expect(r.code).toBe(128 + 30);
  });

  it('passes the locale to the remote command', async () => {
    for (const r of await both(['exec', host.ticket, '--', 'echo "$LC_MESSAGES"'], { env: { LC_MESSAGES: 'C.UTF-8' } })) expect(r.stdout).toBe('C.UTF-8\n');
  });

  it('reports daemon errors with the same typed line and exit status', async () => {
    const rs = await both(['exec', 'bad target', '--', 'true']);
    expect(rs[0]?.code).toBe(255);
    expect(rs[0]?.stderr).toMatch(/^burrow: BadTarget: .+\n$/);
    expect(rs[1]).toMatchObject({ code: rs[0]?.code, stderr: rs[0]?.stderr });
  });

  it('hands usage errors, other commands and an absent daemon to the Node CLI', async () => {
    const usage = await both(['exec', host.ticket]);
    for (const r of usage) expect(r).toMatchObject({ code: 2, stderr: 'burrow: BadArgument: usage: burrow exec TARGET -- CMD...\n' });
    const st = await runCli(agent.cliEnv, ['status', '--json']);
    expect(st.code).toBe(0);
    expect(JSON.parse(st.stdout)).toHaveProperty('connections');
    const dir = mkdtempSync(join(tmpdir(), 'burrow-native-'));
    try {
      const gone = await both(['--no-autostart', 'exec', host.ticket, '--', 'true'], { env: { BURROW_SOCKET: join(dir, 'none.sock') } });
      for (const r of gone) expect(r).toMatchObject({ code: 255, stderr: `burrow: DaemonUnavailable: no daemon at ${join(dir, 'none.sock')}\n` });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('passes ^C on to the remote command instead of dying of it', async () => {
    for (const c of CLIENTS) {
      const [cmd, argv] = c.node ? [process.execPath, [BURROW_JS]] : [BURROW, []];
      const p = spawn(cmd, [...argv, 'exec', host.ticket, '--', 'trap "echo caught; exit 5" INT; echo ready; while :; do sleep 0.1; done'], { env: { ...process.env, ...agent.cliEnv } });
      let out = '';
      const exited = new Promise<number | null>((resolve) => p.once('exit', (code) => resolve(code)));
      await new Promise<void>((resolve) =>
        p.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('ready')) resolve();
        }),
      );
      p.kill('SIGINT');
      expect(await exited, c.name).toBe(5);
      expect(out).toContain('caught');
    }
  }, 30_000);

  it('ends here on a second ^C when the remote ignores the first', async () => {
    for (const c of CLIENTS) {
      const [cmd, argv] = c.node ? [process.execPath, [BURROW_JS]] : [BURROW, []];
      const p = spawn(cmd, [...argv, 'exec', host.ticket, '--', 'trap "" INT; echo ready; sleep 20'], { env: { ...process.env, ...agent.cliEnv } });
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => p.once('exit', (code, signal) => resolve({ code, signal })));
      await new Promise<void>((resolve) => p.stdout.on('data', (d: Buffer) => d.toString().includes('ready') && resolve()));
      const t0 = Date.now();
      p.kill('SIGINT');
      await new Promise((r) => setTimeout(r, 300));
      p.kill('SIGINT');
      const r = await exited;
      // Killed by SIGINT (native), or exit 130 (Node, which cannot die of a handled signal): both 130 to a shell.
      expect(r.signal === 'SIGINT' || r.code === 130, `${c.name}: ${JSON.stringify(r)}`).toBe(true);
      expect(Date.now() - t0).toBeLessThan(5_000);
    }
  }, 30_000);

  it('ends when its reader goes away (`burrow exec h -- yes | head -1`)', async () => {
    for (const c of CLIENTS) {
      const cli = c.node ? `${process.execPath} ${BURROW_JS}` : BURROW;
      const p = spawn('bash', ['-c', `${cli} exec ${host.ticket} -- yes | head -1; echo "status \${PIPESTATUS[0]}"`], { env: { ...process.env, ...agent.cliEnv } });
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      p.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const code = await new Promise<number | null>((resolve) => p.once('exit', (code) => resolve(code)));
      expect(code, c.name).toBe(0);
      // Like any filter whose reader left: killed by SIGPIPE (141), with nothing on stderr.
      expect({ out, err }, c.name).toEqual({ out: 'y\nstatus 141\n', err: '' });
    }
  }, 30_000);

  it('runs with stdin, stdout or stderr closed, without mistaking the daemon socket for them', async () => {
    for (const c of CLIENTS) {
      const cli = c.node ? `${process.execPath} ${BURROW_JS}` : BURROW;
      const script = [
        `${cli} exec ${host.ticket} -- 'cat; echo in-closed' <&-; echo "a $?"`,
        `${cli} exec ${host.ticket} -- 'echo lost; exit 3' >&-; echo "b $?"`,
        `${cli} exec ${host.ticket} -- 'echo out; echo lost >&2; exit 4' 2>&-; echo "c $?"`,
      ].join('\n');
      const p = spawn('bash', ['-c', script], { env: { ...process.env, ...agent.cliEnv } });
      let out = '';
      p.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await new Promise((resolve) => p.once('exit', resolve));
      expect(out, c.name).toBe('in-closed\na 0\nb 3\nout\nc 4\n');
    }
  }, 30_000);

  it('hands a daemon of another protocol version to the Node CLI, which names the mismatch', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-native-'));
    const sock = join(dir, 'old.sock');
    // A peer that answers every hello with version 99, standing in for an older or newer daemon.
    const server = createServer((s) => {
      s.on('error', () => undefined);
      s.resume(); // read to the client's end, so the socket closes and server.close() can finish
      s.write(encodeFrame({ t: 'hello', v: 99 }));
      s.end();
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      for (const r of await both(['exec', host.ticket, '--', 'true'], { env: { BURROW_SOCKET: sock } })) {
        expect(r.code).toBe(255);
        expect(r.stderr).toMatch(/^burrow: VersionMismatch: daemon speaks IPC version 99/);
      }
    } finally {
      await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gives up on a daemon that never answers hello, after 5 s, as the Node CLI does', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-native-'));
    const sock = join(dir, 'mute.sock');
    const server = createServer((s) => {
      s.on('error', () => undefined);
      s.resume();
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      for (const r of await both(['exec', host.ticket, '--', 'true'], { env: { BURROW_SOCKET: sock } })) {
        expect(r).toMatchObject({ code: 255, stderr: `burrow: DaemonUnavailable: daemon at ${sock} did not answer within 5000 ms\n` });
        expect(r.ms).toBeLessThan(15_000);
      }
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);

  it('is found through a symlink to bin/burrow, as npm installs it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-native-'));
    try {
      symlinkSync(BURROW, join(dir, 'burrow'));
      const r = spawnSync(join(dir, 'burrow'), ['exec', host.ticket, '--', 'echo via-link'], { env: { ...process.env, ...agent.cliEnv }, encoding: 'utf8' });
      expect(r).toMatchObject({ status: 0, stdout: 'via-link\n' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('copies both ways itself, without Node, and reports a failed source as the Node CLI does', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-native-'));
    try {
      // A copy of the binary with no Node CLI beside it: anything handed over would fail.
      mkdirSync(join(dir, 'native'));
      copyFileSync(NATIVE, join(dir, 'native', 'burrow'));
      chmodSync(join(dir, 'native', 'burrow'), 0o755);
      const alone = (args: string[]): ReturnType<typeof spawnSync> => spawnSync(join(dir, 'native', 'burrow'), args, { env: { ...process.env, ...agent.cliEnv }, cwd: dir, encoding: 'utf8' });
      const data = randomBytes(300_000);
      writeFileSync(join(dir, 'up'), data);
      const remote = join(host.home, 'native-cp');
      expect(alone(['cp', 'up', `${host.ticket}:${remote}`])).toMatchObject({ status: 0, stdout: '', stderr: '' });
      expect(alone(['cp', '-p', `${host.ticket}:${remote}`, './down'])).toMatchObject({ status: 0, stdout: '', stderr: '' });
      expect(readFileSync(join(dir, 'down')).equals(data)).toBe(true);
      // One source of two is missing: the other is copied, the status is 1, the line the same.
      for (const c of CLIENTS) mkdirSync(join(host.home, `${c.name}-dir`));
      const rs = await Promise.all(CLIENTS.map((c) => runCli(agent.cliEnv, ['cp', join(dir, 'up'), join(dir, 'absent'), `${host.ticket}:${host.home}/${c.name}-dir/`], { node: c.node })));
      expect(rs[0]?.code).toBe(1);
      expect(rs[0]?.stderr).toContain('absent');
      expect(rs[1]).toMatchObject({ code: rs[0]?.code, stdout: rs[0]?.stdout, stderr: rs[0]?.stderr.replace('native-dir', 'node-dir') });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is what ssh-config puts in the ProxyCommand', async () => {
    const r = await runCli(agent.cliEnv, ['ssh-config']);
    expect(r.stdout).toContain(`ProxyCommand env BURROW_SOCKET=${agent.socket} BURROW_STATE=${agent.state} ${NATIVE} proxy %h`);
  });
});

/**
 * A stand-in daemon at `sock`: answers hello with this protocol version, then the request with
 * `reply(request)`'s frames, and closes after them (at once when there are none).
 */
async function fakeDaemon(sock: string, reply: (req: Frame) => Frame[]): Promise<Server> {
  const server = createServer((s) => {
    s.on('error', () => undefined);
    const decoder = new FrameDecoder();
    s.on('data', (chunk: Buffer) => {
      for (const d of decoder.push(chunk)) {
        if ('error' in d) return s.destroy();
        if (d.frame.t === 'hello') s.write(encodeFrame({ t: 'hello', v: PROTOCOL_VERSION }));
        else if (d.frame.t !== 'stdin' && d.frame.t !== 'eof' && d.frame.t !== 'resize' && d.frame.t !== 'signal') {
          const frames = reply(d.frame);
          for (const f of frames) s.write(encodeFrame(f));
          // No answer: a daemon that went away (closed outright, not half-closed).
          if (frames.length === 0) s.destroy();
          else s.end();
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  return server;
}

const closeServer = (server: Server): Promise<unknown> => new Promise((resolve) => server.close(resolve));

describe('native and Node clients agree on every exit class', () => {
  let dir: string;
  let sock: string;
  let server: Server;
  /** What the stand-in daemon answers next. */
  let answer: (req: Frame) => Frame[] = () => [];
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'burrow-native-'));
    sock = join(dir, 'fake.sock');
    server = await fakeDaemon(sock, (req) => answer(req));
  });
  afterAll(async () => {
    await closeServer(server);
    rmSync(dir, { recursive: true, force: true });
  });

  /** The native fast paths: exec, attach to a session, create-and-attach. */
  const COMMANDS = [
    ['exec', 'box', '--', 'true'],
    ['session', 'attach', 'box', 'main', '--read-only'],
    ['ssh', 'box', '--session', 'main', 'echo hi'],
  ];
  /** Each command through both clients against the stand-in; the native result first. */
  const both = (args: string[], env: Record<string, string> = {}): Promise<CliResult[]> =>
    Promise.all(CLIENTS.map((c) => runCli({ BURROW_SOCKET: sock, BURROW_NO_AUTOSTART: '1', ...env }, args, { node: c.node })));
  /** `burrow cp` to a pipe, the native fast path's other frames. */
  const CP = ['cp', 'box:remote', '/tmp/local'];
  const isAttach = (req: Frame): boolean => req.t === 'session_open';
  const attached: Frame = { t: 'attached', name: 'main', offset: 0, screen: Buffer.from('SCREEN\n'), writer: false, pid: 1 };

  it('gives each error code its exit status and the same line', async () => {
    // Every code in shared/errors.ts, and one this build does not know (shown as Internal).
    for (const code of [...Object.values(ErrorCodes), 'NoSuchCode']) {
      answer = () => [{ t: 'error', code, message: `stand-in ${code}` }];
      const shown = isErrorCode(code) ? code : ErrorCodes.Internal;
      for (const args of [...COMMANDS, CP]) {
        const [n, j] = await both(args);
        expect(n, `${code} ${args[0]}`).toMatchObject({ code: exitCodeFor(shown), stderr: `burrow: ${shown}: stand-in ${code}\n` });
        expect(j, `${code} ${args[0]} (node)`).toMatchObject({ code: n?.code, stderr: n?.stderr, stdout: n?.stdout });
      }
    }
  }, 120_000);

  it('gives the remote exit status, 128+N for a signal, 255 for an unknown one', async () => {
    const exits: [Frame, number][] = [
      [{ t: 'exit', code: 0 }, 0],
      [{ t: 'exit', code: 7 }, 7],
      [{ t: 'exit', code: 300 }, 300 & 0xff],
      [{ t: 'exit', signal: 'TERM' }, 143],
      [{ t: 'exit', signal: 'KILL' }, 137],
      [{ t: 'exit', signal: 'NOSUCHSIG' }, 255],
      [{ t: 'exit' }, 255],
    ];
    for (const [exit, status] of exits) {
      answer = (req) => (isAttach(req) ? [attached, { t: 'stdout', data: Buffer.from('out\n') }, exit] : [{ t: 'stdout', data: Buffer.from('out\n') }, exit]);
      for (const args of COMMANDS) {
        const [n, j] = await both(args);
        expect(n, `${JSON.stringify(exit)} ${args[0]}`).toMatchObject({ code: status, stderr: '', stdout: isAttach({ t: args[0] === 'exec' ? 'exec' : 'session_open' } as Frame) ? 'SCREEN\nout\n' : 'out\n' });
        expect(j, `${JSON.stringify(exit)} ${args[0]} (node)`).toMatchObject({ code: n?.code, stderr: n?.stderr, stdout: n?.stdout });
      }
    }
  }, 60_000);

  it('sends the same cp request: paths made absolute by the same rules, flags, several sources', async () => {
    const cwd = join(dir, 'cwd', 'sub');
    mkdirSync(cwd, { recursive: true });
    const ticket = `endpoint${'a'.repeat(40)}`;
    const id = 'ab'.repeat(32);
    const cases = [
      ['cp', 'a/../b/./c', 'box:'],
      ['cp', '-rp', '--resume', 'x/', '.hidden', '../up/', 'box:dst/'],
      ['cp', '-L', 'box:1234:p', 'local'],
      ['cp', 'user@h.burrow:f', '--', '-dst'],
      ['cp', '/', '//x//', '', '.', 'me@host.example:22:in'],
      [`cp`, `${ticket}:p`, `${id}:/q`, 'here/'],
      ['cp', '[::1]:p', 'x'], // brackets: the Node CLI judges, and takes it
      ['cp', 'odd_name.burrow:p', 'x'], // not an alias name: the Node CLI says why
      ['cp', 'bad target:p', 'x'],
      ['cp', 'h:99999:p', 'x'],
      ['cp', 'a', 'b'], // both local: usage
      ['cp', 'a', 'box:b', '--bogus'],
      ['cp', '-rx', 'a', 'box:b'],
      ['cp', 'a'],
    ];
    // The first six the native client serves itself: a copy of it with no Node CLI beside it must
    // send the same request (the rest it hands over, which the two clients above agree on).
    const alone = join(dir, 'alone', 'native', 'burrow');
    mkdirSync(join(dir, 'alone', 'native'), { recursive: true });
    copyFileSync(NATIVE, alone);
    chmodSync(alone, 0o755);
    for (const [k, args] of cases.entries()) {
      const got: (Frame | undefined)[] = [];
      const rs: CliResult[] = [];
      const run = async (c: { node: boolean; bin?: string }): Promise<void> => {
        let req: Frame | undefined;
        answer = (r) => {
          req = r;
          return [{ t: 'result', value: { files: 1 } }];
        };
        const env = { ...process.env, BURROW_SOCKET: sock, BURROW_NO_AUTOSTART: '1' };
        if (c.bin) {
          // Not spawnSync: the stand-in daemon answers from this process's event loop.
          const p = spawn(c.bin, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
          let stdout = '';
          let stderr = '';
          p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
          p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
          const code = await new Promise<number | null>((r) => p.once('close', r));
          rs.push({ code, signal: null, stdout, stderr, ms: 0 });
        } else rs.push(await runCli(env, args, { node: c.node, cwd }));
        got.push(req);
      };
      for (const c of CLIENTS) await run(c);
      expect(rs[1], `${args.join(' ')} (node)`).toMatchObject({ code: rs[0]?.code, stdout: rs[0]?.stdout, stderr: rs[0]?.stderr });
      expect(got[1], args.join(' ')).toEqual(got[0]);
      if (k < 6) {
        await run({ node: false, bin: alone });
        expect(rs[2], `${args.join(' ')} (native alone)`).toMatchObject({ code: 0, stderr: '' });
        expect(got[2], `${args.join(' ')} (native alone)`).toEqual(got[0]);
      }
    }
  }, 120_000);

  it('passes cp warnings on made printable, and gives 1 when anything was skipped or failed', async () => {
    const warn: Frame = { t: 'stderr', data: Buffer.from('burrow: skipped "a\x1b[31m\u202eb\u0085": it is a fifo\n\u00e9 ok\n') };
    // Not UTF-8: each broken sequence is one U+FFFD, as Node decodes it (a daemon only sends UTF-8).
    const broken: Frame = { t: 'stderr', data: Buffer.from([0x61, 0xe2, 0x82, 0x41, 0xe0, 0xa0, 0xed, 0xa0, 0x80, 0xc0, 0xaf, 0xf0, 0x9f, 0x98, 0x0a]) };
    const progress: Frame = { t: 'progress', path: 'x', bytes: 1, size: 2, files: 0, totalBytes: 1 };
    const outcomes: [Frame[], number][] = [
      [[progress, warn, { t: 'result', value: { files: 1, skipped: 1 } }], 1],
      [[warn, { t: 'result', value: { files: 0, failed: 2, bytes: 2 ** 40 } }], 1],
      [[broken, { t: 'result', value: { files: 0, skipped: 2 ** 40 } }], 1],
      [[progress, { t: 'result', value: { files: 3, bytes: 5_000_000_000, skipped: 0 } }], 0],
      [[{ t: 'error', code: 'IoError', message: 'no such file "\x07x\u009b"' }], exitCodeFor(ErrorCodes.IoError)],
      [[{ t: 'stdout', data: Buffer.from('?') }], 255],
    ];
    for (const [frames, status] of outcomes) {
      answer = () => frames;
      const [n, j] = await both(CP);
      expect(n?.code, JSON.stringify(frames)).toBe(status);
      expect(n?.stderr).not.toMatch(/[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]/);
      expect(j, `${JSON.stringify(frames)} (node)`).toMatchObject({ code: n?.code, stdout: n?.stdout, stderr: n?.stderr });
    }
  });

  it('draws the same progress bar on a terminal, and ends it the same way', async () => {
    /** The client in a terminal of its own: everything it wrote there, and its status. */
    const inPty = (node: boolean): Promise<{ out: string; code: number }> =>
      new Promise((resolve) => {
        const [cmd, argv] = node ? [process.execPath, [BURROW_JS, ...CP]] : [BURROW, CP];
        const term = nodePty.spawn(cmd, argv, { name: 'xterm', cols: 200, rows: 24, env: { ...process.env, BURROW_SOCKET: sock, BURROW_NO_AUTOSTART: '1' } as Record<string, string> });
        let out = '';
        term.onData((d) => (out += d));
        term.onExit(({ exitCode }) => resolve({ out, code: exitCode }));
      });
    // totalBytes 0: no rate, so nothing in the line depends on time.
    const progress = (path: string, bytes: number, size: number): Frame => ({ t: 'progress', path, bytes, size, files: 0, totalBytes: 0 });
    const scenes: Frame[][] = [
      // 1280 B is 1.25 KiB exactly: toFixed(1) rounds it up; sizes past 4 GiB come as float64.
      [progress('dir/file.txt', 1280, 1536 * 1024), { t: 'stderr', data: Buffer.from('burrow: skipped "x": a fifo\n') }, progress(`${'a'.repeat(10)}${'\u{1f600}'.repeat(20)}bc`, 5e9, 5e9), { t: 'result', value: { files: 2 } }],
      [progress(`long/${'é'.repeat(60)}\u{1f600}`, 0, 0), progress('\x1b[2Jx\u202e\n', 7, 9), { t: 'error', code: 'IoError', message: 'gone' }],
      [progress('cut', 1, 2)], // the daemon goes away mid-copy
    ];
    for (const frames of scenes) {
      answer = () => frames;
      const n = await inPty(false);
      const j = await inPty(true);
      expect(n.out, JSON.stringify(frames)).toMatch(/\r/);
      expect(n.out).not.toMatch(/\x1b\[2J|\u202e/);
      expect(j, `${JSON.stringify(frames)} (node)`).toEqual(n);
    }
  }, 60_000);

  it('leaves session usage errors to the Node CLI: the same line and status 2', async () => {
    for (const args of [['session', 'attach', 'box'], ['ssh', 'box', '--session'], ['ssh', 'box', '--session', 'main', '--session-linger', 'soon'], ['session', 'attach', 'box', 'main', '--bogus']]) {
      const [n, j] = await both(args);
      expect(n?.code, args.join(' ')).toBe(2);
      expect(n?.stderr, args.join(' ')).toMatch(/^burrow: BadArgument: .+\n$/);
      expect(j, `${args.join(' ')} (node)`).toMatchObject({ code: n?.code, stderr: n?.stderr });
    }
  });

  it('gives 255 and the same line when the daemon goes away before answering, or is not there', async () => {
    answer = () => [];
    for (const args of [...COMMANDS, CP]) {
      const [n, j] = await both(args);
      expect(n?.code, args[0]).toBe(255);
      expect(n?.stderr, args[0]).toMatch(/^burrow: Disconnected: .+\n$/);
      expect(j, `${args[0]} (node)`).toMatchObject({ code: n?.code, stderr: n?.stderr });
    }
    const none = join(dir, 'none.sock');
    for (const args of [...COMMANDS, CP]) {
      for (const r of await both(args, { BURROW_SOCKET: none })) expect(r, args[0]).toMatchObject({ code: 255, stderr: `burrow: DaemonUnavailable: no daemon at ${none}\n` });
    }
  }, 60_000);
});

describe('native and Node clients find the socket by the same rules', () => {
  let dir: string;
  const servers: Server[] = [];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'burrow-native-'));
  });
  afterAll(async () => {
    for (const s of servers) await closeServer(s);
    rmSync(dir, { recursive: true, force: true });
  });

  /** A stand-in daemon at `sock` that answers every request with an error naming itself. */
  const serve = async (sock: string): Promise<void> => {
    servers.push(await fakeDaemon(sock, () => [{ t: 'error', code: ErrorCodes.NotFound, message: `answered at ${sock}` }]));
  };
  /** `burrow [flags] exec box -- true` through both clients, which must agree; the native result. */
  const agree = async (env: Record<string, string>, flags: string[] = []): Promise<CliResult> => {
    const [n, j] = await Promise.all(CLIENTS.map((c) => runCli({ BURROW_NO_AUTOSTART: '1', ...env }, [...flags, 'exec', 'box', '--', 'true'], { node: c.node })));
    expect(j, JSON.stringify(env)).toMatchObject({ code: n?.code, stderr: n?.stderr });
    return n!;
  };
  const answeredAt = (sock: string): Partial<CliResult> => ({ code: 1, stderr: `burrow: NotFound: answered at ${sock}\n` });

  it('$XDG_RUNTIME_DIR/burrow/agent.sock when BURROW_SOCKET is unset, and BURROW_SOCKET or --socket over it', async () => {
    const runtime = join(dir, 'run');
    mkdirSync(join(runtime, 'burrow'), { recursive: true, mode: 0o700 });
    // None there yet: both name the path they looked at.
    const own = join(runtime, 'burrow', 'agent.sock');
    expect(await agree({ BURROW_SOCKET: '', XDG_RUNTIME_DIR: runtime })).toMatchObject({ code: 255, stderr: `burrow: DaemonUnavailable: no daemon at ${own}\n` });
    await serve(own);
    expect(await agree({ BURROW_SOCKET: '', XDG_RUNTIME_DIR: runtime })).toMatchObject(answeredAt(own));
    const explicit = join(dir, 'explicit.sock');
    await serve(explicit);
    expect(await agree({ BURROW_SOCKET: explicit, XDG_RUNTIME_DIR: runtime })).toMatchObject(answeredAt(explicit));
    expect(await agree({ BURROW_SOCKET: own, XDG_RUNTIME_DIR: runtime }, ['--socket', explicit])).toMatchObject(answeredAt(explicit));
    // The state dir never moves the socket.
    expect(await agree({ BURROW_SOCKET: '', XDG_RUNTIME_DIR: runtime, BURROW_STATE: join(dir, 'state') }, ['--state', join(dir, 'state2')])).toMatchObject(answeredAt(own));
  });

  it('/tmp/burrow-$UID/agent.sock with neither variable set', async () => {
    const r = await agree({ BURROW_SOCKET: '', XDG_RUNTIME_DIR: '' });
    // Whatever is there on this machine, both clients looked at the same place.
    expect(r.code).not.toBeNull();
    if (r.stderr.startsWith('burrow: DaemonUnavailable')) expect(r.stderr).toBe(`burrow: DaemonUnavailable: no daemon at /tmp/burrow-${process.getuid!()}/agent.sock\n`);
  });

  it('refuses a socket directory open to others, a symlinked directory or socket, with the same line', async () => {
    const open = join(dir, 'open');
    mkdirSync(join(open, 'burrow'), { recursive: true });
    chmodSync(join(open, 'burrow'), 0o755);
    await serve(join(open, 'burrow', 'agent.sock'));
    expect(await agree({ BURROW_SOCKET: '', XDG_RUNTIME_DIR: open })).toMatchObject({ code: 255, stderr: `burrow: UnsafeSocket: ${join(open, 'burrow')} is open to other users (mode 0755, not 0700); refusing to use it\n` });
    const linked = join(dir, 'linked');
    mkdirSync(linked);
    symlinkSync(join(dir, 'run', 'burrow'), join(linked, 'burrow'));
    expect((await agree({ BURROW_SOCKET: '', XDG_RUNTIME_DIR: linked })).stderr).toMatch(/^burrow: UnsafeSocket: .* is a symlink \(owned by uid \d+\), not a directory; refusing to use it\n$/);
    const group = join(dir, 'group');
    mkdirSync(group, { mode: 0o770 });
    chmodSync(group, 0o770);
    expect(await agree({ BURROW_SOCKET: join(group, 'agent.sock') })).toMatchObject({ code: 255, stderr: `burrow: UnsafeSocket: ${group} is writable by other users (mode 0770); refusing to use it\n` });
    const sockLink = join(dir, 'link.sock');
    symlinkSync(join(dir, 'explicit.sock'), sockLink);
    expect((await agree({ BURROW_SOCKET: sockLink })).stderr).toMatch(/^burrow: UnsafeSocket: .*link\.sock is a symlink \(owned by uid \d+\), not a socket; refusing to use it\n$/);
  });
});
