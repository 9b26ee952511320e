// Pairing by code between real daemons: burrow invite on a host, burrow join on a client, an
// in-test pkarr relay on 127.0.0.1 as the rendezvous (mDNS off: see test/pair-mdns.test.ts).

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { readAliases } from '../shared/aliases.js';
import { formatCode, parseCode } from '../shared/pair/code.js';
import { PAIR_WORDS } from '../shared/pair/words.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { decodeTxtPacket, encodeTxtPacket, nameplateKey, PkarrRelay, z32Encode } from '../daemon/pair/pkarr.js';
import { recordStrings } from '../daemon/pair/rendezvous.js';
import { parseDaemonArgs } from '../daemon/config.js';
import { MessageStream, runInviter, type InviterOutcome } from '../daemon/pair/protocol.js';
import { IrohTransport, PAIR_ALPN, parseTicket, type IrohConnection } from '../daemon/transport/iroh.js';
import { BURROW, runCli, startDaemon, stopAllDaemons, type RunningDaemon } from './helpers/daemon.js';
import { quietLog } from './helpers/iroh.js';
import { endpointsOf, keysOf, recordTypes } from './helpers/pair.js';
import { startPkarrRelay, type TestPkarrRelay } from './helpers/pkarr-relay.js';

const WRONG = 'code did not match (or someone else answered): ask for a new code';

let relay: TestPkarrRelay;
beforeAll(async () => {
  relay = await startPkarrRelay();
});
afterAll(async () => {
  await stopAllDaemons();
  await relay.close();
});
// Each test starts its own daemons; they go when it ends.
afterEach(stopAllDaemons);

const started: ChildProcess[] = [];
afterEach(() => {
  for (const p of started.splice(0)) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

const pairArgs = (): string[] => ['--pkarr-relay', relay.url, '--mdns', 'off'];
const startHost = (): Promise<RunningDaemon> => startDaemon({ args: ['--host', ...pairArgs()] });
const startClient = (): Promise<RunningDaemon> => startDaemon({ args: pairArgs() });

interface RunningInvite {
  code: string;
  proc: ChildProcess;
  done: Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** What it has written to stderr so far. */
  stderr(): string;
}

/** `burrow invite ARGS` as a live process; resolves once it printed its code line. */
function startInvite(host: RunningDaemon, args: string[] = []): Promise<RunningInvite> {
  const proc = spawn(BURROW, ['invite', ...args], { env: { ...process.env, ...host.cliEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
  started.push(proc);
  let stdout = '';
  let stderr = '';
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((r) => proc.once('close', (code) => r({ code, stdout, stderr })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no code line: ${stdout} ${stderr}`)), 20_000);
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /^code: (\S+)$/m.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve({ code: m[1]!, proc, done, stderr: () => stderr });
      }
    });
    void done.then((r) => reject(new Error(`burrow invite exited ${r.code}: ${r.stderr}`)));
  });
}

const idOf = async (d: RunningDaemon): Promise<string> => (await runCli(d.cliEnv, ['host', 'id'])).stdout.trim();

/** The same code as a hurried person types it: upper case, spaces, each word cut to its shortest unambiguous prefix. */
function typedSloppily(code: string): string {
  const c = parseCode(code);
  const short = c.words.map((w) => {
    for (let n = 1; n <= w.length; n++) {
      const p = w.slice(0, n);
      if (PAIR_WORDS.filter((x) => x.startsWith(p)).length === 1) return p;
    }
    return w;
  });
  return `${c.nameplate}  ${short.join(' ').toUpperCase()}`;
}

/** A code with the right nameplate and different words. */
function wrongWords(code: string): string {
  const c = parseCode(code);
  return formatCode({ nameplate: c.nameplate, words: c.words.map((w) => PAIR_WORDS[(PAIR_WORDS.indexOf(w) + 1) % PAIR_WORDS.length] as string) });
}

/** What the relay holds under a nameplate now: the TXT strings, or [] once withdrawn. */
async function recordAt(nameplate: string): Promise<string[]> {
  const r = await new PkarrRelay(relay.url).get(nameplateKey(nameplate).publicKey);
  return r ? decodeTxtPacket(r.packet).flatMap((t) => t.strings) : [];
}

describe('pairing by code', () => {
  it('invite + join (typed sloppily) over the pkarr relay: exec ALIAS works, the host lists hold exactly the new id and key, the code is single use', async () => {
    const host = await startHost();
    const client = await startClient();
    const clientId = await idOf(client);
    const inv = await startInvite(host, ['--as', 'lab']);
    const nameplate = parseCode(inv.code).nameplate;
    // The record names the inviter's endpoint and addresses, nothing else.
    const rec = await recordAt(nameplate);
    expect(rec).toContain(`id=${host.endpointId}`);
    expect(rec.every((s) => /^(v=1|id=[0-9a-f]{64}|addr=\S+|relay=\S+)$/.test(s))).toBe(true);
    expect(rec.join(' ')).not.toContain(parseCode(inv.code).words[0]);

    const j = await runCli(client.cliEnv, ['join', typedSloppily(inv.code)], { timeoutMs: 60_000 });
    expect(j.stderr).toBe('');
    expect(j.code).toBe(0);
    expect(j.stdout).toContain('alias: lab');
    const r = await inv.done;
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toBe(`code: ${inv.code}`);
    expect(r.stdout).toContain(`joined:`);
    expect(r.stdout).toContain(clientId);

    expect(endpointsOf(host)).toEqual([clientId]);
    expect(keysOf(host)).toEqual([endpointKeyLine(clientId).split(' ')[1]]);
    expect(readAliases(client.state)['lab']).toMatch(/^endpoint/);
    const e = await runCli(client.cliEnv, ['exec', 'lab', '--', 'true'], { timeoutMs: 60_000 });
    expect(e.stderr).toBe('');
    expect(e.code).toBe(0);
    // The attempt is logged with the peer's endpoint id; the code's words never are.
    expect(host.logs.some((l) => l.event === 'pair_attempt' && l['peer'] === clientId)).toBe(true);
    expect(JSON.stringify(host.logs)).not.toContain(parseCode(inv.code).words.join('-'));
    expect(await recordAt(nameplate)).toEqual([]);

    // Reusing the code after success finds nothing.
    const again = await runCli(client.cliEnv, ['join', inv.code, '--as', 'lab2'], { timeoutMs: 60_000 });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/NotFound|no open invitation|could not find/);
    expect(readAliases(client.state)['lab2']).toBeUndefined();
  }, 120_000);

  it('a wrong code: join fails with the message, the invitation is burned (the right code then fails too), nothing is authorized', async () => {
    const host = await startHost();
    const client = await startClient();
    const clientId = await idOf(client);
    const inv = await startInvite(host);
    const j = await runCli(client.cliEnv, ['join', wrongWords(inv.code)], { timeoutMs: 60_000 });
    expect(j.code).toBe(1);
    expect(j.stderr).toContain(WRONG);
    const r = await inv.done;
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('a wrong code was tried');
    expect(r.stderr).toContain(clientId);
    expect(host.logs.some((l) => l.event === 'pair_failed' && l['peer'] === clientId)).toBe(true);
    expect(await recordAt(parseCode(inv.code).nameplate)).toEqual([]);

    // The joiner remembers the failed code: retrying it sends nothing (a squatter gets no new guess)...
    const key = z32Encode(nameplateKey(parseCode(inv.code).nameplate).publicKey);
    const asked = (): number => relay.requests.filter((q) => q.key === key && q.method === 'GET').length;
    const before = asked();
    const retry = await runCli(client.cliEnv, ['join', typedSloppily(wrongWords(inv.code))], { timeoutMs: 60_000 });
    expect(retry.code).toBe(1);
    expect(retry.stderr).toContain('this code already failed here');
    expect(asked()).toBe(before);
    // ...unless told to, and then it meets the burned invitation.
    const forced = await runCli(client.cliEnv, ['join', wrongWords(inv.code), '--force'], { timeoutMs: 60_000 });
    expect(forced.code).toBe(1);
    expect(asked()).toBeGreaterThan(before);
    expect(readFileSync(join(client.state, 'pair-spent-codes'), 'utf8')).not.toContain(parseCode(inv.code).words[0]);
    const right = await runCli(client.cliEnv, ['join', inv.code], { timeoutMs: 60_000 });
    expect(right.code).toBe(1);
    expect(endpointsOf(host)).toEqual([]);
    expect(keysOf(host)).toEqual([]);
    expect(readAliases(client.state)).toEqual({});
  }, 120_000);

  it('a squatter publishing its own record under the nameplate: join fails, its one PAKE guess fails without seeing the offer, nothing is authorized, the real invitation is burned naming it', async () => {
    const host = await startHost();
    const client = await startClient();
    const inv = await startInvite(host);
    const nameplate = parseCode(inv.code).nameplate;
    // The squatter knows the nameplate (the key is derived from it, anyone can write the record)
    // and answers with a PAKE for a guessed password: a real endpoint running the real protocol.
    const squatter = await IrohTransport.bind({ seed: randomBytes(32), relay: { mode: 'disabled' }, bind: '127.0.0.1:0', log: quietLog });
    const outcomes: InviterOutcome[] = [];
    const received: string[][] = [];
    let authorizedBySquatter = 0;
    try {
      squatter.serve({
        authorize: () => Promise.resolve({ ok: false, reason: 'squatter' }),
        onConnection: () => undefined,
        pairing: (victim) => {
          void victim.acceptStream().then(async (st) => {
            st.on('error', () => undefined);
            received.push(recordTypes(st));
            const o = await runInviter(new MessageStream(st), {
              joinerId: victim.remoteId,
              inviterId: squatter.endpointId,
              hooks: {
                claim: () => ({ password: 'aardvark-absurd-accrue' }),
                accept: () => {
                  authorizedBySquatter++;
                  return Promise.resolve({ ticket: squatter.ticket(), name: 'evil' });
                },
              },
            });
            outcomes.push(o);
          });
          return true;
        },
      });
      const squat = (): Promise<void> => new PkarrRelay(relay.url).put(nameplateKey(nameplate), encodeTxtPacket([{ name: `_burrow-pair.${nameplateKey(nameplate).z32}`, ttl: 60, strings: recordStrings(squatter.addr()) }]));
      await squat();
      // The host notices within its 2 s watch and burns the code: burrow invite exits 1 naming
      // the squatter, and the code no longer works at the host.
      const r = await inv.done;
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`overwritten by endpoint ${squatter.endpointId}`);
      expect(r.stderr).toContain('burned');
      await host.waitLog((l) => l.event === 'pair_squatted' && l['peer'] === squatter.endpointId);
      expect((await runCli(host.cliEnv, ['invite', 'list'])).stdout).toContain('no open invitations');
      // The withdrawal erased the squat; a persistent squatter writes it again, and a join (the
      // user retrying the code) reaches it: one PAKE guess for it, which fails.
      await squat();
      const j = await runCli(client.cliEnv, ['join', inv.code], { timeoutMs: 60_000 });
      expect(j.code).toBe(1);
      expect(j.stderr).toContain(WRONG);
      await vi.waitFor(() => expect(outcomes).not.toHaveLength(0), { timeout: 10_000, interval: 50 });
      // The joiner left on the squatter's bad tag: the squatter saw `start`, never `confirm` (the offer).
      expect(outcomes).toEqual([{ kind: 'failed', reason: expect.stringContaining('left before confirming') as unknown as string }]);
      expect(received).toEqual([['start']]);
      expect(authorizedBySquatter).toBe(0);
      expect(endpointsOf(host)).toEqual([]);
      expect(keysOf(host)).toEqual([]);
      expect(readAliases(client.state)).toEqual({});
    } finally {
      await squatter.close();
    }
  }, 120_000);

  it('a squatter relaying to the real inviter: the channel binding fails, the real invitation reports the failed attempt, nothing is authorized', async () => {
    // The squatter feeds the joiner its record through a relay the host does not watch (as a
    // spoofed mDNS answer would), so the host learns of it only from the relayed attempt.
    const joinerRelay = await startPkarrRelay();
    const host = await startHost();
    const client = await startDaemon({ args: ['--pkarr-relay', joinerRelay.url, '--mdns', 'off'] });
    const inv = await startInvite(host);
    const nameplate = parseCode(inv.code).nameplate;
    const squatter = await IrohTransport.bind({ seed: randomBytes(32), relay: { mode: 'disabled' }, bind: '127.0.0.1:0', log: quietLog });
    const held: IrohConnection[] = [];
    try {
      squatter.serve({
        authorize: () => Promise.resolve({ ok: false, reason: 'squatter' }),
        onConnection: () => undefined,
        pairing: (victim) => {
          held.push(victim);
          void (async () => {
            const upstream = await squatter.dial(parseTicket(host.ticket), 10_000, PAIR_ALPN);
            held.push(upstream);
            void victim.closed.then(() => upstream.close('victim left'));
            const [a, b] = await Promise.all([victim.acceptStream(), upstream.openStream()]);
            a.on('error', () => undefined);
            b.on('error', () => undefined);
            a.pipe(b);
            b.pipe(a);
          })();
          return true;
        },
      });
      await new PkarrRelay(joinerRelay.url).put(nameplateKey(nameplate), encodeTxtPacket([{ name: `_burrow-pair.${nameplateKey(nameplate).z32}`, ttl: 60, strings: recordStrings(squatter.addr()) }]));
      const j = await runCli(client.cliEnv, ['join', inv.code], { timeoutMs: 60_000 });
      expect(j.code).toBe(1);
      expect(j.stderr).toContain(WRONG);
      const r = await inv.done;
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('a wrong code was tried');
      expect(r.stderr).toContain(squatter.endpointId);
      expect(endpointsOf(host)).toEqual([]);
      expect(keysOf(host)).toEqual([]);
      expect(readAliases(client.state)).toEqual({});
    } finally {
      for (const c of held) c.close();
      await squatter.close();
      await joinerRelay.close();
    }
  }, 120_000);

  it('an invitation expires: burrow invite exits 1, the record is withdrawn, join then fails', async () => {
    const host = await startHost();
    const client = await startClient();
    const inv = await startInvite(host, ['--ttl', '2']);
    const r = await inv.done;
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('expired');
    expect(await recordAt(parseCode(inv.code).nameplate)).toEqual([]);
    const j = await runCli(client.cliEnv, ['join', inv.code], { timeoutMs: 60_000 });
    expect(j.code).toBe(1);
    expect(endpointsOf(host)).toEqual([]);
  }, 60_000);

  it('invite --detach leaves the invitation with the daemon; invite list shows it; invite cancel ends it', async () => {
    const host = await startHost();
    const client = await startClient();
    const d = await runCli(host.cliEnv, ['invite', '--detach', '--as', 'box']);
    expect(d.code).toBe(0);
    const code = /^code: (\S+)$/m.exec(d.stdout)?.[1] ?? '';
    const nameplate = parseCode(code).nameplate;
    const list = await runCli(host.cliEnv, ['invite', 'list', '--json']);
    expect(JSON.parse(list.stdout)).toMatchObject([{ nameplate, name: 'box', state: 'open', detached: true }]);
    expect(list.stdout).not.toContain(parseCode(code).words[0]);
    expect((await runCli(host.cliEnv, ['invite', 'cancel', nameplate])).stdout).toContain('cancelled 1 invitation');
    expect((await runCli(host.cliEnv, ['invite', 'list'])).stdout).toContain('no open invitations');
    expect((await runCli(host.cliEnv, ['invite', 'cancel', nameplate])).code).toBe(1);
    expect(await recordAt(nameplate)).toEqual([]);
    const j = await runCli(client.cliEnv, ['join', code], { timeoutMs: 60_000 });
    expect(j.code).toBe(1);
    // A detached invitation can still be joined while open.
    const d2 = await runCli(host.cliEnv, ['invite', '--detach']);
    const code2 = /^code: (\S+)$/m.exec(d2.stdout)?.[1] ?? '';
    const j2 = await runCli(client.cliEnv, ['join', code2, '--as', 'h'], { timeoutMs: 60_000 });
    expect(j2.code).toBe(0);
    expect((await runCli(client.cliEnv, ['exec', 'h', '--', 'true'], { timeoutMs: 60_000 })).code).toBe(0);
  }, 120_000);

  it('a nameplate holding a live record elsewhere is not reused: with 1-99 all taken, the code gets a longer one', async () => {
    const host = await startHost();
    const relayClient = new PkarrRelay(relay.url);
    for (let n = 1; n <= 99; n++) {
      const key = nameplateKey(String(n));
      await relayClient.put(key, encodeTxtPacket([{ name: `_burrow-pair.${key.z32}`, ttl: 60, strings: ['v=1', `id=${'ab'.repeat(32)}`] }]));
    }
    try {
      const d = await runCli(host.cliEnv, ['invite', '--detach']);
      expect(d.code).toBe(0);
      const nameplate = Number(parseCode(/^code: (\S+)$/m.exec(d.stdout)?.[1] ?? '').nameplate);
      expect(nameplate).toBeGreaterThan(99);
      expect(host.logs.some((l) => l.event === 'pair_nameplate_taken')).toBe(true);
    } finally {
      relay.records.clear();
    }
  }, 60_000);

  it('refuses bad input before anything reaches the network, and invite on a non-host daemon', async () => {
    const client = await startClient();
    const asked = (): number => relay.requests.filter((q) => q.key === z32Encode(nameplateKey('12').publicKey)).length;
    const before = asked();
    const typo = await runCli(client.cliEnv, ['join', '12-aardvark-qqq-zulu']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain('not a word');
    expect(asked()).toBe(before);
    const notHost = await runCli(client.cliEnv, ['invite']);
    expect(notHost.code).toBe(2);
    expect(notHost.stderr).toContain('not a host');
  }, 60_000);
});

describe('pairing settings', () => {
  it('--pkarr-relay and --mdns come from flags or config.json, default to the n0 relay and on, and refuse bad values', () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-pair-config-'));
    try {
      const defaults = parseDaemonArgs(['--state', dir], {});
      expect(defaults).toMatchObject({ pkarrRelay: 'https://dns.iroh.link/pkarr', mdns: true });
      expect(parseDaemonArgs(['--state', dir, '--pkarr-relay', 'disabled', '--mdns', 'off'], {})).toMatchObject({ pkarrRelay: null, mdns: false });
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ pkarrRelay: 'http://127.0.0.1:9/pkarr', mdns: 'off' }));
      expect(parseDaemonArgs(['--state', dir], {})).toMatchObject({ pkarrRelay: 'http://127.0.0.1:9/pkarr', mdns: false });
      expect(() => parseDaemonArgs(['--state', dir, '--pkarr-relay', 'ftp://x'], {})).toThrow(/--pkarr-relay/);
      expect(() => parseDaemonArgs(['--state', dir, '--mdns', 'maybe'], {})).toThrow(/--mdns/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
