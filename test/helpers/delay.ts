// A link with a round trip, on loopback: proxies that hold every packet (UDP, for iroh) or chunk
// (TCP, for sshd) for a fixed time each way. The kernel here has no netem, and loopback has no
// delay of its own, so a figure that depends on how many round trips a command waits for (a host
// across a network) needs these. Both kinds add the same delay, so a TCP and an iroh path through
// them differ only in their round trips.

import { spawn } from 'node:child_process';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packagePath } from '../../shared/package.js';

// The helper inside the namespace is this module, built (tests load the .ts source).
const INNER = packagePath('dist/test/helpers/delay.js');

export interface DelayProxy {
  /** The loopback port to use instead of the real one. */
  port: number;
  close(): Promise<void>;
}

const later = (ms: number, fn: () => void): void => void setTimeout(fn, ms);

/** Forward TCP connections to 127.0.0.1:`target`, every chunk held `delayMs` each way (in order: equal delays fire in turn). */
export async function tcpDelay(target: number, delayMs: number): Promise<DelayProxy> {
  const open = new Set<Socket>();
  const relay = (from: Socket, to: Socket): void => {
    from.on('data', (d: Buffer) => later(delayMs, () => to.destroyed || to.write(d)));
    from.on('end', () => later(delayMs, () => to.end()));
    from.on('error', () => to.destroy());
    from.on('close', () => later(delayMs, () => to.destroy()));
  };
  const server: Server = createServer((client) => {
    client.setNoDelay(true);
    const up = connect(target, '127.0.0.1');
    up.setNoDelay(true);
    for (const s of [client, up]) {
      open.add(s);
      s.once('close', () => open.delete(s));
    }
    relay(client, up);
    relay(up, client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as { port: number }).port,
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/**
 * A UDP path into a network namespace of its own, every datagram held `delayMs` each way. For
 * iroh, a proxy on one loopback is not enough: the endpoints tell each other their addresses over
 * the connection and move to the direct path at once. A host started in `netns` (start it with
 * `prefix`) has no address the agent can reach, so every packet goes through here: UDP on this
 * side, a Unix socket across, and a helper inside the namespace that speaks UDP to the host.
 */
export interface NamespacedUdp extends DelayProxy {
  /** Exec a command inside the namespace (for startDaemon's prefix). */
  prefix: string[];
  /** Send the datagrams on to this port inside the namespace. */
  target(port: number): void;
  /** While on, the host's datagrams are dropped (what the agent sends still arrives): a link that fails one way. */
  dropReplies(on: boolean): void;
}

export async function udpDelayIntoNamespace(delayMs: number): Promise<NamespacedUdp> {
  const dir = mkdtempSync(join(tmpdir(), 'burrow-bench-ns-'));
  const path = join(dir, 'bridge.sock');
  const front = createSocket('udp4');
  let client: RemoteInfo | undefined;
  let bridge: Socket | undefined;
  let dropping = false;
  const bridged = new Promise<Socket>((resolve) => {
    const server = createServer((s) => {
      server.close();
      resolve(s);
    }).listen(path);
  });
  // The helper holds the namespace: `ip link set lo up` in a fresh one, then node inside it.
  const inner = spawn('unshare', ['-n', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, INNER, '--inner', path], { stdio: ['ignore', 'ignore', 'inherit'] });
  bridge = await bridged;
  readFramed(bridge, (d) => {
    if (client && !dropping) {
      const to = client;
      later(delayMs, () => front.send(d, to.port, to.address));
    }
  });
  front.on('message', (msg: Buffer, from: RemoteInfo) => {
    client = from;
    later(delayMs, () => bridge?.write(framed(msg)));
  });
  front.on('error', () => undefined);
  await new Promise<void>((r) => front.bind(0, '127.0.0.1', () => r()));
  return {
    port: front.address().port,
    prefix: ['nsenter', '-t', String(inner.pid), '-n'],
    target: (port) => bridge?.write(framed(Buffer.from(`port ${port}`), 1)),
    dropReplies: (on) => (dropping = on),
    close: async () => {
      bridge?.destroy();
      bridge = undefined;
      inner.kill();
      await new Promise<void>((r) => front.close(() => r()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// Frames on the bridge: u8 kind (0 datagram, 1 control), u16 length, bytes.
function framed(b: Buffer, kind = 0): Buffer {
  const head = Buffer.alloc(3);
  head.writeUInt8(kind, 0);
  head.writeUInt16BE(b.length, 1);
  return Buffer.concat([head, b]);
}

function readFramed(s: Socket, onData: (d: Buffer) => void, onControl?: (d: Buffer) => void): void {
  let buf = Buffer.alloc(0);
  s.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 3 && buf.length >= 3 + buf.readUInt16BE(1)) {
      const len = buf.readUInt16BE(1);
      const body = buf.subarray(3, 3 + len);
      if (buf.readUInt8(0) === 1) onControl?.(body);
      else onData(body);
      buf = buf.subarray(3 + len);
    }
  });
  s.on('error', () => undefined);
}

/** Inside the namespace: datagrams from the bridge to the host's port, and the host's answers back. */
async function inner(path: string): Promise<void> {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const bridge = connect(path);
  let port = 0;
  sock.on('message', (msg: Buffer) => bridge.write(framed(msg)));
  readFramed(
    bridge,
    (d) => port > 0 && sock.send(d, port, '127.0.0.1'),
    (c) => (port = Number(/^port (\d+)$/.exec(c.toString())?.[1] ?? 0)),
  );
  bridge.once('close', () => process.exit(0));
}

if (process.argv[2] === '--inner' && process.argv[3]) await inner(process.argv[3]);
