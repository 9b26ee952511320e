// A bulk stream through a TCP forward, for the benches that time one (forward.ts, ab.ts): push
// bytes, then read the echo back to its end.

import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';

const CHUNK = randomBytes(64 * 1024);

/** Write `n` bytes (in CHUNK pieces) honouring backpressure, then end. */
export function sendAndEnd(s: Socket, n: number): void {
  let sent = 0;
  const pump = (): void => {
    while (sent < n) {
      sent += CHUNK.length;
      if (!s.write(CHUNK)) return void s.once('drain', pump);
    }
    s.end();
  };
  pump();
}

/** Connect through the forward; send `up` bytes, then read to end; returns [upSeconds, downSeconds]. */
export function through(port: number, up: number): Promise<[number, number]> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    const t0 = performance.now();
    let tUp = 0;
    let got = 0;
    s.on('data', (d: Buffer) => {
      if (got === 0) tUp = performance.now();
      got += d.length;
    });
    s.once('end', () => resolve([(tUp - t0) / 1000, (performance.now() - tUp) / 1000]));
    s.once('error', reject);
    s.once('connect', () => sendAndEnd(s, up));
  });
}

/** A service that reads everything, then sends as much back: the far end of the forward. */
export function echoBack(): Server {
  return createServer({ allowHalfOpen: true }, (s) => {
    let n = 0;
    s.on('data', (d: Buffer) => (n += d.length));
    s.once('end', () => sendAndEnd(s, n));
  });
}
