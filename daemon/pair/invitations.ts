// The host's open invitations: each is one code, one nameplate record, one guess. The first
// attempt that gets as far as the PAKE either joins (the joiner is authorized) or burns the
// invitation; nothing is authorized before both confirmations passed.

import { randomInt } from 'node:crypto';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { authorizeEndpoint, editList, parseKeyLine, parseKeyList, readTextOptional } from '../../shared/authlists.js';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { formatCode, newCode, passwordOf, type PairCode } from '../../shared/pair/code.js';
import { StateFiles } from '../../shared/paths.js';
import { endpointKeyLine } from '../../shared/sshkey.js';
import type { Logger } from '../log.js';
import type { IrohConnection, IrohTransport } from '../transport/iroh.js';
import { MessageStream, runInviter, type JoinerOffer } from './protocol.js';
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
/** Pairing connections served at once; more are refused (each may hold a slot for up to 30 s). */
const MAX_PAIRING_CONNECTIONS = 16;
/** How often an open invitation checks that its rendezvous record was not overwritten. */
const WATCH_MS = 2000;

export class Invitations {
  private readonly open = new Map<string, Invitation>();
  private serving = 0;

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
   * endpoint means someone else answers for this code: joins reach them and fail (they get one
   * PAKE guess, no more). The inviter is told once, with the squatter's id; what happens to the
   * invitation is still decided by attempts that reach it.
   */
  private async checkRecord(inv: Invitation): Promise<void> {
    if (inv.state !== 'open' || inv.warning !== undefined) return;
    const holder = await this.opts.rendezvous.holder(inv.nameplate);
    if (typeof holder !== 'string' || holder === this.opts.transport.endpointId || inv.state !== 'open' || inv.warning !== undefined) return;
    inv.warning = `the rendezvous record for nameplate ${inv.nameplate} was overwritten by endpoint ${holder}: joins with this code go there and fail; cancel and make a new code`;
    this.opts.log.warn({ event: 'pair_squatted', nameplate: inv.nameplate, peer: holder }, 'rendezvous record overwritten by another endpoint');
    for (const fn of inv.noticed) fn(inv.warning);
  }

  /** The transport's pairing hook: take a connection only while some invitation is open. */
  readonly accept = (conn: IrohConnection): boolean => {
    if (![...this.open.values()].some((i) => i.state === 'open')) return false;
    if (this.serving >= MAX_PAIRING_CONNECTIONS) return false;
    this.serving++;
    void this.serve(conn).finally(() => this.serving--);
    return true;
  };

  private async serve(conn: IrohConnection): Promise<void> {
    const peer = conn.remoteId;
    let claimed: Invitation | undefined;
    let stream;
    try {
      stream = await Promise.race([conn.acceptStream(), new Promise<never>((_, rej) => setTimeout(() => rej(new Error('no stream')), 10_000).unref())]);
    } catch {
      conn.close('no pairing stream');
      return;
    }
    const ms = new MessageStream(stream);
    const outcome = await runInviter(ms, {
      joinerId: peer,
      inviterId: this.opts.transport.endpointId,
      hooks: {
        claim: (nameplate) => {
          const inv = this.open.get(nameplate);
          if (!inv) return { refuse: `no open invitation under nameplate ${nameplate}: ask for a new code` };
          if (inv.state !== 'open') return { refuse: 'another machine is answering this invitation right now: ask for a new code' };
          inv.state = 'pairing';
          claimed = inv;
          this.opts.log.info({ event: 'pair_attempt', nameplate, peer }, 'pairing attempt');
          return { password: passwordOf(inv.code) };
        },
        accept: (offer) => {
          // It may have expired or been cancelled while this attempt ran: then nothing is authorized.
          if (!claimed || this.open.get(claimed.nameplate) !== claimed) return Promise.reject(new Error('the invitation ended during the exchange'));
          return Promise.resolve(this.authorize(peer, offer, claimed));
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
    // Let the last message reach the peer before the connection goes.
    ms.end();
    setTimeout(() => conn.close('pairing done'), 2000).unref();
  }

  /** Authorize the confirmed joiner as `burrow host authorize ID` would, then offer our ticket. */
  private authorize(peer: string, offer: JoinerOffer, inv: Invitation): { ticket: string; name: string } {
    authorizeEndpoint(this.opts.state, peer);
    // A key other than the endpoint's own (e.g. the joiner's ~/.ssh key) is authorized too.
    const key = parseKeyLine(offer.key);
    const keysFile = join(this.opts.state, StateFiles.authorizedKeys);
    if (key && key.base64 !== endpointKeyLine(peer).split(' ')[1] && !parseKeyList(readTextOptional(keysFile)).some((k) => k.base64 === key.base64)) {
      editList(keysFile, (l) => [...l, `${key.type} ${key.base64} ${key.comment}`.trim()]);
    }
    return { ticket: this.opts.transport.ticket(), name: inv.name };
  }
}
