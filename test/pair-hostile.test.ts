// Pairing against hostile peers. Every peer here that misbehaves is deliberately hostile and
// written in this test: a raw iroh endpoint on loopback speaking (or abusing) burrow/pair/1 with
// the protocol's own framing and CPace. The host, the client and the CLI are the real ones.

import { randomBytes } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseKeyLine } from '../shared/authlists.js';
import { readAliases } from '../shared/aliases.js';
import { formatCode, parseCode, passwordOf } from '../shared/pair/code.js';
import { PAIR_WORDS } from '../shared/pair/words.js';
import { endpointKeyLine } from '../shared/sshkey.js';
import { CPaceParty, confirmationTag, tagsEqual } from '../daemon/pair/cpace.js';
import { encodeTxtPacket, nameplateKey, PkarrRelay } from '../daemon/pair/pkarr.js';
import { channelIdentifier, MessageStream, PairRefused, payloadKey, payloadMac, runInviter } from '../daemon/pair/protocol.js';
import { recordStrings } from '../daemon/pair/rendezvous.js';
import { PAIR_ALPN, parseTicket, type IrohConnection, type IrohStream, type IrohTransport } from '../daemon/transport/iroh.js';
import { runCli, startDaemon, stopAllDaemons, type RunningDaemon } from './helpers/daemon.js';
import { bindLoopback } from './helpers/iroh.js';
import { endpointsOf, keysOf, rawKeysFile, recordTypes } from './helpers/pair.js';
import { startPkarrRelay, type TestPkarrRelay } from './helpers/pkarr-relay.js';

const AD_JOIN = Buffer.from('burrow join');
const AD_INVITE = Buffer.from('burrow invite');
const ESC = '\u001b';

let relay: TestPkarrRelay;
let host: RunningDaemon;
let client: RunningDaemon;
let clientId: string;
const hostiles: IrohTransport[] = [];

beforeAll(async () => {
  relay = await startPkarrRelay();
  const args = ['--pkarr-relay', relay.url, '--mdns', 'off'];
  [host, client] = await Promise.all([startDaemon({ args: ['--host', ...args] }), startDaemon({ args })]);
  clientId = (await runCli(client.cliEnv, ['host', 'id'])).stdout.trim();
}, 60_000);
afterAll(async () => {
  await Promise.all(hostiles.splice(0).map((t) => t.close()));
  await stopAllDaemons();
  await relay.close();
});

async function hostile(): Promise<IrohTransport> {
  const t = await bindLoopback();
  hostiles.push(t);
  return t;
}

interface Invitation {
  code: string;
  nameplate: string;
  /** Host log lines before this index belong to earlier invitations (nameplates get reused). */
  since: number;
}

/** A detached invitation on the shared host. */
async function invite(): Promise<Invitation> {
  const since = host.logs.length;
  const d = await runCli(host.cliEnv, ['invite', '--detach']);
  expect(d.code).toBe(0);
  const code = /^code: (\S+)$/m.exec(d.stdout)?.[1] ?? '';
  return { code, nameplate: parseCode(code).nameplate, since };
}

async function stateOf(nameplate: string): Promise<string | undefined> {
  const list = JSON.parse((await runCli(host.cliEnv, ['invite', 'list', '--json'])).stdout) as { nameplate: string; state: string }[];
  return list.find((i) => i.nameplate === nameplate)?.state;
}

/** Wait (up to 15 s) until this invitation has closed in `state`. */
async function closedFor(inv: Invitation, state: string): Promise<void> {
  const seen = (): boolean => host.logs.slice(inv.since).some((l) => l.event === 'pair_invitation_closed' && l['nameplate'] === inv.nameplate && l['state'] === state);
  await vi.waitFor(() => expect(seen()).toBe(true), { timeout: 15_000, interval: 50 });
}

async function dialPair(t: IrohTransport): Promise<{ conn: IrohConnection; st: IrohStream }> {
  const conn = await t.dial(parseTicket(host.ticket), 10_000, PAIR_ALPN);
  const st = await conn.openStream();
  st.on('error', () => undefined);
  return { conn, st };
}

/** A hostile joiner that knows the code: real CPace, then whatever `confirm` it chooses. */
async function joinWithCode(t: IrohTransport, code: string, how: { badTag?: boolean; key?: string }): Promise<{ welcome?: unknown; error?: Error; types: string[] }> {
  const c = parseCode(code);
  const { conn, st } = await dialPair(t);
  const types = recordTypes(st);
  const ms = new MessageStream(st);
  try {
    const sid = randomBytes(16);
    const a = new CPaceParty('initiator', Buffer.from(passwordOf(c)), channelIdentifier(t.endpointId, conn.remoteId), sid, AD_JOIN);
    ms.send({ t: 'start', v: 1, nameplate: c.nameplate, sid, share: Buffer.from(a.share) });
    const m = await ms.next('share', 10_000);
    const yb = Buffer.from(m['share'] as Uint8Array);
    const keys = a.finish(yb, AD_INVITE);
    // The shares are right: the inviter's tag verifies under this code.
    expect(tagsEqual(Buffer.from(m['tag'] as Uint8Array), confirmationTag(keys.macKey, yb, AD_INVITE))).toBe(true);
    const key = how.key ?? endpointKeyLine(t.endpointId);
    const tag = how.badTag ? randomBytes(64) : confirmationTag(keys.macKey, a.share, AD_JOIN);
    ms.send({ t: 'confirm', tag, key, name: 'hostile', mac: payloadMac(payloadKey(keys.isk, 'joiner'), [key, 'hostile']) });
    return { welcome: await ms.next('welcome', 10_000), types };
  } catch (err) {
    return { error: err as Error, types };
  } finally {
    conn.close();
  }
}

/** Write as fast as flow control lets, until the stream fails, `max` bytes or `ms` pass. */
async function flood(st: IrohStream, max: number, ms: number): Promise<{ sent: number; stoppedAfterMs: number; failed: boolean }> {
  const t0 = Date.now();
  const chunk = Buffer.alloc(64 * 1024, 0x41);
  let sent = 0;
  let failed = false;
  st.once('error', () => (failed = true));
  while (!failed && sent < max && Date.now() - t0 < ms) {
    const ok = st.write(chunk);
    sent += chunk.length;
    if (!ok) {
      await new Promise<void>((r) => {
        const done = (): void => r();
        st.once('drain', done);
        st.once('error', done);
        st.once('close', done);
        setTimeout(done, 500).unref();
      });
    }
    if (st.destroyed) failed = true;
  }
  return { sent, stoppedAfterMs: Date.now() - t0, failed };
}

describe('the pairing message stream', () => {
  it('keeps at most one message of unread input: more is cut off at once, the stream destroyed', async () => {
    // A PassThrough is its own peer: what is written to it arrives as input, with no reader waiting.
    const s = new PassThrough();
    const ms = new MessageStream(s);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(100);
    s.write(Buffer.concat([head, Buffer.alloc(100)]));
    for (let i = 0; i < 64 && !s.destroyed; i++) s.write(Buffer.alloc(1024));
    await new Promise((r) => setImmediate(r));
    expect(s.destroyed).toBe(true);
    await expect(ms.next('start', 1000)).rejects.toThrow(/over 16384 bytes unread/);
  });
});

describe('pairing against hostile peers', () => {
  it('a flood after a refused start is cut off within seconds, and burrow exec to the host stays responsive meanwhile', async () => {
    await runCli(host.cliEnv, ['host', 'authorize', clientId]);
    const { nameplate } = await invite();
    // Four hostile endpoints, two connections each (the most one peer gets), all flooding at once.
    const peers = await Promise.all(Array.from({ length: 4 }, () => hostile()));
    const streams = (await Promise.all(peers.flatMap((t) => [dialPair(t), dialPair(t)]))).map((d) => d.st);
    const floods = streams.map((st) => {
      // `start` for a nameplate with no invitation: refused, no guess spent; then the flood.
      new MessageStream(st).send({ t: 'start', v: 1, nameplate: '0', sid: randomBytes(16), share: randomBytes(32) });
      return flood(st, 50 * 1024 * 1024, 20_000);
    });
    const t0 = Date.now();
    const e = await runCli(client.cliEnv, ['exec', host.ticket, '--', 'true'], { timeoutMs: 30_000 });
    const execMs = Date.now() - t0;
    const fs = await Promise.all(floods);
    expect(e.stderr).toBe('');
    expect(e.code).toBe(0);
    expect(execMs).toBeLessThan(15_000);
    // Cut off: every stream failed long before 50 MB or the 20 s bound.
    for (const f of fs) {
      expect(f.failed).toBe(true);
      expect(f.stoppedAfterMs).toBeLessThan(10_000);
      expect(f.sent).toBeLessThan(50 * 1024 * 1024);
    }
    for (const t of peers) expect(host.logs.some((l) => l.event === 'pair_refused' && l['peer'] === t.endpointId)).toBe(true);
    expect(await stateOf(nameplate)).toBe('open');
    await runCli(host.cliEnv, ['invite', 'cancel', nameplate]);
  }, 90_000);

  it('an oversized message (and a flood) before start is cut off at the limit and spends no guess', async () => {
    const { nameplate } = await invite();
    const t = await hostile();
    const { st } = await dialPair(t);
    const head = Buffer.alloc(4);
    head.writeUInt32BE(1024 * 1024);
    st.write(head);
    const f = await flood(st, 50 * 1024 * 1024, 20_000);
    expect(f.failed).toBe(true);
    expect(f.stoppedAfterMs).toBeLessThan(10_000);
    await host.waitLog((l) => l.event === 'pair_refused' && l['peer'] === t.endpointId && /over/.test(String(l['reason'])));
    expect(await stateOf(nameplate)).toBe('open');
    await runCli(host.cliEnv, ['invite', 'cancel', nameplate]);
  }, 60_000);

  it('a slow peer that sends no start within 5 s is let go, and spends no guess', async () => {
    const { nameplate } = await invite();
    const t = await hostile();
    const { conn, st } = await dialPair(t);
    const t0 = Date.now();
    st.write(Buffer.from([0, 0])); // half a length prefix: the stream exists, no message ever comes
    await Promise.race([conn.closed, new Promise((r) => setTimeout(r, 15_000))]);
    expect(conn.isClosed).toBe(true);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(host.logs.some((l) => l.event === 'pair_refused' && l['peer'] === t.endpointId && /no start/.test(String(l['reason'])))).toBe(true);
    expect(await stateOf(nameplate)).toBe('open');
    await runCli(host.cliEnv, ['invite', 'cancel', nameplate]);
  }, 60_000);

  it('two joins racing for one invitation: the second is refused as "answering" without a guess; the first alone spends it', async () => {
    const inv = await invite();
    const { nameplate } = inv;
    const [first, second] = await Promise.all([hostile(), hostile()]);
    const one = await dialPair(first);
    const ms1 = new MessageStream(one.st);
    ms1.send({ t: 'start', v: 1, nameplate, sid: randomBytes(16), share: Buffer.from(new CPaceParty('initiator', Buffer.from('a-guess'), Buffer.from('x'), randomBytes(16), AD_JOIN).share) });
    await ms1.next('share', 10_000); // the first holds the claim
    const two = await dialPair(second);
    const ms2 = new MessageStream(two.st);
    ms2.send({ t: 'start', v: 1, nameplate, sid: randomBytes(16), share: randomBytes(32) });
    const refused = await ms2.next('share', 10_000).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(PairRefused);
    expect((refused as PairRefused).why).toBe('answering');
    one.conn.close();
    await closedFor(inv, 'burned');
    const attempts = host.logs.slice(inv.since).filter((l) => l.event === 'pair_attempt' && l['nameplate'] === nameplate);
    expect(attempts.map((l) => l['peer'])).toEqual([first.endpointId]);
    two.conn.close();
  }, 60_000);

  it('a joiner with the right shares but a wrong confirmation tag: burned, nothing authorized, no welcome', async () => {
    const inv = await invite();
    const t = await hostile();
    const r = await joinWithCode(t, inv.code, { badTag: true });
    expect(r.welcome).toBeUndefined();
    expect(r.types).toEqual(['share']);
    await closedFor(inv, 'burned');
    expect(host.logs.some((l) => l.event === 'pair_failed' && l['peer'] === t.endpointId && /wrong code/.test(String(l['reason'])))).toBe(true);
    expect(endpointsOf(host)).not.toContain(t.endpointId);
    expect(keysOf(host)).not.toContain(endpointKeyLine(t.endpointId).split(' ')[1]);
  }, 60_000);

  it('invalid shares (the identity, a non-canonical encoding) burn the invitation and authorize nothing', async () => {
    for (const share of [Buffer.alloc(32), Buffer.alloc(32, 0xff)]) {
      const inv = await invite();
      const t = await hostile();
      const { conn, st } = await dialPair(t);
      const types = recordTypes(st);
      new MessageStream(st).send({ t: 'start', v: 1, nameplate: inv.nameplate, sid: randomBytes(16), share });
      await closedFor(inv, 'burned');
      expect(host.logs.some((l) => l.event === 'pair_failed' && l['peer'] === t.endpointId && /invalid share/.test(String(l['reason'])))).toBe(true);
      expect(types).not.toContain('share');
      expect(endpointsOf(host)).not.toContain(t.endpointId);
      conn.close();
    }
  }, 60_000);

  it("the joiner's key line is never authorized: a newline in it cannot add a line with options of its choosing", async () => {
    const inv = await invite();
    const t = await hostile();
    const other = endpointKeyLine(randomBytes(32).toString('hex')).split(' ')[1];
    const sneaky = `${endpointKeyLine(t.endpointId)} me\ncommand="touch /tmp/pwned",no-pty ssh-ed25519 ${other} evil`;
    const r = await joinWithCode(t, inv.code, { key: sneaky });
    expect(r.error).toBeUndefined();
    await closedFor(inv, 'joined');
    // Exactly what `burrow host authorize ID` writes for the TLS-proven id, nothing of the offer.
    expect(rawKeysFile(host)).not.toContain('command=');
    expect(keysOf(host)).not.toContain(other);
    expect(keysOf(host)).toContain(endpointKeyLine(t.endpointId).split(' ')[1]);
    expect(endpointsOf(host)).toContain(t.endpointId);
    // The shared key-line parser refuses control characters anywhere, so `burrow host authorize` does too.
    expect(parseKeyLine(sneaky)).toBeNull();
    expect(parseKeyLine(`ssh-ed25519 ${other} a${ESC}[2Jb`)).toBeNull();
    expect(parseKeyLine(`ssh-ed25519\t${other}\tok`)).not.toBeNull();
    const a = await runCli(host.cliEnv, ['host', 'authorize', sneaky]);
    expect(a.code).toBe(2);
    expect(keysOf(host)).not.toContain(other);
  }, 60_000);

  it('more than 2 connections from one peer, or 16 in all, are refused as busy; a real join reports busy and its code stays good', async () => {
    const { code, nameplate } = await invite();
    const peers = await Promise.all(Array.from({ length: 8 }, () => hostile()));
    let filling = true;
    const until = Date.now() + 40_000;
    // Each hostile slot: connect, half a message, wait to be let go (5 s), again, while filling.
    const hold = async (t: IrohTransport): Promise<void> => {
      while (filling && Date.now() < until) {
        try {
          const { conn, st } = await dialPair(t);
          st.write(Buffer.from([0, 0]));
          await Promise.race([conn.closed, new Promise<void>((r) => setTimeout(r, 8000))]);
          conn.close();
        } catch {
          // refused or closed under us: try again
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const holders = peers.flatMap((t) => [hold(t), hold(t)]);
    const deadline = Date.now() + 15_000;
    // A third connection from one peer is refused as busy at once.
    await new Promise((r) => setTimeout(r, 1500));
    // (The refusal may already close it while the stream opens.)
    const reason = await dialPair(peers[0]!).then(
      (extra) => {
        extra.st.write(Buffer.from([0, 0]));
        return Promise.race([extra.conn.closed, new Promise<string>((r) => setTimeout(() => r('still open'), 10_000))]);
      },
      (err: unknown) => String(err),
    );
    expect(reason).toContain('busy');
    // The host's log line arrives on its stderr a moment after the refusal reached us.
    await host.waitLog((l) => l.event === 'pair_busy', 5000);
    expect(Date.now()).toBeLessThan(deadline);
    // A real joiner meets the full host: told "busy, try again", its code not spent.
    const j = await runCli(client.cliEnv, ['join', code, '--as', 'busyhost'], { timeoutMs: 60_000 });
    filling = false;
    expect(j.stderr).toContain('busy');
    expect(j.code).toBe(1);
    expect(j.stderr).toContain('try again');
    expect(host.logs.some((l) => l.event === 'pair_busy' && l['peer'] === clientId)).toBe(true);
    await Promise.all(holders);
    await Promise.all(peers.map((t) => t.close()));
    expect(await stateOf(nameplate)).toBe('open');
    const again = await runCli(client.cliEnv, ['join', code, '--as', 'busyhost'], { timeoutMs: 60_000 });
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
  }, 120_000);
});

describe('a hostile inviter (a squatter that answers the nameplate)', () => {
  /** Publish a record under `nameplate` naming `t`, which answers pairings with `serve`. */
  async function squat(t: IrohTransport, nameplate: string, serve: (conn: IrohConnection) => void): Promise<void> {
    t.serve({ authorize: () => Promise.resolve({ ok: false, reason: 'hostile' }), onConnection: () => undefined, pairing: (c) => (serve(c), true) });
    const key = nameplateKey(nameplate);
    await new PkarrRelay(relay.url).put(key, encodeTxtPacket([{ name: `_burrow-pair.${key.z32}`, ttl: 60, strings: recordStrings(t.addr()) }]));
  }
  const codeUnder = (nameplate: string): string => formatCode({ nameplate, words: [0, 1, 2].map(() => PAIR_WORDS[randomBytes(2).readUInt16BE(0) % PAIR_WORDS.length] as string) });

  it('its refusal text (escape sequences) never reaches the joiner: only the fixed message is printed', async () => {
    const t = await hostile();
    const nameplate = '9871';
    await squat(t, nameplate, (c) => {
      void c.acceptStream().then((st) => {
        st.on('error', () => undefined);
        const ms = new MessageStream(st);
        void ms.next('start', 10_000).then(() => ms.send({ t: 'fail', why: 'none', reason: `${ESC}]0;owned${'\u0007'}${ESC}[2J EVIL TEXT` }));
      });
    });
    const j = await runCli(client.cliEnv, ['join', codeUnder(nameplate)], { timeoutMs: 60_000 });
    expect(j.code).toBe(1);
    expect(j.stderr).toContain(`no open invitation under nameplate ${nameplate}: ask for a new code`);
    expect(j.stderr).not.toContain(ESC);
    expect(j.stderr).not.toContain('EVIL');
  }, 60_000);

  it('one that knows the code but offers a ticket for another endpoint: join refuses it, no alias; its name is printed without control characters', async () => {
    const t = await hostile();
    const nameplate = '9872';
    const code = codeUnder(nameplate);
    let ticket = host.ticket; // not the squatter's own endpoint
    await squat(t, nameplate, (c) => {
      void c.acceptStream().then((st) => {
        st.on('error', () => undefined);
        void runInviter(new MessageStream(st), {
          joinerId: c.remoteId,
          inviterId: t.endpointId,
          hooks: { claim: () => ({ password: passwordOf(parseCode(code)) }), accept: () => Promise.resolve({ ticket, name: `box${ESC}[31m` }) },
        });
      });
    });
    const before = Object.keys(readAliases(client.state));
    const j = await runCli(client.cliEnv, ['join', code], { timeoutMs: 60_000 });
    expect(j.code).toBe(1);
    expect(j.stderr).toContain('the host offered a ticket for another endpoint');
    expect(Object.keys(readAliases(client.state))).toEqual(before);
    // Its own ticket is accepted, and the name it chose arrives printable.
    ticket = t.ticket();
    const ok = await runCli(client.cliEnv, ['join', code, '--as', 'squatted'], { timeoutMs: 60_000 });
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).not.toContain(ESC);
    expect(ok.stdout).toContain('paired with box\\x1b[31m');
  }, 60_000);
});
