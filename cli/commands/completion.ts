// Shell completion. `burrow completion bash|zsh|fish` prints a script to source; each script asks
// `burrow __complete CWORD WORD...` (CWORD: the index of the word being completed among the words
// after `burrow`), which prints one candidate per line: commands, flags, alias names, forward ids,
// local paths, and for a TARGET:path word in cp the remote directory's entries, listed by the
// daemon over the pooled connection's SFTP (it never starts a daemon or waits long).

import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readAliases } from '../../shared/aliases.js';
import { IpcConnection } from '../../shared/ipc/client.js';
import type { FrameOf, RequestFrame, RequestType, ResultOf } from '../../shared/ipc/frames.js';
import { parseCopySpec } from '../../shared/target.js';
import { packagePath } from '../../shared/package.js';
import { usage, type CliContext } from '../context.js';
import { SSH_OPTION_NAMES } from './session.js';

/** How long a tab press may wait for the daemon (a cold connection is not waited for). */
const REMOTE_WAIT_MS = 3000;
const GLOBAL_FLAGS = ['--socket', '--state', '--no-autostart', '--help', '--version'];

/** Sub-verbs and flags per command; TARGET marks where a target goes. */
const VERBS: Record<string, string[]> = {
  forward: ['add', 'list', 'cancel'],
  alias: ['add', 'list', 'remove'],
  host: ['id', 'ticket', 'authorize', 'revoke', 'list'],
  daemon: ['run', 'start', 'stop'],
  system: ['install', 'uninstall'],
  completion: ['bash', 'zsh', 'fish'],
};
const FLAGS: Record<string, string[]> = {
  ssh: ['-t', '-T', '-N', '-v', '-p', '-l', '-o', '-L', '-R', '-D'],
  exec: ['--'],
  cp: ['-r', '-p', '-L', '--resume', '--json'],
  status: ['--json'],
  info: ['--json'],
  system: ['--user', '--host'],
  forward: ['-L', '-R', '-D', '--json'],
  alias: ['--json'],
};
const TARGET_FIRST = new Set(['ssh', 'exec', 'check', 'disconnect', 'info', 'proxy']);

function aliasNames(ctx: CliContext): string[] {
  try {
    return Object.keys(readAliases(ctx.state)).sort();
  } catch {
    return [];
  }
}

async function daemonAsk<T extends RequestType>(ctx: CliContext, frame: FrameOf<T> & RequestFrame): Promise<ResultOf<T> | undefined> {
  let c: IpcConnection | undefined;
  const timer = setTimeout(() => c?.close(), REMOTE_WAIT_MS);
  try {
    c = await IpcConnection.connect({ socket: ctx.socket, timeoutMs: 1000 });
    return await c.request(frame);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** Local paths for a word, directories with a trailing /. */
function localPaths(word: string): string[] {
  const dir = word.endsWith('/') ? word : dirname(word) === '.' && !word.startsWith('./') ? '' : `${dirname(word)}/`;
  const base = word.slice(dir.length);
  try {
    return readdirSync(dir === '' ? '.' : dir)
      .filter((n) => n.startsWith(base) && (base.startsWith('.') || !n.startsWith('.')))
      .map((n) => {
        let isDir = false;
        try {
          isDir = statSync(join(dir === '' ? '.' : dir, n)).isDirectory();
        } catch {
          // a dangling link is a name like any other
        }
        return `${dir}${n}${isDir ? '/' : ''}`;
      });
  } catch {
    return [];
  }
}

/** TARGET:path: the remote directory's entries that start with what is typed after its last /. */
async function remotePaths(ctx: CliContext, target: string, path: string): Promise<string[]> {
  const slash = path.lastIndexOf('/');
  const dir = slash >= 0 ? path.slice(0, slash + 1) : path === '~' ? '~/' : '';
  const base = path === '~' ? '' : path.slice(dir.length);
  const r = await daemonAsk(ctx, { t: 'ls', target, path: dir });
  const entries = (r?.['entries'] ?? []) as { name: string; dir: boolean }[];
  return entries.filter((e) => e.name.startsWith(base) && (base.startsWith('.') || !e.name.startsWith('.'))).map((e) => `${target}:${dir}${e.name}${e.dir ? '/' : ''}`);
}

async function candidates(ctx: CliContext, commands: string[], words: string[], cword: number): Promise<string[]> {
  const word = words[cword] ?? '';
  // Global flags before the command.
  let i = 0;
  while (i < cword && (words[i] ?? '').startsWith('-')) {
    if (words[i] === '--socket' || words[i] === '--state') {
      if (i + 1 === cword) return localPaths(word);
      if (words[i + 1] !== undefined) {
        if (words[i] === '--socket') ctx.socket = words[i + 1] as string;
        else ctx.state = words[i + 1] as string;
      }
      i += 2;
    } else i++;
  }
  if (cword === i) return word.startsWith('-') ? GLOBAL_FLAGS : [...commands, 'help'];
  const cmd = words[i] as string;
  const args = words.slice(i + 1, cword);
  const prev = args[args.length - 1];
  const flags = FLAGS[cmd] ?? [];
  if (word.startsWith('-')) return [...flags, '--help'];
  const verbs = VERBS[cmd];
  if (verbs && args.length === 0) return verbs;
  const aliases = aliasNames(ctx);
  if (cmd === 'ssh' && prev === '-o') return SSH_OPTION_NAMES.map((n) => `${n}=`);
  if (TARGET_FIRST.has(cmd)) {
    const positional = args.filter((a, k) => !a.startsWith('-') && !(cmd === 'ssh' && ['-L', '-R', '-D', '-p', '-l', '-o'].includes(args[k - 1] ?? '')));
    return positional.length === 0 ? aliases : [];
  }
  if (cmd === 'alias' && args[0] === 'remove' && args.length === 1) return aliases;
  if (cmd === 'forward' && args[0] === 'add' && args.length === 1) return aliases;
  if (cmd === 'forward' && args[0] === 'add' && args.length > 1) return prev && ['-L', '-R', '-D'].includes(prev) ? [] : ['-L', '-R', '-D'];
  if (cmd === 'forward' && args[0] === 'cancel') {
    const r = await daemonAsk(ctx, { t: 'forwards' });
    return ((r?.['forwards'] ?? []) as { id: string }[]).map((f) => f.id);
  }
  if (cmd === 'cp') {
    let spec;
    try {
      spec = parseCopySpec(word);
    } catch {
      spec = undefined;
    }
    if (spec?.kind === 'remote') return remotePaths(ctx, spec.target, spec.path);
    return [...aliases.map((a) => `${a}:`), ...localPaths(word)];
  }
  return [];
}

/** `burrow __complete CWORD WORD...` */
export function completeCommand(commands: string[]) {
  return async (ctx: CliContext, args: string[]): Promise<number> => {
    const [cwordText, ...words] = args;
    const cword = Number(cwordText);
    if (cwordText === undefined || !/^\d+$/.test(cwordText)) usage('usage: burrow __complete CWORD WORD...');
    ctx.autostart = false;
    const word = words[cword] ?? '';
    const all = await candidates(ctx, commands, words, cword);
    const out = [...new Set(all)].filter((c) => c.startsWith(word));
    if (out.length > 0) process.stdout.write(out.join('\n') + '\n');
    return 0;
  };
}

const BIN = packagePath('bin/burrow');

/** The scripts run the burrow that printed them (npm link or not), unless told another. */
function scripts(bin: string): Record<string, string> {
  const q = `'${bin.replace(/'/g, `'\\''`)}'`;
  return {
    bash: `# burrow completion for bash: source <(burrow completion bash)
_burrow() {
  local line=\${COMP_LINE:0:COMP_POINT} words cur
  read -ra words <<< "$line"
  [[ $line == *[[:space:]] ]] && words+=("")
  cur=\${words[-1]}
  local IFS=$'\\n'
  COMPREPLY=($(\${BURROW_COMPLETE_BIN:-${q}} __complete $(( \${#words[@]} - 2 )) "\${words[@]:1}" 2>/dev/null))
  # bash splits words at ':' (COMP_WORDBREAKS): give back only the part after the last one.
  if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
    local pre=\${cur%"\${cur##*:}"} i
    for i in "\${!COMPREPLY[@]}"; do COMPREPLY[i]=\${COMPREPLY[i]#"$pre"}; done
  fi
  local c
  for c in "\${COMPREPLY[@]}"; do [[ $c == */ || $c == *: || $c == *= ]] && compopt -o nospace; done
  return 0
}
complete -F _burrow burrow
`,
    zsh: `#compdef burrow
# burrow completion for zsh: source <(burrow completion zsh)
_burrow() {
  local -a c
  c=("\${(@f)$(\${BURROW_COMPLETE_BIN:-${q}} __complete $((CURRENT - 2)) "\${(@)words[2,-1]}" 2>/dev/null)}")
  [[ -n $c ]] || return 1
  local -a dirs plain
  dirs=(\${(M)c:#*[/:=]})
  plain=(\${c:#*[/:=]})
  (( \${#dirs} )) && compadd -Q -S '' -- "\${dirs[@]}"
  (( \${#plain} )) && compadd -Q -- "\${plain[@]}"
  return 0
}
if (( $+functions[compdef] )); then compdef _burrow burrow; fi
`,
    fish: `# burrow completion for fish: burrow completion fish | source
function __burrow_complete
  set -l words (commandline -opc) (commandline -ct)
  set -l n (math (count $words) - 2)
  set -q BURROW_COMPLETE_BIN; or set -l BURROW_COMPLETE_BIN ${q}
  $BURROW_COMPLETE_BIN __complete $n $words[2..-1] 2>/dev/null
end
complete -c burrow -f -a '(__burrow_complete)'
`,
  };
}

export function completionCommand(_ctx: CliContext, args: string[]): Promise<number> {
  const [shell, ...more] = args;
  const all = scripts(BIN);
  const script = shell !== undefined ? all[shell] : undefined;
  if (script === undefined || more.length > 0) usage('usage: burrow completion bash|zsh|fish');
  process.stdout.write(script);
  return Promise.resolve(0);
}
