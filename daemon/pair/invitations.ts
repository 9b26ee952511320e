// The host's open invitations: each is one code, one nameplate record, one guess. The first
// attempt that gets as far as the PAKE either joins (the joiner is authorized) or burns the
// invitation; nothing is authorized before both confirmations passed.

import { randomInt } from 'node:crypto';
import { hostname } from 'node:os';
import { authorizeEndpoint } from '../../shared/authlists.js';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { formatCode, newCode, passwordOf, type PairCode } from '../../shared/pair/code.js';
import type { Logger } from '../log.js';
import { CloseCode, type IrohConnection, type IrohTransport } from '../transport/iroh.js';
import { BUSY_REASON, MessageStream, runInviter } from './protocol.js';
import { MAX_INVITATION_SECONDS, type Rendezvous } from './rendezvous.js';

export type InvitationState = 'open' | 'pairing' | 'joined' | 'burned' | 'expired' | 'cancelled';

export interface InvitationStatus {
  nameplate: string;
  name: string;
  state: InvitationState;
  expiresAt: number;
  detached: boolean;
  /** How it ended, for the waiting `burrow invite`. */
  outcome?: string;
  joinedBy?: { endpointId: string; name: string };
  /** Something the inviter should know while it waits (the record was overwritten). */
  warning?: string;
}

interface Invitation extends InvitationStatus {
  code: PairCode;
  timer: NodeJS.Timeout;
  /** Checks that the relay's record still names us (absent when not published there). */
  watch?: NodeJS.Timeout;
  waiters: ((s: InvitationStatus) => void)[];
  noticed: ((warning: string) => void)[];
}

export const DEFAULT_TTL_SECONDS = 600;
/** Nameplate ranges tried in turn: short numbers first, longer ones when those are taken. */
const NAMEPLATE_RANGES = [99, 99, 99, 999, 999, 999, 9999, 9999];
/** Pairing connections served at once; more are refused as busy. */
const MAX_PAIRING_CONNECTIONS = 16;
/** Pairing connections from one endpoint at once: one peer cannot take every slot. */
const MAX_PER_PEER = 2;
/**
 * From the connection to its `start` message: a joiner sends it at once, so a peer that holds a
 * slot without naming a nameplate is let go quickly (a claimed attempt then has 20 s per step).
 */
const START_MS = 5000;
/** How often an open invitation checks that its rendezvous record was not overwritten. */
const WATCH_MS = 2000;

export class Invitations {
  private readonly open = new Map<string, Invitation>();
  private serving = 0;
  private readonly perPeer = new Map<string, number>();

  constructor(
    private readonly opts: {
      transport: IrohTransport;
      rendezvous: Rendezvous;
      state: string;
      log: Logger;
    },
  ) {}

  private async pickNameplate(): Promise<string> {
    for (const max of NAMEPLATE_RANGES) {
      const n = String(randomInt(1, max + 1));
      if (this.open.has(n)) continue;
      if (await this.opts.rendezvous.isTaken(n)) {
        this.opts.log.info({ event: 'pair_nameplate_taken', nameplate: n }, 'nameplate in use elsewhere; picking another');
        continue;
      }
      return n;
    }
    throw new BurrowError(ErrorCodes.Internal, 'could not find a free nameplate');
  }

  async create(req: { name?: string; ttlSeconds?: number; detach: boolean }): Promise<InvitationStatus & { code: string; where: string }> {
    const ttl = req.ttlSeconds ?? DEFAULT_TTL_SECONDS;
    if (ttl < 1 || ttl > MAX_INVITATION_SECONDS) throw new BurrowError(ErrorCodes.BadArgument, `--ttl must be 1 to ${MAX_INVITATION_SECONDS} seconds`);
    const name = (req.name ?? hostname()).trim().slice(0, 64) || 'host';
    const nameplate = await this.pickNameplate();
    const code = newCode(Number(nameplate), (n) => randomInt(n));
    const how = await this.opts.rendezvous.publish(nameplate, this.opts.transport.addr());
    const inv: Invitation = {
      nameplate,
      name,
      state: 'open',
      expiresAt: Date.now() + ttl * 1000,
      detached: req.detach,
      code,
      waiters: [],
      noticed: [],
      timer: setTimeout(() => void this.end(inv, 'expired', 'the invitation expired unused'), ttl * 1000),
    };
    this.open.set(nameplate, inv);
    if (how.pkarr) inv.watch = setInterval(() => void this.checkRecord(inv), WATCH_MS);
    // Never the code itself: the words are the password.
    this.opts.log.info({ event: 'pair_invitation_open', nameplate, ttlSeconds: ttl, pkarr: how.pkarr ? this.opts.rendezvous.relayUrl : false, mdns: how.mdns, detached: req.detach }, 'invitation open');
    return { ...this.statusOf(inv), code: formatCode(code), where: how.where };
  }

  private statusOf(i: Invitation): InvitationStatus {
    return {
      nameplate: i.nameplate,
      name: i.name,
      state: i.state,
      expiresAt: i.expiresAt,
      detached: i.detached,
      ...(i.outcome !== undefined ? { outcome: i.outcome } : {}),
      ...(i.joinedBy ? { joinedBy: i.joinedBy } : {}),
      ...(i.warning !== undefined ? { warning: i.warning } : {}),
    };
  }

  list(): InvitationStatus[] {
    return [...this.open.values()].map((i) => this.statusOf(i));
  }

  /** Resolves when the invitation ends, however it ends. */
  wait(nameplate: string): Promise<InvitationStatus> {
    const inv = this.open.get(nameplate);
    if (!inv) return Promise.reject(new BurrowError(ErrorCodes.NotFound, `no open invitation ${nameplate}`));
    return new Promise((r) => inv.waiters.push(r));
  }

  /** Warnings while the invitation is open (see checkRecord). */
  onWarning(nameplate: string, fn: (warning: string) => void): void {
    this.open.get(nameplate)?.noticed.push(fn);
  }

  /** Cancel one invitation (by nameplate or whole code) or, with no argument, all; resolves once their records are down. */
  async cancel(which?: string): Promise<number> {
    const nameplate = which?.match(/^\s*(\d+)/)?.[1];
    const ending: Promise<void>[] = [];
    for (const inv of [...this.open.values()]) {
      if (which !== undefined && which.trim() !== '' && inv.nameplate !== String(Number(nameplate))) continue;
      ending.push(this.end(inv, 'cancelled', 'the invitation was cancelled'));
    }
    await Promise.all(ending);
    return ending.length;
  }

  closeAll(): void {
    for (const inv of [...this.open.values()]) void this.end(inv, 'cancelled', 'the daemon is stopping');
    this.opts.rendezvous.close();
  }

  private end(inv: Invitation, state: InvitationState, outcome: string): Promise<void> {
    if (!this.open.has(inv.nameplate) || this.open.get(inv.nameplate) !== inv) return Promise.resolve();
    this.open.delete(inv.nameplate);
    clearTimeout(inv.timer);
    clearInterval(inv.watch);
    inv.state = state;
    inv.outcome = outcome;
    this.opts.log.info({ event: 'pair_invitation_closed', nameplate: inv.nameplate, state, outcome, ...(inv.joinedBy ? { peer: inv.joinedBy.endpointId } : {}) }, 'invitation closed');
    const s = this.statusOf(inv);
    // Whoever waits hears of the end once the record is down (withdraw is bounded and never throws).
    return this.opts.rendezvous.withdraw(inv.nameplate).then(() => {
      for (const w of inv.waiters.splice(0)) w(s);
    });
  }

  /**
   * Anyone can overwrite a nameplate's record (its key is public). A record naming another
   * endpoint means someone else answers for this code: each join that reaches it gives it one
   * PAKE guess at the words. The code is burned at once (the user is told, with the squatter's
   * id, to make a new one), so no join can still succeed with it and retrying it is pointless.
   */
  private async checkRecord(inv: Invitation): Promise<void> {
    if (inv.state !== 'open') return;
    const holder = await this.opts.rendezvous.holder(inv.nameplate);
    if (typeof holder !== 'string' || holder === this.opts.transport.endpointId || inv.state !== 'open') return;
    inv.warning = `the rendezvous record for nameplate ${inv.nameplate} was overwritten by endpoint ${holder}`;
    this.opts.log.warn({ event: 'pair_squatted', nameplate: inv.nameplate, peer: holder }, 'rendezvous record overwritten by another endpoint; invitation burned');
    for (const fn of inv.noticed) fn(inv.warning);
    await this.end(inv, 'burned', `${inv.warning}: joins with this code went there; the invitation is burned, make a new code`);
  }

  /** The transport's pairing hook: take a connection only while some invitation is open (or being answered). */
  readonly accept = (conn: IrohConnection): boolean => {
    // While one is being answered too: a second joiner then hears "being answered", not "none".
    if (this.open.size === 0) return false;
    const peer = conn.remoteId;
    const mine = this.perPeer.get(peer) ?? 0;
    if (this.serving >= MAX_PAIRING_CONNECTIONS || mine >= MAX_PER_PEER) {
      // Refused for load, not for the code: the joiner says "busy, try again" and spends nothing.
      this.opts.log.warn({ event: 'pair_busy', peer, serving: this.serving, fromPeer: mine }, 'pairing connection refused: busy');
      conn.close(BUSY_REASON, CloseCode.Refused);
      return true;
    }
    this.serving++;
    this.perPeer.set(peer, mine + 1);
    void this.serve(conn).finally(() => {
      this.serving--;
      const n = (this.perPeer.get(peer) ?? 1) - 1;
      if (n > 0) this.perPeer.set(peer, n);
      else this.perPeer.delete(peer);
    });
    return true;
  };

  private async serve(conn: IrohConnection): Promise<void> {
    const peer = conn.remoteId;
    const startBy = Date.now() + START_MS;
    let claimed: Invitation | undefined;
    let stream;
    try {
      stream = await Promise.race([conn.acceptStream(), new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no stream')), START_MS).unref())]);
    } catch {
      this.opts.log.info({ event: 'pair_refused', peer, reason: 'no pairing stream' }, 'pairing connection refused');
      conn.close('no pairing stream');
      return;
    }
    const ms = new MessageStream(stream);
    const outcome = await runInviter(ms, {
      joinerId: peer,
      inviterId: this.opts.transport.endpointId,
      startTimeoutMs: Math.max(1, startBy - Date.now()),
      hooks: {
        claim: (nameplate) => {
          const inv = this.open.get(nameplate);
          if (!inv) return { refuse: 'none', reason: `no open invitation under nameplate ${nameplate}` };
          if (inv.state !== 'open') return { refuse: 'answering', reason: 'another machine is answering this invitation right now' };
          inv.state = 'pairing';
          claimed = inv;
          this.opts.log.info({ event: 'pair_attempt', nameplate, peer }, 'pairing attempt');
          return { password: passwordOf(inv.code) };
        },
        accept: () => {
          // It may have expired or been cancelled while this attempt ran: then nothing is authorized.
          if (!claimed || this.open.get(claimed.nameplate) !== claimed) return Promise.reject(new Error('the invitation ended during the exchange'));
          return Promise.resolve(this.authorize(peer, claimed));
        },
      },
    });
    if (outcome.kind === 'refused') {
      this.opts.log.info({ event: 'pair_refused', peer, reason: outcome.reason }, 'pairing connection refused');
    } else if (claimed) {
      if (outcome.kind === 'joined') {
        claimed.joinedBy = { endpointId: peer, name: outcome.offer.name };
        this.opts.log.info({ event: 'pair_joined', nameplate: claimed.nameplate, peer, name: outcome.offer.name }, 'paired: endpoint authorized');
        void this.end(claimed, 'joined', `${outcome.offer.name} joined`);
      } else {
        this.opts.log.warn({ event: 'pair_failed', nameplate: claimed.nameplate, peer, reason: outcome.reason }, 'pairing attempt failed; invitation burned');
        void this.end(claimed, 'burned', `${outcome.reason} by endpoint ${peer}; the invitation is burned`);
      }
    }
    // Nothing more is read; the last message gets up to 2 s to reach the peer, then all goes.
    ms.close();
    setTimeout(() => conn.close('pairing done'), 2000).unref();
  }

  /**
   * Authorize the confirmed joiner as `burrow host authorize ID` would (its endpoint id, and that
   * id as an SSH key), then offer our ticket. Only the key the TLS handshake proved is
   * authorized: the key line the joiner offers is not (it would let a joiner choose what lands
   * in authorized_keys, options included).
   */
  private authorize(peer: string, inv: Invitation): { ticket: string; name: string } {
    authorizeEndpoint(this.opts.state, peer);
    return { ticket: this.opts.transport.ticket(), name: inv.name };
  }
}
