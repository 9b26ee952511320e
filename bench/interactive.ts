// Interactive latency under bulk load: single bytes echoed through a remote `cat`, idle and while a
// bulk transfer runs to the same host, for burrow (iroh host, one pooled connection) and for
// OpenSSH (one ControlMaster to a local sshd), measured in the same run.
//   node dist/bench/interactive.js [--samples 60] [--gap 20] [--mib 256]

import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, closeSync, ftruncateSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { spawn as burrowSpawn } from '../shared/lib.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, runCli, startDaemon, stopAllDaemons } from '../test/helpers/daemon.js';
import { freePort, keygen, sshMasterOpts, startSshd } from '../test/helpers/sshd.js';
import { fmt, summarize, type Summary } from './stats.js';
import { runQuiet } from './run.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One echo probe: write one byte, time until it comes back. */
async function echoOnce(input: Writable, output: Readable, byte: number): Promise<number> {
  const t0 = performance.now();
  const back = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no echo within 10 s')), 10_000);
    const onData = (d: Buffer): void => {
      if (d.includes(byte)) {
        clearTimeout(timer);
        output.off('data', onData);
        resolve();
      }
    };
    output.on('data', onData);
  });
  input.write(Buffer.of(byte));
  await back;
  return performance.now() - t0;
}

async function sampleEcho(input: Writable, output: Readable, samples: number, gapMs: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < samples; i++) {
    out.push(await echoOnce(input, output, 0x41 + (i % 26)));
    await sleep(gapMs);
  }
  return out;
}

/** A bulk job that runs until stopped; restarted when it finishes early (bounded by the caller's time). */
interface Bulk {
  stop(): Promise<void>;
}

function loopProcess(cmd: string, args: string[], env: NodeJS.ProcessEnv): Bulk {
  let child: ChildProcess | undefined;
  let stopped = false;
  const run = (): void => {
    if (stopped) return;
    child = spawnChild(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => {
      if (stopped) return;
      // A failing bulk job is an error in the bench, not something to retry in a loop.
      if (code !== 0) throw new Error(`bulk ${cmd} ${args.join(' ')} exited ${code}: ${err}`);
      run();
    });
  };
  run();
  return {
    async stop() {
      stopped = true;
      if (child && child.exitCode === null && child.signalCode === null) {
        const done = new Promise((r) => child!.once('exit', r));
        child.kill('SIGTERM');
        const k = setTimeout(() => child?.kill('SIGKILL'), 5000);
        await done;
        clearTimeout(k);
      }
    },
  };
}

/** A TCP sink on loopback (the far end of a forward): reads and discards. */
async function startSink(): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => {
    s.on('data', () => undefined);
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as { port: number }).port };
}

/** Push bytes into a local port as fast as it takes them, until stopped. */
function pushInto(port: number): Bulk {
  const buf = randomBytes(64 * 1024);
  let stopped = false;
  const s: Socket = connect(port, '127.0.0.1');
  s.on('error', (e) => {
    if (!stopped) process.stderr.write(`bulk forward: ${e.message}\n`);
  });
  const pump = (): void => {
    while (!stopped && s.write(buf));
  };
  s.on('connect', pump);
  s.on('drain', pump);
  return {
    async stop() {
      stopped = true;
      s.destroy();
    },
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { samples: { type: 'string', default: '60' }, gap: { type: 'string', default: '20' }, mib: { type: 'string', default: '256' } } });
  const samples = Number(values.samples);
  const gap = Number(values.gap);
  const mib = Number(values.mib);
  const scratch = mkdtempSync(join(tmpdir(), 'burrow-bench-'));
  const sshd = await startSshd();
  const host = await startDaemon({ args: ['--host'], logLevel: 'warn' });
  const agent = await startDaemon({ logLevel: 'info' });
  const sink = await startSink();
  // A daemon that dies mid-run says why here (its JSON log lines are kept by the helper).
  let finished = false;
  for (const d of [host, agent]) d.proc.once('exit', (code, sig) => finished || process.stderr.write(`a daemon exited (${code ?? sig}); last log lines: ${JSON.stringify(d.logs.slice(-5))}\n`));
  agent.proc.stderr!.on('data', (b: Buffer) => {
    for (const line of b.toString().split('\n')) if (line && !line.startsWith('{')) process.stderr.write(`agent: ${line}\n`);
  });
  const children: ChildProcess[] = [];
  try {
    const agentKey = endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim());
    appendFileSync(sshd.authorizedKeysPath, agentKey + '\n');
    host.authorizeKey(agentKey);
    const userKey = join(scratch, 'user_key');
    host.authorizeKey(keygen(userKey).pub);
    await runCli(agent.cliEnv, ['alias', 'add', 'box', host.ticket]);
    const env = { ...process.env, ...agent.cliEnv };
    const config = join(scratch, 'ssh_config');
    const cfg = (await runCli(agent.cliEnv, ['ssh-config'])).stdout.replace('ProxyCommand ', `ProxyCommand env BURROW_SOCKET=${agent.socket} BURROW_STATE=${agent.state} `);
    writeFileSync(config, `${cfg}    IdentityFile ${userKey}\n    IdentitiesOnly yes\n    BatchMode yes\n`);

    // Payloads: a sparse local file to upload, and one on the host side to download.
    const work = join(scratch, 'w');
    mkdirSync(work);
    const payload = join(work, 'payload');
    const fd = openSync(payload, 'w');
    ftruncateSync(fd, mib * 1024 * 1024);
    closeSync(fd);
    const remoteDir = join(host.home, 'bench');
    mkdirSync(remoteDir, { recursive: true });
    const remotePayload = join(remoteDir, 'payload');
    writeFileSync(remotePayload, Buffer.alloc(0));
    const rfd = openSync(remotePayload, 'w');
    ftruncateSync(rfd, mib * 1024 * 1024);
    closeSync(rfd);

    // OpenSSH: one master to the local sshd, everything through it.
    const cm = join(scratch, 'cm');
    const sshOpts = sshMasterOpts(sshd, cm, scratch);
    const dest = `${sshd.user}@127.0.0.1`;
    await runQuiet('ssh', [...sshOpts, dest, 'true']);
    const scpOpts = ['-q', '-F', 'none', '-i', sshd.clientKeyPath, '-P', String(sshd.port), '-o', `ControlPath=${cm}`, '-o', 'ControlMaster=no', '-o', `UserKnownHostsFile=${join(scratch, 'known_hosts')}`, '-o', 'BatchMode=yes'];

    // The interactive probes: a `cat` on each side, kept open for the whole run.
    const burrowCat = await burrowSpawn('box', 'cat', { socket: agent.socket });
    burrowCat.on('error', (e) => process.stderr.write(`burrow cat: ${String(e)}\n`));
    const sshCat = spawnChild('ssh', [...sshOpts, dest, 'cat'], { stdio: ['pipe', 'pipe', 'inherit'] });
    children.push(sshCat);
    const burrowProbe = (): Promise<number[]> => sampleEcho(burrowCat.stdin, burrowCat.stdout, samples, gap);
    const sshProbe = (): Promise<number[]> => sampleEcho(sshCat.stdin!, sshCat.stdout!, samples, gap);
    await burrowProbe(); // warm both paths
    await sshProbe();

    const burrowFwdPort = await freePort();
    await runCli(agent.cliEnv, ['forward', 'add', 'box', '-L', `${burrowFwdPort}:127.0.0.1:${sink.port}`]);
    const sshFwdPort = await freePort();
    await runQuiet('ssh', [...sshOpts, '-O', 'forward', '-L', `${sshFwdPort}:127.0.0.1:${sink.port}`, dest]);

    type Row = { name: string; burrow?: Summary; ssh?: Summary };
    const rows: Row[] = [];
    const measure = async (name: string, burrowBulk: (() => Bulk) | undefined, sshBulk: (() => Bulk) | undefined): Promise<void> => {
      const row: Row = { name };
      if (burrowBulk !== undefined || name === 'idle') {
        const b = burrowBulk?.();
        await sleep(500); // let the transfer reach full speed
        row.burrow = summarize(await burrowProbe());
        await b?.stop();
      }
      if (sshBulk !== undefined || name === 'idle') {
        const b = sshBulk?.();
        await sleep(500);
        row.ssh = summarize(await sshProbe());
        await b?.stop();
      }
      rows.push(row);
    };
    await measure('idle', undefined, undefined);
    await measure(
      'cp upload',
      () => loopProcess(BURROW, ['cp', payload, `box:${join(remoteDir, 'up')}`], env),
      () => loopProcess('scp', [...scpOpts, payload, `${dest}:${join(scratch, 'scp-up')}`], process.env),
    );
    await measure(
      'cp download',
      () => loopProcess(BURROW, ['cp', `box:${remotePayload}`, join(work, 'down')], env),
      () => loopProcess('scp', [...scpOpts, `${dest}:${remotePayload}`, join(work, 'scp-down')], process.env),
    );
    await measure('scp via burrow proxy', () => loopProcess('scp', ['-q', '-F', config, payload, `box.burrow:${join(remoteDir, 'scp-up')}`], env), undefined);
    await measure('-L forward bulk', () => pushInto(burrowFwdPort), () => pushInto(sshFwdPort));

    const idle = rows[0]!;
    const lines = [`echo latency of single bytes through a remote cat, ${samples} samples ${gap} ms apart, ms; bulk payload ${mib} MiB (loopback, 2 cores)`];
    for (const r of rows) {
      if (r.burrow) lines.push(`  burrow  ${r.name.padEnd(22)} ${fmt(r.burrow, 'ms', 2)}   x idle ${(r.burrow.median / idle.burrow!.median).toFixed(2)}${r.ssh ? `   x OpenSSH ${(r.burrow.median / r.ssh.median).toFixed(2)}` : ''}`);
      if (r.ssh) lines.push(`  OpenSSH ${r.name.padEnd(22)} ${fmt(r.ssh, 'ms', 2)}   x idle ${(r.ssh.median / idle.ssh!.median).toFixed(2)}`);
    }
    process.stdout.write(lines.join('\n') + '\n');
    process.stdout.write(JSON.stringify({ bench: 'interactive', samples, gap, mib, rows }) + '\n');
    burrowCat.stdin.end();
    sshCat.stdin!.end();
    await runQuiet('ssh', [...sshOpts, '-O', 'exit', dest]);
  } finally {
    finished = true;
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    sink.server.close();
    await stopAllDaemons();
    await sshd.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

await main();
