// Deadlines for promises that have none of their own (iroh's connect() and online(), handshakes).

import { BurrowError, type ErrorCode } from '../shared/errors.js';

/**
 * Resolve as `p` does, or reject with a BurrowError after `ms`. A late result is handed to
 * `onLate` (e.g. to close a connection nobody is waiting for any more).
 */
export function withTimeout<T>(p: Promise<T>, ms: number, code: ErrorCode, message: string, onLate?: (value: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => {
      done = true;
      reject(new BurrowError(code, message));
    }, ms);
    p.then(
      (v) => {
        if (done) onLate?.(v);
        else {
          done = true;
          clearTimeout(timer);
          resolve(v);
        }
      },
      (err: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
