// An ssh2 Client over any Duplex (an iroh stream or a TCP socket), with burrow's host-key rule
// and typed errors. The agent's pool builds on this; so do the host tests.

import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import type { AnyAuthMethod, Client as SshClient, NextAuthHandler } from 'ssh2';
import { BurrowError, ErrorCodes, firstLine } from '../../shared/errors.js';
import { ed25519PublicBlob, fingerprint } from '../../shared/sshkey.js';

/** How to check the server's host key: it must be the dialed endpoint id, or pass a custom check. */
export type HostKeyPolicy =
  | { kind: 'endpoint'; endpointId: string }
  | { kind: 'check'; verify: (key: Buffer) => HostKeyResult | Promise<HostKeyResult> };

export type HostKeyResult = { ok: true } | { ok: false; message: string };

export interface SshConnectOptions {
  stream: Duplex;
  username: string;
  /** Auth methods in order, e.g. the daemon key, then ssh-agent, then ~/.ssh keys. */
  auth: AuthMethod[];
  hostKey: HostKeyPolicy;
  readyTimeoutMs?: number;
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
}

export type AuthMethod = { kind: 'key'; privateKey: string; label: string } | { kind: 'agent'; socket: string };

/** Whether an SSH host key blob is the ed25519 key whose public half is this endpoint id. */
export function hostKeyIsEndpoint(key: Buffer, endpointId: string): boolean {
  return key.equals(ed25519PublicBlob(Buffer.from(endpointId, 'hex')));
}

/** Connect and authenticate; resolves with a ready client or rejects with a typed BurrowError. */
export function connectSsh(opts: SshConnectOptions): Promise<SshClient> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    let hostKeyError: BurrowError | undefined;
    let streamError: BurrowError | undefined;
    let settled = false;
    const fail = (err: BurrowError): void => {
      if (settled) return;
      settled = true;
      client.end();
      opts.stream.destroy();
      reject(err);
    };
    opts.stream.once('error', (err: Error) => {
      streamError = err instanceof BurrowError ? err : new BurrowError(ErrorCodes.Disconnected, firstLine(err.message));
    });
    const remaining = [...opts.auth];
    client.once('ready', () => {
      settled = true;
      resolve(client);
    });
    client.on('error', (err: Error & { level?: string }) => {
      if (settled) return;
      if (hostKeyError) return fail(hostKeyError);
      if (streamError) return fail(streamError);
      if (err.level === 'client-authentication') return fail(new BurrowError(ErrorCodes.AuthRejected, 'the server refused every key offered', { cause: err }));
      if (/Timed out while waiting for handshake/.test(err.message)) return fail(new BurrowError(ErrorCodes.ConnectTimeout, `no SSH handshake within ${Math.round((opts.readyTimeoutMs ?? 20_000) / 1000)} s`, { cause: err }));
      fail(err instanceof BurrowError ? err : new BurrowError(ErrorCodes.ConnectFailed, `SSH: ${firstLine(err.message)}`, { cause: err }));
    });
    client.once('close', () => fail(streamError ?? hostKeyError ?? new BurrowError(ErrorCodes.Disconnected, 'connection closed during SSH handshake')));
    client.connect({
      sock: opts.stream as unknown as import('node:net').Socket,
      username: opts.username,
      readyTimeout: opts.readyTimeoutMs ?? 20_000,
      keepaliveInterval: opts.keepaliveIntervalMs ?? 15_000,
      keepaliveCountMax: opts.keepaliveCountMax ?? 3,
      // ssh2 would refuse OpenSSH's extensions (streamlocal forwards, posix-rename) to any server
      // whose version string is not OpenSSH's, burrow's own host included; the server says no if it lacks them.
      strictVendor: false,
      // The two-argument form lets the check be asynchronous (known_hosts is a file).
      hostVerifier: (key: Buffer, verify: (ok: boolean) => void): undefined => {
        const policy = opts.hostKey;
        const result: Promise<HostKeyResult> =
          policy.kind === 'endpoint'
            ? Promise.resolve(
                hostKeyIsEndpoint(key, policy.endpointId)
                  ? { ok: true }
                  : { ok: false, message: `host key ${fingerprint(key)} is not the key of endpoint ${policy.endpointId.slice(0, 16)}…; refusing to continue` },
              )
            : Promise.resolve().then(() => policy.verify(key));
        result.then(
          (v) => {
            if (!v.ok) hostKeyError = new BurrowError(ErrorCodes.HostKeyMismatch, v.message);
            verify(v.ok);
          },
          (err: unknown) => {
            hostKeyError = err instanceof BurrowError ? err : new BurrowError(ErrorCodes.Internal, String(err));
            verify(false);
          },
        );
        return undefined;
      },
      authHandler: (_methodsLeft, _partial, next: NextAuthHandler) => {
        const m = remaining.shift();
        // ssh2 takes `false` as "no more methods"; its typings do not say so.
        if (!m) return next(false as unknown as AnyAuthMethod);
        if (m.kind === 'key') next({ type: 'publickey', username: opts.username, key: m.privateKey });
        else next({ type: 'agent', username: opts.username, agent: m.socket });
      },
    });
  });
}

/** Exit of a remote command as ssh reports it. */
export interface RemoteExit {
  code: number | null;
  signal: string | null;
}

/** Run one command on a ready client and collect its output (for tests and small library calls). */
export function execCollect(client: SshClient, command: string, stdin?: Buffer | string): Promise<{ stdout: Buffer; stderr: Buffer } & RemoteExit> {
  return new Promise((resolve, reject) => {
    client.exec(command, (err, ch) => {
      if (err) return reject(new BurrowError(ErrorCodes.ChannelRefused, firstLine(err.message), { cause: err }));
      const out: Buffer[] = [];
      const errb: Buffer[] = [];
      let exit: RemoteExit = { code: null, signal: null };
      ch.on('data', (d: Buffer) => out.push(d));
      ch.stderr.on('data', (d: Buffer) => errb.push(d));
      ch.on('exit', (code: number | null, signal?: string) => {
        exit = { code: signal ? null : code, signal: signal ?? null };
      });
      ch.once('close', () => resolve({ stdout: Buffer.concat(out), stderr: Buffer.concat(errb), ...exit }));
      if (stdin !== undefined) ch.end(stdin);
      else ch.end();
    });
  });
}
