// Test helpers for pairing: what a host's allowlists hold, and the message types on a pairing stream.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { unpack } from 'msgpackr';
import { parseEndpointList, parseKeyList } from '../../shared/authlists.js';
import type { RunningDaemon } from './daemon.js';

const read = (d: RunningDaemon, f: string): string => (existsSync(join(d.state, f)) ? readFileSync(join(d.state, f), 'utf8') : '');

export const endpointsOf = (d: RunningDaemon): string[] => parseEndpointList(read(d, 'authorized_endpoints')).map((e) => e.id);
export const keysOf = (d: RunningDaemon): string[] => parseKeyList(read(d, 'authorized_keys')).map((k) => k.base64);
export const rawKeysFile = (d: RunningDaemon): string => read(d, 'authorized_keys');

/** The `t` of every whole pairing message that arrives on a stream (u32 length + msgpack), in order. */
export function recordTypes(s: Duplex): string[] {
  const types: string[] = [];
  let buf = Buffer.alloc(0);
  s.on('data', (c: Buffer) => {
    buf = Buffer.concat([buf, c]);
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      const len = buf.readUInt32BE(0);
      const m = unpack(buf.subarray(4, 4 + len)) as Record<string, unknown>;
      types.push(String(m['t']));
      buf = buf.subarray(4 + len);
    }
  });
  return types;
}
