// The endpoint id inside a ticket, without iroh: the CLI must stay thin. A ticket is "endpoint"
// + base32 (RFC 4648, lowercase, unpadded) of postcard bytes whose first byte is the format
// variant (0) and next 32 the endpoint's public key. The daemon parses tickets fully with iroh;
// a test checks that both agree.

import { BurrowError, ErrorCodes } from './errors.js';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';

export function ticketEndpointId(ticket: string): string {
  if (!ticket.startsWith('endpoint')) throw new BurrowError(ErrorCodes.BadTarget, 'not a ticket');
  const bytes: number[] = [];
  let bits = 0;
  let value = 0;
  for (const c of ticket.slice('endpoint'.length)) {
    const v = ALPHABET.indexOf(c);
    if (v < 0) throw new BurrowError(ErrorCodes.BadTarget, `not a ticket: bad character ${JSON.stringify(c)}`);
    value = ((value << 5) | v) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      bytes.push((value >> (bits - 8)) & 0xff);
      bits -= 8;
    }
    if (bytes.length >= 33) break;
  }
  if (bytes.length < 33 || bytes[0] !== 0) throw new BurrowError(ErrorCodes.BadTarget, 'not a ticket: too short or unknown format');
  return Buffer.from(bytes.slice(1, 33)).toString('hex');
}
