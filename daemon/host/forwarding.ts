// Forwarding on the built-in host, after SSH auth only: direct-tcpip and direct-streamlocal under
// a permit-open policy (default: allowed, like sshd), and tcpip-forward / streamlocal-forward
// listeners, which bind loopback unless the host allows other addresses (like GatewayPorts) and
// close when their connection ends.

import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Connection as SshServerConn, ServerChannel } from 'ssh2';
import type { Logger } from '../log.js';
import { splice } from '../ssh/bridge.js';
import { rejectWithReason } from '../ssh/private.js';

export interface ForwardPolicy {
  /** host:port patterns ("*" for any host or port) a client may connect to; null allows any. */
  permitOpen: readonly string[] | null;
  /** Let remote forwards bind addresses other than loopback. */
  gatewayPorts: boolean;
}

// RFC 4254 §5.1 reason codes.
const ADMINISTRATIVELY_PROHIBITED = 1;
const CONNECT_FAILED = 2;

export function permitted(policy: ForwardPolicy, host: string, port: number | string): boolean {
  if (policy.permitOpen === null) return true;
  return policy.permitOpen.some((p) => {
    const i = p.lastIndexOf(':');
    const ph = p.slice(0, i);
    const pp = p.slice(i + 1);
    return (ph === '*' || ph === host) && (pp === '*' || pp === String(port));
  });
}

export function serveForwarding(client: SshServerConn, remote: string, policy: ForwardPolicy, log: Logger): void {
  const listeners = new Map<string, Server>();

  const dial = (what: string, open: () => Socket, accept: () => ServerChannel, reject: () => void): void => {
    const sock = open();
    const onError = (err: NodeJS.ErrnoException): void => {
      log.info({ event: 'forward_failed', remote, to: what, err: err.code ?? err.message }, 'forward connect failed');
      rejectWithReason(client, reject, CONNECT_FAILED, `connect to ${what}: ${err.code ?? err.message}`);
    };
    sock.once('error', onError);
    sock.once('connect', () => {
      sock.off('error', onError);
      splice(accept(), sock);
    });
  };

  client.on('tcpip', (accept, reject, info) => {
    if (!permitted(policy, info.destIP, info.destPort)) {
      log.warn({ event: 'forward_refused', remote, to: `${info.destIP}:${info.destPort}` }, 'forward refused by permit-open');
      return rejectWithReason(client, reject, ADMINISTRATIVELY_PROHIBITED, `the host's permit-open policy does not allow ${info.destIP}:${info.destPort}`);
    }
    dial(`${info.destIP}:${info.destPort}`, () => connect({ port: info.destPort, host: info.destIP, allowHalfOpen: true }), accept, reject);
  });

  client.on('openssh.streamlocal', (accept, reject, info) => {
    if (!permitted(policy, info.socketPath, '*')) {
      return rejectWithReason(client, reject, ADMINISTRATIVELY_PROHIBITED, `the host's permit-open policy does not allow ${info.socketPath}`);
    }
    dial(info.socketPath, () => connect({ path: info.socketPath, allowHalfOpen: true }), accept, reject);
  });

  client.on('request', (accept, reject, requestName, requestInfo) => {
    // ssh2 emits the streamlocal requests too; its typings know only the tcpip ones.
    const name = requestName as string;
    const info = requestInfo as { bindAddr: string; bindPort: number } | { socketPath: string };
    const ok = (port?: number): void => accept?.(port);
    const no = (): void => reject?.();
    if (name === 'tcpip-forward' && 'bindPort' in info) {
      const requested = info.bindAddr;
      const loopback = requested === 'localhost' || requested === '127.0.0.1' || requested === '::1' || requested === '';
      const host = policy.gatewayPorts ? (requested === '' || requested === '*' ? '0.0.0.0' : requested) : loopback && requested === '::1' ? '::1' : '127.0.0.1';
      const server = createServer({ allowHalfOpen: true }, (sock) => {
        sock.pause();
        client.forwardOut(requested, actual, sock.remoteAddress ?? '', sock.remotePort ?? 0, (err, ch) => {
          if (err) return sock.destroy();
          splice(ch, sock);
          sock.resume();
        });
      });
      let actual = info.bindPort;
      server.once('error', (err: NodeJS.ErrnoException) => {
        log.info({ event: 'remote_forward_failed', remote, bind: `${host}:${info.bindPort}`, err: err.code }, 'remote forward failed');
        no();
      });
      server.listen(info.bindPort, host, () => {
        actual = (server.address() as { port: number }).port;
        listeners.set(`tcp:${requested}:${actual}`, server);
        if (info.bindPort === 0) listeners.set(`tcp:${requested}:0`, server);
        log.info({ event: 'remote_forward', remote, bind: `${host}:${actual}` }, 'remote forward listening');
        ok(actual);
      });
      return;
    }
    if (name === 'cancel-tcpip-forward' && 'bindPort' in info) {
      const key = `tcp:${info.bindAddr}:${info.bindPort}`;
      const s = listeners.get(key);
      if (!s) return no();
      s.close();
      listeners.delete(key);
      return ok();
    }
    if (name === 'streamlocal-forward@openssh.com' && 'socketPath' in info) {
      const path = info.socketPath;
      const server = createServer({ allowHalfOpen: true }, (sock) => {
        sock.pause();
        client.openssh_forwardOutStreamLocal(path, (err, ch) => {
          if (err) return sock.destroy();
          splice(ch, sock);
          sock.resume();
        });
      });
      server.once('error', () => no());
      server.listen(path, () => {
        listeners.set(`unix:${path}`, server);
        ok();
      });
      return;
    }
    if (name === 'cancel-streamlocal-forward@openssh.com' && 'socketPath' in info) {
      const s = listeners.get(`unix:${info.socketPath}`);
      if (!s) return no();
      s.close();
      listeners.delete(`unix:${info.socketPath}`);
      return ok();
    }
    no();
  });

  client.once('close', () => {
    for (const s of listeners.values()) s.close();
    listeners.clear();
  });
}
