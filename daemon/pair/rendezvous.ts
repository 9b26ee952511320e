// Where to meet: the inviter's endpoint id and addresses, published under the nameplate's key on
// a pkarr relay and answered over mDNS; join looks in both and takes the first answer. The
// record holds nothing else: knowing it gets an attacker one PAKE attempt, no more.

import { BurrowError, ErrorCodes, firstLine } from '../../shared/errors.js';
import { isEndpointId } from '../../shared/target.js';
import type { Logger } from '../log.js';
import type { PeerAddr } from '../transport/iroh.js';
import { MdnsResponder, mdnsLookup } from './mdns.js';
import { decodeTxtPacket, encodeTxtPacket, isFresh, nameplateKey, nowMicros, PkarrRelay, type SignedRecord } from './pkarr.js';

const LABEL = '_burrow-pair';
const MAX_ADDRS = 8;
/** A record younger than this may belong to an open invitation (the longest ttl allowed). */
export const MAX_INVITATION_SECONDS = 3600;

export function recordStrings(a: PeerAddr): string[] {
  return ['v=1', `id=${a.id}`, ...(a.relayUrl ? [`relay=${a.relayUrl}`] : []), ...a.direct.slice(0, MAX_ADDRS).map((d) => `addr=${d}`)];
}

export function parseRecordStrings(strings: string[]): PeerAddr | null {
  if (!strings.includes('v=1')) return null;
  let id: string | undefined;
  let relayUrl: string | undefined;
  const direct: string[] = [];
  for (const s of strings) {
    const i = s.indexOf('=');
    const [k, v] = [s.slice(0, i), s.slice(i + 1)];
    if (k === 'id' && isEndpointId(v)) id = v;
    else if (k === 'relay' && /^https?:\/\//.test(v)) relayUrl = v;
    else if (k === 'addr' && /^(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):\d{1,5}$/.test(v) && direct.length < MAX_ADDRS) direct.push(v);
  }
  return id ? { id, direct, ...(relayUrl ? { relayUrl } : {}) } : null;
}

/** Our TXT record in a relay's answer, when the answer is fresh enough to be a live invitation. */
function recordOf(r: SignedRecord | null, z32: string): { strings: string[] } | undefined {
  if (!r || !isFresh(r.timestampUs, MAX_INVITATION_SECONDS)) return undefined;
  return decodeTxtPacket(r.packet).find((t) => t.name.toLowerCase() === `${LABEL}.${z32}`);
}

export interface Found {
  addr: PeerAddr;
  via: 'pkarr' | 'mdns';
}

export class Rendezvous {
  readonly mdns: MdnsResponder | null;

  constructor(
    private readonly relay: PkarrRelay | null,
    useMdns: boolean,
    private readonly log: Logger,
  ) {
    this.mdns = useMdns ? new MdnsResponder(log) : null;
  }

  get relayUrl(): string | undefined {
    return this.relay?.url;
  }

  /** Whether a live record already sits under this nameplate (someone else's invitation). */
  async isTaken(nameplate: string): Promise<boolean> {
    if (!this.relay) return false;
    try {
      const r = await this.relay.get(nameplateKey(nameplate).publicKey);
      if (!r || decodeTxtPacket(r.packet).length === 0) return false;
      return nowMicros() - r.timestampUs < BigInt(MAX_INVITATION_SECONDS) * 1_000_000n;
    } catch {
      return false; // unreadable or unreachable: the publish below says what is wrong
    }
  }

  /** Publish where we are; returns which ways worked. Fails only when neither can work. */
  async publish(nameplate: string, addr: PeerAddr): Promise<{ pkarr: boolean; mdns: boolean; where: string }> {
    const strings = recordStrings(addr);
    this.mdns?.add(nameplate, strings);
    let pkarr = false;
    let trouble = '';
    if (this.relay) {
      const key = nameplateKey(nameplate);
      try {
        await this.relay.put(key, encodeTxtPacket([{ name: `${LABEL}.${key.z32}`, ttl: 60, strings }]));
        pkarr = true;
      } catch (err) {
        if (!this.mdns) throw err;
        trouble = ` (the pkarr relay failed: ${firstLine((err as Error).message)})`;
        this.log.warn({ event: 'pair_publish_failed', nameplate, err: firstLine(String((err as Error).message)) }, 'pkarr relay unreachable; the invitation is reachable over mDNS only');
      }
    }
    const ways = [...(pkarr && this.relay ? [`pkarr relay ${this.relay.url}`] : []), ...(this.mdns ? ['mDNS on the local network'] : [])];
    return { pkarr, mdns: this.mdns !== null, where: ways.join(' and ') + trouble };
  }

  /** The endpoint id the relay's record for a nameplate names now: null for none, undefined when unknown. */
  async holder(nameplate: string): Promise<string | null | undefined> {
    if (!this.relay) return undefined;
    try {
      const key = nameplateKey(nameplate);
      const rec = recordOf(await this.relay.get(key.publicKey), key.z32);
      return rec ? (parseRecordStrings(rec.strings)?.id ?? null) : null;
    } catch {
      return undefined;
    }
  }

  /** Take the record down: an empty packet, newer than ours, replaces it. */
  async withdraw(nameplate: string): Promise<void> {
    this.mdns?.remove(nameplate);
    if (!this.relay) return;
    try {
      await this.relay.put(nameplateKey(nameplate), encodeTxtPacket([]));
    } catch (err) {
      this.log.warn({ event: 'pair_withdraw_failed', nameplate, err: firstLine((err as Error).message) }, 'could not withdraw the pkarr record; it names only this endpoint and expires with its invitation');
    }
  }

  close(): void {
    this.mdns?.close();
  }

  /** Find the inviter for a nameplate: the first of pkarr and mDNS to answer. */
  async lookup(nameplate: string, timeoutMs: number): Promise<Found> {
    const key = nameplateKey(nameplate);
    const attempts: Promise<Found>[] = [];
    const reasons: string[] = [];
    if (this.relay) {
      const relay = this.relay;
      attempts.push(
        relay.get(key.publicKey).then((r) => {
          const rec = recordOf(r, key.z32);
          const addr = rec ? parseRecordStrings(rec.strings) : null;
          if (!addr) throw new BurrowError(ErrorCodes.NotFound, `no invitation under nameplate ${nameplate} on ${relay.url}`);
          return { addr, via: 'pkarr' as const };
        }),
      );
    }
    if (this.mdns) {
      attempts.push(
        mdnsLookup(nameplate, timeoutMs).then((strings) => {
          const addr = strings ? parseRecordStrings(strings) : null;
          if (!addr) throw new BurrowError(ErrorCodes.NotFound, `no answer for nameplate ${nameplate} on the local network`);
          return { addr, via: 'mdns' as const };
        }),
      );
    }
    if (attempts.length === 0) throw new BurrowError(ErrorCodes.BadArgument, 'pairing needs a pkarr relay or mDNS, and both are off');
    try {
      return await Promise.any(attempts.map((p) => p.catch((err: unknown) => (reasons.push(firstLine((err as Error).message)), Promise.reject(err)))));
    } catch {
      throw new BurrowError(ErrorCodes.NotFound, `could not find the inviter (${reasons.join('; ')}): check the code, or ask for a new one`);
    }
  }
}
