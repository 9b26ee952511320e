// Meeting on the local network with no server: the inviter answers mDNS questions for
// `<nameplate>._burrow-pair.local` (TXT, the same strings as the pkarr record); join asks.
// Multicast may be unavailable (no interface with MULTICAST): then this is quietly absent.

import { createRequire } from 'node:module';
import type makeMdns from 'multicast-dns';
import { firstLine } from '../../shared/errors.js';
import type { Logger } from '../log.js';

const mdns = createRequire(import.meta.url)('multicast-dns') as typeof makeMdns;
type Mdns = ReturnType<typeof makeMdns>;

export function mdnsName(nameplate: string): string {
  return `${nameplate}._burrow-pair.local`;
}

function txtStrings(data: unknown): string[] {
  const parts = Array.isArray(data) ? data : [data];
  return parts.map((p) => (Buffer.isBuffer(p) ? p.toString('utf8') : String(p)));
}

/** Answers for open invitations; the socket is open only while at least one is. */
export class MdnsResponder {
  private socket: Mdns | undefined;
  private readonly answers = new Map<string, string[]>();

  constructor(private readonly log: Logger) {}

  add(nameplate: string, strings: string[]): void {
    this.answers.set(mdnsName(nameplate), strings);
    if (this.socket) return;
    try {
      const s = mdns();
      s.on('error', (err: Error) => this.log.warn({ event: 'mdns_error', err: firstLine(err.message) }, 'mDNS unavailable; pairing goes through the pkarr relay only'));
      s.on('query', (q) => {
        for (const question of q.questions) {
          const strings = this.answers.get(question.name.toLowerCase());
          if (strings && (question.type === 'TXT' || (question.type as string) === 'ANY')) {
            s.respond({ answers: [{ name: question.name, type: 'TXT', ttl: 60, data: strings }] });
          }
        }
      });
      this.socket = s;
    } catch (err) {
      this.log.warn({ event: 'mdns_error', err: firstLine(String(err)) }, 'mDNS unavailable; pairing goes through the pkarr relay only');
    }
  }

  remove(nameplate: string): void {
    this.answers.delete(mdnsName(nameplate));
    if (this.answers.size === 0) this.close();
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }
}

/** Ask the local network for a nameplate; resolves with the first answer's strings, or null after `timeoutMs`. */
export function mdnsLookup(nameplate: string, timeoutMs: number): Promise<string[] | null> {
  const name = mdnsName(nameplate);
  return new Promise((resolve) => {
    let s: Mdns;
    try {
      s = mdns();
    } catch {
      resolve(null);
      return;
    }
    let done = false;
    const finish = (v: string[] | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      clearInterval(again);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => finish(null), timeoutMs);
    s.on('error', () => finish(null));
    s.on('response', (r) => {
      const a = r.answers.find((x) => x.name.toLowerCase() === name && x.type === 'TXT');
      if (a && 'data' in a) finish(txtStrings(a.data));
    });
    const ask = (): void => {
      try {
        s.query({ questions: [{ name, type: 'TXT' }] });
      } catch {
        // not ready or no interface: the timer ends the lookup
      }
    };
    ask();
    // Multicast is lossy: ask again a few times within the window.
    const again = setInterval(ask, 700);
  });
}
