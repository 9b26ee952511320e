// Persistent sessions: how long attaching takes on a warm connection, against a warm
// `burrow exec TARGET -- true` measured in the same run and interleaved; how long a client takes
// to come back by itself after the agent is killed under it; what a keeper costs in memory idle
// and with its output ring full, and the CPU time it spends on heavy output.
//   node dist/bench/session.js [--runs 20] [--reconnects 5]

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { IpcConnection } from '../shared/ipc/client.js';
import type { Frame } from '../shared/ipc/frames.js';
import { exec } from '../shared/lib.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { BURROW, runCli, startDaemon, stopAllDaemons } from '../test/helpers/daemon.js';
import { fmt, summarize } from './stats.js';
import { timeRun } from './run.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A CLI process whose output we watch. */
// Every client started, ended when the bench ends however it ends: a persistent-session client
// left behind would reconnect, and restart its agent, for ever.
const watched = new Set<ChildProcess>();

function watch(args: string[], env: NodeJS.ProcessEnv): { proc: ChildProcess; out: () => string; until: (re: RegExp, ms?: number) => Promise<number> } {
  const proc = spawn(BURROW, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
  watched.add(proc);
  proc.once('exit', () => watched.delete(proc));
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return {
    proc,
    out: () => out,
    async until(re, ms = 20_000) {
      const deadline = Date.now() + ms;
      while (!re.test(out)) {
        if (Date.now() > deadline) throw new Error(`no ${re} in ${JSON.stringify(out.slice(-300))}`);
        await sleep(2);
      }
      return performance.now();
    },
  };
}

/**
 * RSS; PSS (shared pages divided among the processes mapping them: the fair share); and what is
 * the process's own (private): RSS also counts the node binary's pages every node process shares.
 */
function memMiB(pid: number): { rss: number; pss: number; private: number } {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0);
  return { rss: kb('Rss') / 1024, pss: kb('Pss') / 1024, private: (kb('Private_Dirty') + kb('Private_Clean')) / 1024 };
}

/** User plus system CPU time a process has used, in ms. */
function cpuMs(pid: number): number {
  // Fields after the command name; utime and stime are the 14th and 15th of the whole line.
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // USER_HZ is 100 on Linux
}

const mem = (m: { rss: number; pss: number; private: number }): string => `RSS ${m.rss.toFixed(1)} MiB, PSS ${m.pss.toFixed(1)}, own ${m.private.toFixed(1)}`;

async function libAttach(socket: string, target: string, name: string): Promise<number> {
  const t0 = performance.now();
  const c = await IpcConnection.connect({ socket });
  await new Promise<void>((resolve, reject) => {
    c.on('frame', (f: Frame) => {
      if (f.t === 'attached') resolve();
      else if (f.t === 'error') reject(new Error(f.message));
    });
    c.send({ t: 'session_open', target, name, readOnly: true, cols: 80, rows: 24 });
  });
  const ms = performance.now() - t0;
  c.close();
  return ms;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { runs: { type: 'string', default: '20' }, reconnects: { type: 'string', default: '5' } } });
  const runs = Number(values.runs);
  const reconnects = Number(values.reconnects);
  const agent = await startDaemon({ logLevel: 'info' });
  const host = await startDaemon({ args: ['--host'], logLevel: 'warn' });
  const keeperPids: number[] = [];
  try {
    host.authorizeKey(endpointKeyLine((await runCli(agent.cliEnv, ['host', 'id'])).stdout.trim()));
    const env = { ...process.env, ...agent.cliEnv };
    const t = host.ticket;
    // A session with a marker on its screen, left with no client.
    const maker = watch(['ssh', t, '--session', 'bench', 'echo BENCH-READY; exec sleep 100000'], env);
    await maker.until(/BENCH-READY/);
    maker.proc.kill('SIGKILL');
    await timeRun(BURROW, ['exec', t, '--', 'true'], env); // warm the connection

    const list = async (): Promise<{ name: string; keeperPid: number; pid: number }[]> => {
      const r = await runCli(agent.cliEnv, ['session', 'list', t, '--json']);
      if (r.code !== 0) throw new Error(`session list failed (${r.code}): ${r.stderr}`);
      return JSON.parse(r.stdout) as { name: string; keeperPid: number; pid: number }[];
    };
    for (const s of await list()) keeperPids.push(s.keeperPid);

    // Attach: CLI start to the screen drawn, interleaved with a warm exec of `true`.
    const attach: number[] = [];
    const execTrue: number[] = [];
    const libA: number[] = [];
    const libE: number[] = [];
    const status: number[] = [];
    for (let i = 0; i < runs; i++) {
      execTrue.push(await timeRun(BURROW, ['exec', t, '--', 'true'], env));
      // What the Node CLI costs before any work: both attach and exec run in the native client,
      // the Node CLI only takes over a lost attach; this shows what attach cost before.
      status.push(await timeRun(BURROW, ['status'], env));
      const t0 = performance.now();
      const w = watch(['session', 'attach', t, 'bench', '--read-only'], env);
      const t1 = await w.until(/BENCH-READY/);
      attach.push(t1 - t0);
      w.proc.kill('SIGKILL');
      await new Promise((r) => w.proc.once('exit', r));
      libA.push(await libAttach(agent.socket, t, 'bench'));
      const e0 = performance.now();
      await exec(t, 'true', { socket: agent.socket });
      libE.push(performance.now() - e0);
    }

    // Reconnection: a client attached to a session that prints a tick every 20 ms; the agent is
    // killed; time until ticks flow again (the client restarts the agent itself).
    const autoEnv = { ...env, BURROW_NO_AUTOSTART: '0', BURROW_RELAY: 'disabled', BURROW_BIND: '127.0.0.1:0' };
    const ticker = watch(['ssh', t, '--session', 'ticks', 'i=0; while :; do i=$((i+1)); echo tick$i; sleep 0.02; done'], autoEnv);
    await ticker.until(/tick5\r?\n/);
    const reconnect: number[] = [];
    for (let i = 0; i < reconnects; i++) {
      const st = JSON.parse((await runCli(agent.cliEnv, ['status', '--json'])).stdout) as { daemon: { pid: number } };
      const before = ticker.out().length;
      const k0 = performance.now();
      process.kill(st.daemon.pid, 'SIGKILL');
      const lost = () => ticker.out().indexOf('reconnecting', before);
      await ticker.until(/reconnecting/);
      const deadline = Date.now() + 30_000;
      while (!/tick\d+\r?\n/.test(ticker.out().slice(Math.max(before, lost())))) {
        if (Date.now() > deadline) throw new Error('client did not reconnect');
        await sleep(2);
      }
      reconnect.push(performance.now() - k0);
      await sleep(500);
    }
    for (const s of await list()) if (!keeperPids.includes(s.keeperPid)) keeperPids.push(s.keeperPid);
    ticker.proc.kill('SIGKILL');

    // Memory: an idle keeper (the `bench` session), then one whose ring has been filled.
    await sleep(1000);
    const keeperOf = async (name: string): Promise<number> => (await list()).find((s) => s.name === name)!.keeperPid;
    const idle = memMiB(await keeperOf('bench'));
    const filler = watch(['ssh', t, '--session', 'full', 'head -c 3000000 /dev/urandom | base64; echo FILL-DONE; exec sleep 100000'], env);
    await filler.until(/FILL-DONE/, 60_000);
    filler.proc.kill('SIGKILL');
    for (const s of await list()) if (!keeperPids.includes(s.keeperPid)) keeperPids.push(s.keeperPid);
    await sleep(1000);
    const full = memMiB(await keeperOf('full'));
    const floor = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)']);
    await sleep(500);
    const nodeFloor = memMiB(floor.pid!);
    floor.kill();

    // Heavy output: 8 MB of `yes` in an attached session (terminal, ring and client all fed); the
    // keeper's CPU time from the gate opening until the shell is done. The shell waits on a file so
    // the keeper's start-up is not counted.
    const gateDir = mkdtempSync(join(tmpdir(), 'burrow-bench-'));
    const gate = join(gateDir, 'go');
    const heavy = watch(['ssh', t, '--session', 'heavy', `echo HEAVY-WAIT; while [ ! -e ${gate} ]; do sleep 0.05; done; yes | head -c 8000000; echo HEAVY-DONE; exec sleep 100000`], env);
    await heavy.until(/HEAVY-WAIT/);
    const heavyPid = await keeperOf('heavy');
    keeperPids.push(heavyPid);
    const cpu0 = cpuMs(heavyPid);
    const h0 = performance.now();
    writeFileSync(gate, '');
    await heavy.until(/HEAVY-DONE/, 120_000);
    const heavyWall = performance.now() - h0;
    const heavyCpu = cpuMs(heavyPid) - cpu0;
    heavy.proc.kill('SIGKILL');
    rmSync(gateDir, { recursive: true, force: true });

    const s = summarize;
    const lines = [
      `persistent sessions, ${runs} attaches interleaved with warm exec of \`true\` (iroh host on loopback); ms`,
      `  attach (CLI start to screen drawn)  ${fmt(s(attach), 'ms')}   ratio to exec true ${(s(attach).median / s(execTrue).median).toFixed(2)}   (native client)`,
      `  exec true (CLI, warm)               ${fmt(s(execTrue), 'ms')}   (native client)`,
      `  burrow status (Node CLI floor)      ${fmt(s(status), 'ms')}   attach / this floor: ${(s(attach).median / s(status).median).toFixed(2)}`,
      `  attach (library, to 'attached')     ${fmt(s(libA), 'ms')}   ratio to library exec ${(s(libA).median / s(libE).median).toFixed(2)}`,
      `  exec true (library, warm)           ${fmt(s(libE), 'ms')}`,
      `  reconnect after agent SIGKILL       ${fmt(s(reconnect), 'ms')}   (kill to output flowing again, agent restarted by the client)`,
      `  keeper memory idle: ${mem(idle)}; with a full 2 MiB ring: ${mem(full)}`,
      `  bare node process (setInterval): ${mem(nodeFloor)}   (the rest of RSS is node's code, shared by every node process)`,
      `  keeper CPU for 8 MB of \`yes\` output, one client attached: ${heavyCpu.toFixed(0)} ms CPU over ${heavyWall.toFixed(0)} ms`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    process.stdout.write(JSON.stringify({ bench: 'session', attach: s(attach), execTrue: s(execTrue), status: s(status), libAttach: s(libA), libExec: s(libE), reconnect: s(reconnect), keeperRssMiB: { idle, full, nodeFloor }, heavyOutput: { cpuMs: heavyCpu, wallMs: heavyWall } }) + '\n');
    await runCli(autoEnv, ['daemon', 'stop']);
  } finally {
    for (const p of watched) p.kill('SIGKILL');
    for (const pid of keeperPids) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone
      }
    }
    await stopAllDaemons();
  }
}

await main();
