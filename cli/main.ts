// burrow: the thin client. argv -> one IPC session -> exit code. Imports shared/ and msgpackr only;
// each command's module is loaded only when that command runs, to keep start-up short.

import { BurrowError, ErrorCodes } from '../shared/errors.js';
import { defaultContext, fail, type CliContext } from './context.js';
import { scanFlags } from './flags.js';
import { keepInheritedIgnores } from './signals.js';

const HELP = `usage: burrow [--socket PATH] [--state DIR] [--no-autostart] COMMAND ...

  invite [--as NAME] [--ttl S] [--detach]   a one-use pairing code for this host; waits for the join
  invite list [--json] | invite cancel [NAMEPLATE]   (no NAMEPLATE: all of them)
  join CODE [--as ALIAS] [--force]   pair with the host that ran burrow invite: afterwards
                                  burrow ssh ALIAS works (--force: retry a code that failed here)
  ssh TARGET [-t|-T] [-N] [-v] [-p PORT] [-l USER] [-o OPTION=VALUE] [-L spec] [-R spec] [-D [bind:]port] [CMD...]
                                  a shell or command on TARGET (PTY when stdin is a terminal);
                                  forwards live as long as this session; ~? lists the escapes
  ssh TARGET --session NAME [--reconnect-timeout S] [--session-linger S] [CMD...]
                                  a persistent shell: attach to NAME, creating it when absent;
                                  ~. or ~d detaches, the shell lives on; reconnects by itself
  session list TARGET [--json] | session attach TARGET NAME [--read-only] | session kill TARGET NAME
  forward add TARGET -L|-R|-D SPEC   a forward held by the daemon until cancelled
  forward list [--json] | forward cancel ID|SPEC
  exec TARGET -- CMD...           run CMD; stdout, stderr and exit status kept apart
  status [--json]                 the daemon and its connections
  check TARGET                    exit 0 when a live connection to TARGET is held
  info TARGET [--json]            the host's name, OS, kernel, CPU, memory, uptime and load
  disconnect TARGET               close the held connection to TARGET
  daemon run|start|stop           run burrowd here, start it in the background, or stop it
  host id|ticket                  this machine's endpoint id or ticket
  host authorize KEY|ENDPOINT_ID  let a key or endpoint in (takes effect for new connections)
  host revoke KEY|ENDPOINT_ID     take it out again
  host list                       what is authorized
  alias add NAME TARGET | alias list [--json] | alias remove NAME
  cp [-r] [-p] [-L] [--resume] [--json] SRC... DST
                                  copy files and trees; TARGET:path on one side
  system install [--user] [--host] | system uninstall [--user]
                                  systemd units: the host as a system service, or the agent
                                  (socket-activated) and a host for this user alone
  proxy TARGET                    raw SSH bytes, for ssh -o ProxyCommand='burrow proxy %h'
  ssh-config                      a Host block so ssh/scp/sftp/rsync/git reach NAME.burrow
  completion bash|zsh|fish        a script to source for tab completion (remote paths in cp too)
  version                         burrow's version, and the daemon's when one answers (also -V, --version)
  group add NAME TARGET... | group remove NAME [TARGET...] | group list [--json]
                                  named lists of targets; @NAME stands for every member
  exec @GROUP[,@G2,TARGET] [--fanout N] [--connect-timeout S] [--timeout S]
       [--gather|--json] [--log-dir DIR] [-n] -- CMD...
                                  CMD on every member, at most N at once (32); lines prefixed
                                  NAME:, a summary on stderr; status @GROUP and check @GROUP too

TARGET is an alias, a ticket, an endpoint id, or [user@]host[:port] for an ordinary sshd.
Exit status: the remote command's; 128+N when it died of signal N; 255 when the connection or
daemon failed (with one line "burrow: <code>: <message>" on stderr).`;

type Command = (ctx: CliContext, args: string[]) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  ssh: async () => (await import('./commands/session.js')).sshCommand,
  exec: async () => (await import('./commands/session.js')).execCommand,
  status: async () => (await import('./commands/status.js')).statusCommand,
  check: async () => (await import('./commands/status.js')).checkCommand,
  disconnect: async () => (await import('./commands/status.js')).disconnectCommand,
  daemon: async () => (await import('./commands/daemon.js')).daemonCommand,
  host: async () => (await import('./commands/host.js')).hostCommand,
  alias: async () => (await import('./commands/alias.js')).aliasCommand,
  proxy: async () => (await import('./commands/proxy.js')).proxyCommand,
  cp: async () => (await import('./commands/cp.js')).cpCommand,
  forward: async () => (await import('./commands/forward.js')).forwardCommand,
  system: async () => (await import('./commands/system.js')).systemCommand,
  info: async () => (await import('./commands/info.js')).infoCommand,
  'ssh-config': async () => (await import('./commands/sshconfig.js')).sshConfigCommand,
  version: async () => (await import('./commands/version.js')).versionCommand,
  completion: async () => (await import('./commands/completion.js')).completionCommand,
  // Completion offers the names in this table (hidden ones, starting with __, left out).
  __complete: async () => (await import('./commands/completion.js')).completeCommand(Object.keys(COMMANDS).filter((n) => !n.startsWith('__'))),
  invite: async () => (await import('./commands/invite.js')).inviteCommand,
  join: async () => (await import('./commands/join.js')).joinCommand,
  group: async () => (await import('./commands/group.js')).groupCommand,
  session: async () => (await import('./commands/sessions.js')).sessionsCommand,
};

/** A command's lines of the help text: `burrow CMD --help` prints them. */
function commandUsage(name: string): string {
  const lines = HELP.split('\n');
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const words = line.trim().split(/\s+/);
    if (!line.startsWith('  ') || line.startsWith('   ') || (words[0] !== name && !(words.includes('|') && words.includes(name)))) continue;
    out.push(line);
    while ((lines[i + 1] ?? '').startsWith('        ')) out.push(lines[++i] as string);
  }
  return `usage: burrow ${name} ...\n${out.join('\n')}`;
}

/**
 * `-h`/`--help` after a subcommand: anywhere for most commands; for ssh, exec and proxy only
 * before TARGET (after it, words are the remote command's; ssh also takes it among its options).
 */
function wantsHelp(name: string, args: string[]): boolean {
  const isHelp = (a: string | undefined): boolean => a === '-h' || a === '--help';
  if (name === 'ssh' || name === 'exec' || name === 'proxy') return isHelp(args[0]);
  if (name === '__complete') return false;
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some(isHelp);
}

const GLOBAL_FLAGS = {
  socket: { type: 'string' },
  state: { type: 'string' },
  'no-autostart': { type: 'boolean' },
  h: { type: 'boolean', short: 'h' },
  help: { type: 'boolean' },
  V: { type: 'boolean', short: 'V' },
  version: { type: 'boolean' },
} as const;

function help(): number {
  process.stdout.write(HELP + '\n');
  return 0;
}

async function main(argv: string[]): Promise<number> {
  keepInheritedIgnores();
  const ctx = defaultContext();
  const bad = (m: string): never => {
    throw new BurrowError(ErrorCodes.BadArgument, m.startsWith('unknown') ? `${m} (burrow --help lists them)` : m);
  };
  // Global flags end at the command's name; help and version end them too, whatever follows.
  const given = scanFlags(argv, GLOBAL_FLAGS, bad, { stopAt: 1, stopOn: ['h', 'help', 'V', 'version'] });
  for (const f of given.flags) {
    if (f.name === 'socket') ctx.socket = f.value as string;
    else if (f.name === 'state') ctx.state = f.value as string;
    else if (f.name === 'no-autostart') ctx.autostart = false;
    else if (f.name === 'V' || f.name === 'version') return (await COMMANDS['version']!())(ctx, []);
    else return help();
  }
  const [name, ...args] = given.rest;
  if (name === 'help') return help();
  if (name === undefined) {
    process.stderr.write(HELP + '\n');
    return 2;
  }
  const load = COMMANDS[name];
  if (!load) throw new BurrowError(ErrorCodes.BadArgument, `unknown command ${JSON.stringify(name)} (burrow --help lists them)`);
  if (wantsHelp(name, args)) {
    process.stdout.write(commandUsage(name) + '\n');
    return 0;
  }
  return (await load())(ctx, args);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => fail(err),
);
