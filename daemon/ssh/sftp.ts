// ssh2's SFTP client calls as promises (burrow cp and completion's ls use them).

import type { SFTPWrapper } from 'ssh2';
import { BurrowError } from '../../shared/errors.js';

/** How long an SFTP call that ssh2 failed on its own waits for the reason the connection went. */
const LOSS_GRACE_MS = 1000;

/**
 * ssh2's SFTP calls as promises that settle even when the connection dies: ssh2 forgets requests
 * issued after it tore the connection down, so every call also waits on `lost`.
 */
export class Sftp {
  private lostWith: BurrowError | undefined;
  private readonly pending = new Set<(err: BurrowError) => void>();
  private onLost: () => void = () => undefined;
  private readonly lost = new Promise<void>((r) => (this.onLost = r));
  constructor(readonly s: SFTPWrapper) {}

  /** Fail every pending and later call with `err` (the connection or channel is gone). */
  lose(err: BurrowError): void {
    if (this.lostWith) return;
    this.lostWith = err;
    for (const fail of [...this.pending]) fail(err);
    this.pending.clear();
    this.onLost();
  }

  call<T>(fn: (cb: (err: Error | null | undefined, v: T) => void) => void): Promise<T> {
    if (this.lostWith) return Promise.reject(this.lostWith);
    return new Promise<T>((resolve, reject) => {
      const fail = (err: BurrowError): void => reject(err);
      this.pending.add(fail);
      try {
        fn((err, v) => {
          this.pending.delete(fail);
          if (!err) return resolve(v);
          if (typeof (err as { code?: unknown }).code === 'number') return reject(err);
          // Not a server's status: ssh2 failing what was pending as the channel went ("No
          // response from server"). The loss is reported a moment later, with its reason.
          void Promise.race([this.lost, new Promise((r) => setTimeout(r, LOSS_GRACE_MS))]).then(() => reject(this.lostWith ?? err));
        });
      } catch (err) {
        // ssh2 throws synchronously for an extension the server lacks or a closed channel.
        this.pending.delete(fail);
        reject(this.lostWith ?? err);
      }
    });
  }
}
