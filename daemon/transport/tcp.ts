// Plain TCP for ordinary `host:port` SSH targets: the same Duplex shape as an iroh stream.

import { connect, type Socket } from 'node:net';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { hostPort } from '../../shared/target.js';

/** Connect to host:port within timeoutMs; resolves with a connected socket (a Duplex). */
export function dialTcp(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const sock = connect({ host, port, noDelay: true, keepAlive: true, keepAliveInitialDelay: 30_000 });
    const where = hostPort(host, port);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new BurrowError(ErrorCodes.ConnectTimeout, `connect to ${where}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (err: NodeJS.ErrnoException): void => {
      clearTimeout(timer);
      if (err.code === 'ENOTFOUND') return reject(new BurrowError(ErrorCodes.UnknownTarget, `no alias or host named ${JSON.stringify(host)} (burrow alias list shows the aliases)`, { cause: err }));
      const code = err.code === 'EAI_AGAIN' ? ErrorCodes.UnknownTarget : ErrorCodes.ConnectFailed;
      reject(new BurrowError(code, `connect to ${where}: ${err.code ?? err.message}`, { cause: err }));
    };
    sock.once('error', onError);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', onError); // from here on, errors are the caller's
      resolve(sock);
    });
  });
}
