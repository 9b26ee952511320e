// The joiner's side of pairing, run by the client's daemon: find the inviter by nameplate, dial
// it on the pairing ALPN, run the exchange, and hand back the host's ticket and offered name.
// The CLI then records the alias; the host has already authorized us when this returns.

import { hostname } from 'node:os';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { parseCode, passwordOf } from '../../shared/pair/code.js';
import { isTicket } from '../../shared/target.js';
import { ticketEndpointId } from '../../shared/ticket.js';
import type { Logger } from '../log.js';
import { PAIR_ALPN, type IrohTransport } from '../transport/iroh.js';
import { MessageStream, runJoiner, unconfirmed } from './protocol.js';
import type { Rendezvous } from './rendezvous.js';

export interface JoinResult {
  endpointId: string;
  ticket: string;
  name: string;
  via: 'pkarr' | 'mdns';
}

const LOOKUP_MS = 5000;
const DIAL_MS = 15_000;

export async function joinByCode(opts: { transport: IrohTransport; rendezvous: Rendezvous; keyLine: string; code: string; log: Logger }): Promise<JoinResult> {
  const code = parseCode(opts.code);
  const found = await opts.rendezvous.lookup(code.nameplate, LOOKUP_MS);
  opts.log.info({ event: 'pair_found', nameplate: code.nameplate, peer: found.addr.id, via: found.via }, 'found an inviter');
  let conn;
  try {
    conn = await opts.transport.dial(found.addr, DIAL_MS, PAIR_ALPN);
  } catch (err) {
    const e = err instanceof BurrowError ? err : new BurrowError(ErrorCodes.ConnectFailed, String(err));
    // A refusal's reason is the peer's text: only our fixed ones are shown (see unconfirmed).
    if (e.code === ErrorCodes.PeerRefused) throw unconfirmed(e, code.nameplate);
    throw new BurrowError(e.code, `the inviter found via ${found.via} (${found.addr.id.slice(0, 10)}) did not take the pairing connection: ${e.message}; is its burrow invite still waiting?`);
  }
  try {
    // QUIC's TLS has authenticated this id; it goes into the PAKE's channel identifier.
    const inviterId = conn.remoteId;
    // The inviter may refuse (busy, no invitation) as the connection opens: its words are not shown.
    const stream = await conn.openStream().catch((err: unknown) => Promise.reject(unconfirmed(err, code.nameplate)));
    const ms = new MessageStream(stream);
    try {
      const offer = await runJoiner(ms, {
        nameplate: code.nameplate,
        password: passwordOf(code),
        joinerId: opts.transport.endpointId,
        inviterId,
        offer: { key: opts.keyLine, name: hostname() },
      });
      ms.close();
      // The ticket becomes our alias for this host: it must name the endpoint TLS authenticated
      // and the PAKE confirmed, not some other machine of the inviter's choosing.
      let offered: string | undefined;
      try {
        offered = isTicket(offer.ticket) ? ticketEndpointId(offer.ticket) : undefined;
      } catch {
        offered = undefined;
      }
      if (offered !== inviterId) throw new BurrowError(ErrorCodes.PairingFailed, 'the host offered a ticket for another endpoint');
      opts.log.info({ event: 'pair_joined', nameplate: code.nameplate, peer: inviterId, name: offer.name }, 'paired');
      return { endpointId: inviterId, ticket: offer.ticket, name: offer.name, via: found.via };
    } catch (err) {
      opts.log.warn({ event: 'pair_failed', nameplate: code.nameplate, peer: inviterId, err: (err as Error).message }, 'pairing failed');
      if (err instanceof BurrowError && (err.code === ErrorCodes.PairingFailed || err.code === ErrorCodes.BadFrame)) throw err;
      throw new BurrowError(ErrorCodes.PairingFailed, `pairing with ${inviterId.slice(0, 10)} failed: ${(err as Error).message}`);
    }
  } finally {
    setTimeout(() => conn.close('pairing done'), 500).unref();
  }
}
