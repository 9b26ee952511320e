// Test helpers: loopback-only iroh endpoints with fresh keys, and quiet loggers.

import { randomBytes } from 'node:crypto';
import { createLogger } from '../../daemon/log.js';
import { IrohTransport } from '../../daemon/transport/iroh.js';

export const quietLog = createLogger('silent');

/** An offline endpoint bound to 127.0.0.1 only (never any other address in tests). */
export function bindLoopback(seed: Uint8Array = randomBytes(32)): Promise<IrohTransport> {
  return IrohTransport.bind({ seed, relay: { mode: 'disabled' }, bind: '127.0.0.1:0', log: quietLog });
}

/** Read a stream to its end into one Buffer, leaving its writable side alone (no for-await: that destroys it). */
export function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer | string) => chunks.push(typeof c === 'string' ? Buffer.from(c) : c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}
