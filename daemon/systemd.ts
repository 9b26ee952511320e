// The two systemd protocols burrowd speaks, both inert when not under systemd:
// socket activation (LISTEN_FDS/LISTEN_PID: the IPC socket arrives as fd 3) and readiness
// notification (READY=1 / STOPPING=1 to $NOTIFY_SOCKET).

import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import type { Logger } from './log.js';

const SD_LISTEN_FDS_START = 3;

/** The listening socket systemd passed us, if it passed exactly one for this process. */
export function inheritedListener(env: NodeJS.ProcessEnv = process.env): Promise<Server | undefined> {
  const fds = Number(env['LISTEN_FDS']);
  if (!fds || Number(env['LISTEN_PID']) !== process.pid) return Promise.resolve(undefined);
  // Not passed on to children (they are not the activated service).
  delete process.env['LISTEN_FDS'];
  delete process.env['LISTEN_PID'];
  delete process.env['LISTEN_FDNAMES'];
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ fd: SD_LISTEN_FDS_START }, () => resolve(server));
  });
}

/**
 * Tell systemd our state. Node has no Unix datagram sockets, so this runs systemd-notify (part
 * of systemd, so present wherever $NOTIFY_SOCKET is set), naming our pid as the sender.
 */
export function notify(state: 'READY=1' | 'STOPPING=1' | 'RELOADING=1', log: Logger, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  if (!env['NOTIFY_SOCKET']) return Promise.resolve();
  return new Promise((resolve) => {
    const p = spawn('systemd-notify', [`--pid=${process.pid}`, state], { stdio: 'ignore', env });
    p.once('error', (err) => {
      log.warn({ event: 'notify_failed', state, err: err.message }, 'cannot run systemd-notify');
      resolve();
    });
    p.once('exit', (code) => {
      if (code !== 0) log.warn({ event: 'notify_failed', state, code }, 'systemd-notify failed');
      resolve();
    });
  });
}
