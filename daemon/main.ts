// burrowd: flags, identity, roles, signals (the requests are daemon/ipc/handlers.ts). The IPC socket is bound first: it is the
// single-instance lock, so a second daemon exits before touching anything else.

import { homedir, userInfo } from 'node:os';
import { join } from 'node:path';
import { BurrowError, ErrorCodes, toBurrowError } from '../shared/errors.js';
import { packageVersion } from '../shared/package.js';
import { StateFiles } from '../shared/paths.js';
import { clientAuthMethods } from './agent/keys.js';
import type { AgentContext } from './agent/ops.js';
import { Pool } from './agent/pool.js';
import { ForwardManager } from './agent/forward.js';
import { USAGE, parseDaemonArgs, type DaemonOptions } from './config.js';
import { HostAuth } from './host/auth.js';
import { Host } from './host/server.js';
import { loadOrCreateIdentity } from './identity.js';
import { dispatch, type DaemonContext } from './ipc/handlers.js';
import { IpcServer, type RequestFrame, type IpcSession } from './ipc/server.js';
import { createLogger, type Logger } from './log.js';
import { IrohTransport } from './transport/iroh.js';
import { inheritedListener, notify } from './systemd.js';
import { Invitations } from './pair/invitations.js';
import { PkarrRelay } from './pair/pkarr.js';
import { Rendezvous } from './pair/rendezvous.js';

const VERSION = packageVersion();

async function run(opts: DaemonOptions, log: Logger): Promise<void> {
  const started = Date.now();
  let stopping = false;
  // The socket is bound first (it is the lock), so requests can arrive before the rest is up:
  // they wait for `ready` rather than fail.
  let handle: (req: RequestFrame, s: IpcSession) => Promise<void> = () => Promise.reject(new BurrowError(ErrorCodes.Internal, 'no handler'));
  let markReady!: () => void;
  const ready = new Promise<void>((r) => (markReady = r));
  const ipc = new IpcServer(opts.socket, (req, s) => ready.then(() => handle(req, s)), log);
  // Under systemd socket activation the socket unit owns the path and hands us the listener.
  const inherited = await inheritedListener();
  await ipc.listen(inherited);
  if (inherited) log.info({ event: 'socket_activated' }, 'using the socket systemd passed');

  const identity = loadOrCreateIdentity(opts.state);
  const transport = await IrohTransport.bind({ seed: identity.seed, relay: opts.relay, log, ...(opts.bind ? { bind: opts.bind } : {}) });
  log.info({ event: 'endpoint_bound', endpointId: transport.endpointId, sockets: transport.boundSockets(), relay: opts.relay.mode }, 'endpoint bound');

  const home = homedir();
  const pool = new Pool({
    transport,
    log,
    persist: opts.persist,
    authMethods: () => clientAuthMethods(identity, home),
    knownHosts: { user: join(home, '.ssh', 'known_hosts'), own: join(opts.state, StateFiles.knownHosts) },
    keepalive: opts.keepalive,
  });
  const agent: AgentContext = { pool, state: opts.state, defaultUser: userInfo().username, log };
  const forwards = new ForwardManager(pool, log);

  const rendezvous = new Rendezvous(opts.pkarrRelay ? new PkarrRelay(opts.pkarrRelay) : null, opts.mdns, log);
  let host: Host | undefined;
  let invitations: Invitations | undefined;
  if (opts.host) {
    host = new Host({ identity, backend: opts.hostBackend, auth: new HostAuth(opts.state, home, log), log, limits: opts.hostLimits, sessions: { dir: join(opts.state, 'sessions'), ...opts.sessions } });
    await host.validate();
    invitations = new Invitations({ transport, rendezvous, state: opts.state, log });
    transport.serve({ authorize: host.authorize, onConnection: (c) => host?.handle(c), pairing: invitations.accept });
  }

  /**
   * Stop: take no new clients or peers, give running sessions up to the grace period, then end
   * what is left (clients get ShuttingDown, peers a close with the reason, processes SIGHUP) and
   * close connections, then the endpoint. Node exits by itself when all is closed.
   */
  const shutdown = async (why: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    log.info({ event: 'stopping', reason: why, graceSeconds: opts.graceSeconds }, 'stopping');
    // Whatever hangs, the process does not outlive this: a wedged daemon would hold the socket lock.
    setTimeout(() => {
      log.error({ event: 'stop_timeout' }, 'shutdown did not finish in time; exiting');
      process.exit(1);
    }, (opts.graceSeconds + 20) * 1000).unref();
    await notify('STOPPING=1', log);
    void ipc.stopAccepting();
    host?.stopAccepting();
    host?.detachSessions();
    const grace = new Promise<void>((r) => setTimeout(r, opts.graceSeconds * 1000).unref());
    await Promise.race([Promise.all([ipc.idle(), host?.idle()]), grace]);
    await ipc.close(`daemon stopped (${why})`);
    host?.close();
    forwards.closeAll();
    invitations?.closeAll();
    rendezvous.close();
    pool.closeAll('daemon stopping');
    await transport.close();
    log.info({ event: 'stopped' }, 'stopped');
  };

  /** SIGHUP: read the configuration again; live sessions are untouched. */
  const reload = async (): Promise<void> => {
    await notify('RELOADING=1', log);
    try {
      const next = parseDaemonArgs(process.argv.slice(2));
      log.level = next.logLevel;
      pool.setPersist(next.persist);
      pool.setKeepalive(next.keepalive);
      host?.setBackend(next.hostBackend);
      host?.setLimits(next.hostLimits);
      opts.graceSeconds = next.graceSeconds;
      log.info({ event: 'reloaded' }, 'configuration reloaded (authorized keys and endpoints are read per connection)');
    } catch (err) {
      log.error({ event: 'reload_failed', err: (err as Error).message }, 'reload failed; keeping the running configuration');
    }
    await notify('READY=1', log);
  };

  const ctx: DaemonContext = { version: VERSION, started, opts, agent, transport, identity, forwards, rendezvous, ipc, host, invitations, shutdown };
  handle = async (req, s) => {
    if (stopping) throw new BurrowError(ErrorCodes.ShuttingDown, 'daemon is shutting down');
    await dispatch(ctx, req, s);
  };

  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGHUP', () => void reload());
  markReady();
  log.info({ event: 'ready', socket: opts.socket, host: opts.host, version: VERSION }, 'ready');
  await notify('READY=1', log);
  if (opts.host) process.stdout.write(`endpoint-id: ${transport.endpointId}\nticket: ${transport.ticket()}\n`);
}

if (process.argv.slice(2).some((a) => a === '--version' || a === '-V')) {
  process.stdout.write(`burrowd ${VERSION}\n`);
  process.exit(0);
}
// Asked-for help goes to stdout with status 0, whole (a usage error still gets it on stderr, 2).
if (process.argv.slice(2).some((a) => a === '--help' || a === '-h')) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
let opts: DaemonOptions;
try {
  opts = parseDaemonArgs(process.argv.slice(2));
} catch (err) {
  const e = toBurrowError(err);
  process.stderr.write(e.message.startsWith('usage:') ? `${e.message}\n` : `burrowd: ${e.code}: ${e.message}\n`);
  process.exit(2);
}
const log = createLogger(opts.logLevel);
run(opts, log).catch((err: unknown) => {
  const e = toBurrowError(err);
  log.fatal({ event: 'fatal', code: e.code, err: e.message }, 'burrowd failed to start');
  process.stderr.write(`burrowd: ${e.code}: ${e.message}\n`);
  process.exit(e.code === ErrorCodes.AlreadyRunning ? 3 : 1);
});
