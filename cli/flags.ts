// Command-line flags for the CLI's commands, through node:util.parseArgs (the daemon's parser too,
// and already loaded by Node). parseArgs's own strict errors are long and name no command, so it
// runs lenient and the tokens are checked here, in the order given, for messages of our own.

import { parseArgs, type ParseArgsConfig } from 'node:util';

export type FlagSpec = NonNullable<ParseArgsConfig['options']>;

/** One flag as given: `name` is the spec's key, `raw` what was typed (`-t`, `--json`). */
export interface Flag {
  name: string;
  raw: string;
  /** A valued flag's value (`-p22`, `-p 22`, `--as=x`, `--as x`); undefined for a switch. */
  value: string | undefined;
}

export interface Scanned {
  /** Every flag in order, repeats kept (`-tt` is two), so later ones can win as in ssh. */
  flags: Flag[];
  positionals: string[];
  /** The words from where scanning stopped (`--` excluded), untouched: a remote command, say. */
  rest: string[];
}

/**
 * Split `args` by `spec`. Short switches group (`-tt`, `-rp`), a valued short flag takes its value
 * attached or as the next word (`-p22`, `-NL 8080:h:80`, `-oKey=V`), long ones `--x=v` or `--x v`.
 * Scanning stops at `--` and, with `stopAt: n`, at the n-th positional (ssh-like commands: the
 * first word after the target starts the command, whose own flags are not ours). A flag not in
 * `spec`, a missing value or a value given to a switch goes to `bad` as
 * `unknown option -x` / `-p needs a value` / `--json takes no value`. A flag named in `stopOn`
 * (help) ends scanning where it stands.
 */
export function scanFlags(args: readonly string[], spec: FlagSpec, bad: (message: string) => never, opts: { stopAt?: number; stopOn?: readonly string[] } = {}): Scanned {
  const stopAt = opts.stopAt ?? Infinity;
  const { tokens } = parseArgs({ args: [...args], options: spec, strict: false, allowPositionals: true, tokens: true });
  const out: Scanned = { flags: [], positionals: [], rest: [] };
  for (const t of tokens) {
    if (t.kind === 'option-terminator') {
      out.rest = args.slice(t.index + 1);
      return out;
    }
    if (t.kind === 'positional') {
      if (out.positionals.length + 1 >= stopAt) {
        out.rest = args.slice(t.index);
        return out;
      }
      out.positionals.push(t.value);
      continue;
    }
    const type = spec[t.name]?.type;
    // A one-letter name is a short flag only: parseArgs would also take `--t` for it.
    if (type === undefined || (t.name.length === 1 && t.rawName.startsWith('--'))) bad(`unknown option ${t.rawName}`);
    if (type === 'string' && t.value === undefined) bad(`${t.rawName} needs a value`);
    if (type === 'boolean' && t.value !== undefined) bad(`${t.rawName} takes no value`);
    out.flags.push({ name: t.name, raw: t.rawName, value: t.value });
    if (opts.stopOn?.includes(t.name)) return out; // help: what follows is neither checked nor used
  }
  return out;
}

/** Whether flag `name` was given at all. */
export const hasFlag = (s: Scanned, name: string): boolean => s.flags.some((f) => f.name === name);

/** The value of the last `name` given (a repeat overrides it, as with ssh and most tools). */
export function lastValue(s: Scanned, name: string): string | undefined {
  let v: string | undefined;
  for (const f of s.flags) if (f.name === name) v = f.value;
  return v;
}
