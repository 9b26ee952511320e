// The SOCKS side of -D: read a SOCKS5 (no auth, CONNECT) or SOCKS4/4a request from a client,
// hand back where it wants to go, and answer success or failure. Domain names are passed on
// unresolved, so the remote side resolves them (like ssh -D).

import type { Socket } from 'node:net';

export interface SocksRequest {
  host: string;
  port: number;
  /** Tell the client whether the connection was made. */
  reply(ok: boolean): void;
}

const MAX_HANDSHAKE = 1024;

/** Wait for a complete request; null when the client speaks something else (the socket is then closed). */
export function readSocksRequest(sock: Socket): Promise<SocksRequest | null> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    let greeted = false;
    const fail = (): void => {
      cleanup();
      sock.destroy();
      resolve(null);
    };
    const cleanup = (): void => {
      sock.off('data', onData);
      sock.off('error', fail);
      sock.off('end', fail);
    };
    const done = (r: SocksRequest, rest: Buffer): void => {
      cleanup();
      sock.pause();
      if (rest.length > 0) sock.unshift(rest);
      resolve(r);
    };
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      if (buf.length > MAX_HANDSHAKE) return fail();
      const v = buf[0];
      if (v === 5) {
        if (!greeted) {
          if (buf.length < 2 || buf.length < 2 + (buf[1] as number)) return;
          const methods = buf.subarray(2, 2 + (buf[1] as number));
          buf = buf.subarray(2 + (buf[1] as number));
          greeted = true;
          if (!methods.includes(0)) {
            sock.end(Buffer.from([5, 0xff])); // no acceptable method
            return fail();
          }
          sock.write(Buffer.from([5, 0]));
        }
        if (buf.length < 5) return;
        if (buf[1] !== 1) {
          sock.end(Buffer.from([5, 7, 0, 1, 0, 0, 0, 0, 0, 0])); // only CONNECT
          return fail();
        }
        let host: string;
        let off: number;
        const atyp = buf[3];
        if (atyp === 1) {
          if (buf.length < 10) return;
          host = [...buf.subarray(4, 8)].join('.');
          off = 8;
        } else if (atyp === 3) {
          const n = buf[4] as number;
          if (buf.length < 5 + n + 2) return;
          host = buf.subarray(5, 5 + n).toString('latin1');
          off = 5 + n;
        } else if (atyp === 4) {
          if (buf.length < 22) return;
          const h = buf.subarray(4, 20).toString('hex');
          host = (h.match(/.{4}/g) ?? []).join(':');
          off = 20;
        } else return fail();
        const port = buf.readUInt16BE(off);
        const rest = buf.subarray(off + 2);
        return done({ host, port, reply: (ok) => sock.write(Buffer.from([5, ok ? 0 : 5, 0, 1, 0, 0, 0, 0, 0, 0])) }, rest);
      }
      if (v === 4) {
        // VN CD DSTPORT DSTIP USERID\0 [DOMAIN\0 when DSTIP is 0.0.0.x: SOCKS4a]
        if (buf.length < 9) return;
        if (buf[1] !== 1) return fail();
        const userEnd = buf.indexOf(0, 8);
        if (userEnd < 0) return;
        const port = buf.readUInt16BE(2);
        const ip = [...buf.subarray(4, 8)];
        let host = ip.join('.');
        let end = userEnd + 1;
        if (ip[0] === 0 && ip[1] === 0 && ip[2] === 0 && ip[3] !== 0) {
          const domEnd = buf.indexOf(0, end);
          if (domEnd < 0) return;
          host = buf.subarray(end, domEnd).toString('latin1');
          end = domEnd + 1;
        }
        return done({ host, port, reply: (ok) => sock.write(Buffer.from([0, ok ? 0x5a : 0x5b, 0, 0, 0, 0, 0, 0])) }, buf.subarray(end));
      }
      fail();
    };
    sock.on('data', onData);
    sock.once('error', fail);
    sock.once('end', fail);
    sock.resume(); // the caller paused it; a 'data' listener alone does not undo an explicit pause
  });
}
