// The pairing exchange on one QUIC bi-stream (ALPN burrow/pair/1), opened by the joiner (CPace
// party A, initiator) to the inviter (B, responder). Messages are u32 big-endian length + a
// msgpack map:
//   A -> B  start   {v, nameplate, sid, share: Ya}
//   B -> A  share   {share: Yb, tag: Tb}                    (or fail {why, reason}: no guess spent)
//   A -> B  confirm {tag: Ta, key, name, mac}               (A sends only after Tb checked)
//   B -> A  welcome {ticket, name, mac}                     (B authorizes A before sending it)
// The channel identifier binds both endpoint ids as QUIC's TLS authenticated them, so a relaying
// third party makes the keys differ. Key schedule and reasoning: docs/ARCHITECTURE.md, Pairing.

import { createHmac, randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { pack, unpack } from 'msgpackr';
import { BurrowError, ErrorCodes, printable } from '../../shared/errors.js';
import { WRONG_CODE } from '../../shared/pair/spent.js';
import { CPaceAbort, CPaceParty, confirmationTag, lvCat, tagsEqual, type CPaceResult } from './cpace.js';

export const PROTOCOL = 'burrow/pair/1';
const MAX_MESSAGE = 16 * 1024;
const AD_JOINER = Buffer.from('burrow join');
const AD_INVITER = Buffer.from('burrow invite');

export { WRONG_CODE };

/**
 * Why an inviter refuses before any guess is spent, as sent in `fail {why}`. Before the PAKE has
 * confirmed the peer, the joiner prints only its own fixed text for these (refusalText), never
 * the peer's words: whoever answers a nameplate may be anyone.
 */
export type Refusal = 'none' | 'answering' | 'busy' | 'error';
/** The QUIC close reason of a pairing connection refused for load (too many at once, or from one peer). */
export const BUSY_REASON = 'busy';

export function refusalText(why: Refusal | undefined, nameplate: string): string {
  switch (why) {
    case 'none':
      return `no open invitation under nameplate ${nameplate}: ask for a new code`;
    case 'answering':
      return 'another machine is answering this invitation right now: ask for a new code';
    case 'busy':
      return 'the inviter is busy with other pairing connections: try again in a few seconds (the code was not spent)';
    default:
      return 'the inviter refused the pairing: ask for a new code';
  }
}

const REFUSALS: ReadonlySet<string> = new Set<Refusal>(['none', 'answering', 'busy', 'error']);

/** A pairing failure whose text the peer did not choose: the joiner's view of a refusal. */
export class PairRefused extends BurrowError {
  constructor(
    readonly why: Refusal | undefined,
    readonly peerReason: string,
  ) {
    super(ErrorCodes.PairingFailed, 'refused');
  }
}

/** CI = lv_cat(protocol, joiner id, inviter id): both ids as raw 32-byte keys, initiator first. */
export function channelIdentifier(joinerId: string, inviterId: string): Buffer {
  return lvCat(Buffer.from(PROTOCOL), Buffer.from(joinerId, 'hex'), Buffer.from(inviterId, 'hex'));
}

/** Keys for the messages after confirmation, one per direction, from ISK. */
export function payloadKey(isk: Uint8Array, direction: 'joiner' | 'inviter'): Buffer {
  return createHmac('sha512', isk).update(`${PROTOCOL} ${direction} payload`).digest();
}

export function payloadMac(key: Uint8Array, fields: string[]): Buffer {
  return createHmac('sha512', key).update(lvCat(...fields.map((f) => Buffer.from(f)))).digest();
}

type Message = Record<string, unknown>;

/** How long a finished exchange waits for its last message to leave before the stream goes. */
const LINGER_MS = 2000;

/** Length-prefixed msgpack maps over a stream, read one at a time with a deadline. */
export class MessageStream {
  private buf: Buffer = Buffer.alloc(0);
  private waiting: { resolve: (m: Message) => void; reject: (e: Error) => void } | undefined;
  private ended: Error | undefined;
  /** Set once the exchange is over (close) or broke a limit: later input is not kept. */
  private done = false;

  constructor(private readonly s: Duplex) {
    s.on('data', (c: Buffer) => {
      if (this.done) return;
      // Never more than one message may be pending (each side waits for the other's answer), so
      // more than one message's worth unread is a flood: cut it off here, not after buffering it.
      if (this.buf.length + c.length > 4 + MAX_MESSAGE) return this.cutOff(new BurrowError(ErrorCodes.BadFrame, `pairing input over ${MAX_MESSAGE} bytes unread`));
      this.buf = this.buf.length === 0 ? c : Buffer.concat([this.buf, c]);
      this.deliver();
    });
    s.on('end', () => this.fail(new BurrowError(ErrorCodes.Disconnected, 'the other side ended the exchange')));
    s.on('error', (e: Error) => this.fail(e instanceof BurrowError ? e : new BurrowError(ErrorCodes.Disconnected, e.message)));
  }

  /** The peer broke a limit: keep nothing more of its input, end the stream now. */
  private cutOff(e: Error): void {
    this.done = true;
    this.buf = Buffer.alloc(0);
    this.fail(e);
    this.s.destroy();
  }

  private fail(e: Error): void {
    this.ended ??= e;
    if (this.waiting && this.buf.length >= 4 && this.buf.length >= 4 + this.buf.readUInt32BE(0)) return this.deliver();
    const w = this.waiting;
    this.waiting = undefined;
    w?.reject(this.ended);
  }

  private deliver(): void {
    if (!this.waiting || this.buf.length < 4) return;
    const len = this.buf.readUInt32BE(0);
    if (len > MAX_MESSAGE) return this.cutOff(new BurrowError(ErrorCodes.BadFrame, `pairing message of ${len} bytes is over ${MAX_MESSAGE}`));
    if (this.buf.length < 4 + len) return;
    const body = this.buf.subarray(4, 4 + len);
    this.buf = this.buf.subarray(4 + len);
    const w = this.waiting;
    this.waiting = undefined;
    let m: unknown;
    try {
      m = unpack(body);
    } catch {
      return w.reject(new BurrowError(ErrorCodes.BadFrame, 'undecodable pairing message'));
    }
    if (typeof m !== 'object' || m === null || Array.isArray(m)) return w.reject(new BurrowError(ErrorCodes.BadFrame, 'pairing message is not a map'));
    w.resolve(m as Message);
  }

  /** The next message, which must be of type `t` (or `fail`, which becomes an error). */
  next(t: string, timeoutMs: number): Promise<Message> {
    if (this.waiting) return Promise.reject(new BurrowError(ErrorCodes.Internal, 'concurrent read'));
    return new Promise<Message>((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new BurrowError(ErrorCodes.ConnectTimeout, `no ${t} message within ${timeoutMs} ms`)), timeoutMs);
      this.waiting = {
        resolve: (m) => {
          clearTimeout(timer);
          if (m['t'] === 'fail') {
            const why = typeof m['why'] === 'string' && REFUSALS.has(m['why']) ? (m['why'] as Refusal) : undefined;
            reject(new PairRefused(why, typeof m['reason'] === 'string' ? printable(m['reason'].slice(0, 200)) : ''));
          } else if (m['t'] !== t) reject(new BurrowError(ErrorCodes.BadFrame, `expected ${t}, got ${printable(String(m['t']).slice(0, 20))}`));
          else resolve(m);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      // Messages that arrived before the stream ended are still read first.
      this.deliver();
      if (this.waiting && this.ended) this.fail(this.ended);
    });
  }

  send(m: Message): void {
    const body = pack(m);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(body.length);
    this.s.write(Buffer.concat([len, body]));
  }

  /**
   * The exchange is over: stop keeping input (and stop reading, so QUIC's flow control holds a
   * peer that keeps sending), let the last message leave, then destroy the stream.
   */
  close(): void {
    this.done = true;
    this.buf = Buffer.alloc(0);
    this.s.pause();
    const destroy = (): void => void this.s.destroy();
    this.s.once('finish', destroy);
    setTimeout(destroy, LINGER_MS).unref();
    this.s.end();
  }
}

function bytes(m: Message, field: string, len: number): Buffer {
  const v = m[field];
  if (!(v instanceof Uint8Array) || v.length !== len) throw new BurrowError(ErrorCodes.BadFrame, `pairing message field ${field} is not ${len} bytes`);
  return Buffer.from(v);
}

function text(m: Message, field: string, max = 4096): string {
  const v = m[field];
  if (typeof v !== 'string' || v.length > max) throw new BurrowError(ErrorCodes.BadFrame, `pairing message field ${field} is not a string`);
  return v;
}

const TIMEOUT_MS = 20_000;

export interface JoinerOffer {
  /** The joiner's SSH public key line (its endpoint key). */
  key: string;
  name: string;
}

export interface InviterOffer {
  ticket: string;
  name: string;
}

/** Party A. Resolves with what the inviter offered, once both confirmations passed. */
export async function runJoiner(ms: MessageStream, opts: { nameplate: string; password: string; joinerId: string; inviterId: string; offer: JoinerOffer }): Promise<InviterOffer> {
  const sid = randomBytes(16);
  const a = new CPaceParty('initiator', Buffer.from(opts.password), channelIdentifier(opts.joinerId, opts.inviterId), sid, AD_JOINER);
  ms.send({ t: 'start', v: 1, nameplate: opts.nameplate, sid, share: Buffer.from(a.share) });
  let m: Message;
  try {
    m = await ms.next('share', TIMEOUT_MS);
  } catch (err) {
    throw unconfirmed(err, opts.nameplate);
  }
  const yb = bytes(m, 'share', 32);
  let keys: CPaceResult;
  try {
    keys = a.finish(yb, AD_INVITER);
  } catch (err) {
    if (err instanceof CPaceAbort) throw new BurrowError(ErrorCodes.PairingFailed, WRONG_CODE);
    throw err;
  }
  if (!tagsEqual(bytes(m, 'tag', 64), confirmationTag(keys.macKey, yb, AD_INVITER))) throw new BurrowError(ErrorCodes.PairingFailed, WRONG_CODE);
  // The inviter proved the code: from here on both ends are the code's holders.
  const kJ = payloadKey(keys.isk, 'joiner');
  ms.send({ t: 'confirm', tag: confirmationTag(keys.macKey, a.share, AD_JOINER), key: opts.offer.key, name: opts.offer.name, mac: payloadMac(kJ, [opts.offer.key, opts.offer.name]) });
  let w: Message;
  try {
    w = await ms.next('welcome', TIMEOUT_MS);
  } catch (err) {
    // The inviter has proved the code: its reason may be shown, made printable.
    if (err instanceof PairRefused) throw new BurrowError(ErrorCodes.PairingFailed, `the host did not complete the pairing: ${err.peerReason || 'no reason given'}`);
    throw err;
  }
  const offer = { ticket: text(w, 'ticket'), name: text(w, 'name', 256) };
  if (!tagsEqual(bytes(w, 'mac', 64), payloadMac(payloadKey(keys.isk, 'inviter'), [offer.ticket, offer.name]))) throw new BurrowError(ErrorCodes.PairingFailed, 'the welcome message does not verify');
  return { ticket: offer.ticket, name: printable(offer.name) };
}

/**
 * A failure before the PAKE confirmed the peer, as the joiner shows it: only our own fixed
 * texts. Whoever answers a nameplate may be anyone, and its words (in `fail`, or in a QUIC close
 * reason) are not worth printing; they only choose among these.
 */
export function unconfirmed(err: unknown, nameplate: string): BurrowError {
  if (err instanceof PairRefused) return new BurrowError(ErrorCodes.PairingFailed, refusalText(err.why, nameplate));
  if (err instanceof BurrowError) {
    if (err.code === ErrorCodes.PeerRefused) {
      const why = err.message.endsWith(`refused by peer: ${BUSY_REASON}`) ? 'busy' : err.message.endsWith('refused by peer: no invitation is open') ? 'none' : undefined;
      return new BurrowError(ErrorCodes.PairingFailed, refusalText(why, nameplate));
    }
    if (err.code === ErrorCodes.ConnectTimeout) return new BurrowError(ErrorCodes.PairingFailed, 'the inviter did not answer in time: ask for a new code');
    if (err.code === ErrorCodes.BadFrame) return new BurrowError(ErrorCodes.PairingFailed, 'the inviter broke the pairing protocol: ask for a new code');
  }
  return new BurrowError(ErrorCodes.PairingFailed, 'the inviter closed the connection before the code was checked: ask for a new code');
}

/** What the inviter's side sees of an attempt, step by step, so the caller can hold state. */
export interface InviterHooks {
  /** The invitation for a nameplate, claimed for this attempt; null (with a reason) refuses before any guess is spent. */
  claim(nameplate: string): { password: string } | { refuse: Refusal; reason: string };
  /** Called with the confirmed joiner's offer; authorizes it and returns what to send back. */
  accept(offer: JoinerOffer): Promise<InviterOffer>;
}

export type InviterOutcome = { kind: 'refused'; reason: string } | { kind: 'joined'; offer: JoinerOffer } | { kind: 'failed'; reason: string };

/** Party B. Never throws: every way it ends is an outcome, and a spent guess is `failed`. */
export async function runInviter(ms: MessageStream, opts: { joinerId: string; inviterId: string; hooks: InviterHooks; startTimeoutMs?: number }): Promise<InviterOutcome> {
  let start: Message;
  try {
    start = await ms.next('start', opts.startTimeoutMs ?? TIMEOUT_MS);
  } catch (err) {
    return { kind: 'refused', reason: (err as Error).message };
  }
  const nameplate = typeof start['nameplate'] === 'string' ? start['nameplate'].slice(0, 8) : '';
  const claim = opts.hooks.claim(nameplate);
  if ('refuse' in claim) {
    ms.send({ t: 'fail', why: claim.refuse, reason: claim.reason });
    return { kind: 'refused', reason: claim.reason };
  }
  // From here on this attempt is the invitation's one guess: every exit but `joined` burns it.
  try {
    if (start['v'] !== 1) throw new BurrowError(ErrorCodes.BadFrame, 'unknown pairing version');
    const sid = bytes(start, 'sid', 16);
    const ya = bytes(start, 'share', 32);
    const b = new CPaceParty('responder', Buffer.from(claim.password), channelIdentifier(opts.joinerId, opts.inviterId), sid, AD_INVITER);
    const keys = b.finish(ya, AD_JOINER);
    ms.send({ t: 'share', share: Buffer.from(b.share), tag: confirmationTag(keys.macKey, b.share, AD_INVITER) });
    const c = await ms.next('confirm', TIMEOUT_MS);
    if (!tagsEqual(bytes(c, 'tag', 64), confirmationTag(keys.macKey, ya, AD_JOINER))) return { kind: 'failed', reason: 'a wrong code was tried' };
    const raw = { key: text(c, 'key'), name: text(c, 'name', 256) };
    if (!tagsEqual(bytes(c, 'mac', 64), payloadMac(payloadKey(keys.isk, 'joiner'), [raw.key, raw.name]))) return { kind: 'failed', reason: 'the joiner offer does not verify' };
    // Confirmed, but its name is still its choice: printed by burrow invite, never raw.
    const offer = { key: raw.key, name: printable(raw.name) };
    let back: InviterOffer;
    try {
      back = await opts.hooks.accept(offer);
    } catch (err) {
      ms.send({ t: 'fail', why: 'error', reason: 'the host could not record the pairing' });
      return { kind: 'failed', reason: `could not authorize the joiner: ${(err as Error).message}` };
    }
    ms.send({ t: 'welcome', ticket: back.ticket, name: back.name, mac: payloadMac(payloadKey(keys.isk, 'inviter'), [back.ticket, back.name]) });
    return { kind: 'joined', offer };
  } catch (err) {
    if (err instanceof CPaceAbort) return { kind: 'failed', reason: 'a wrong code was tried (invalid share)' };
    const e = err as Error;
    // The peer left after seeing our share: it has tested its guess, so the guess is spent.
    return { kind: 'failed', reason: `a wrong code was tried (the other side ${e instanceof BurrowError && e.code === ErrorCodes.ConnectTimeout ? 'went silent' : 'left'} before confirming)` };
  }
}
