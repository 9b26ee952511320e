// burrowd: flags, identity, roles, signals.

import { BurrowError, ErrorCodes, toBurrowError } from '../shared/errors.js';
import { parseDaemonArgs, type DaemonOptions } from './config.js';
import { loadOrCreateIdentity } from './identity.js';
import { createLogger, type Logger } from './log.js';
import { IrohTransport } from './transport/iroh.js';
import { HostAuth } from './host/auth.js';
import { Host } from './host/server.js';
import { homedir } from 'node:os';

async function run(opts: DaemonOptions, log: Logger): Promise<void> {
  const identity = loadOrCreateIdentity(opts.state);
  const transport = await IrohTransport.bind({ seed: identity.seed, relay: opts.relay, log, ...(opts.bind ? { bind: opts.bind } : {}) });
  log.info({ event: 'endpoint_bound', endpointId: transport.endpointId, sockets: transport.boundSockets(), relay: opts.relay.mode }, 'endpoint bound');

  let host: Host | undefined;
  if (opts.host) {
    host = new Host({ identity, backend: opts.hostBackend, auth: new HostAuth(opts.state, homedir(), log), log });
    await host.validate();
    transport.serve({ authorize: host.authorize, onConnection: (c) => host?.handle(c) });
    log.info({ event: 'host_serving', backend: opts.hostBackend.kind }, 'host role serving');
    process.stdout.write(`endpoint-id: ${transport.endpointId}\nticket: ${transport.ticket()}\n`);
  }

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ event: 'stopping', signal }, 'stopping');
    host?.close();
    void transport.close().then(() => {
      log.info({ event: 'stopped' }, 'stopped');
      process.exitCode = 0;
      // Node exits by itself once the endpoint is closed; signal handlers stay so a second signal does not kill mid-close.
    });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

let opts: DaemonOptions;
try {
  opts = parseDaemonArgs(process.argv.slice(2));
} catch (err) {
  const e = toBurrowError(err);
  process.stderr.write(e.code === ErrorCodes.BadArgument && e.message.startsWith('usage:') ? `${e.message}\n` : `burrowd: ${e.code}: ${e.message}\n`);
  process.exit(2);
}
const log = createLogger(opts.logLevel);
run(opts, log).catch((err: unknown) => {
  const e = err instanceof BurrowError ? err : toBurrowError(err);
  log.fatal({ event: 'fatal', code: e.code, err: e.message }, 'burrowd failed to start');
  process.stderr.write(`burrowd: ${e.code}: ${e.message}\n`);
  process.exit(1);
});
