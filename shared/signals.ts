// The signal names SSH carries (RFC 4254 §6.10): what a `signal` frame may name, and what a host
// accepts and reports by name.

export const SSH_SIGNALS: ReadonlySet<string> = new Set(['ABRT', 'ALRM', 'FPE', 'HUP', 'ILL', 'INT', 'KILL', 'PIPE', 'QUIT', 'SEGV', 'TERM', 'USR1', 'USR2']);

/** "SIGINT" -> "INT"; a name without the prefix is returned as it is. */
export function bareSignal(name: string): string {
  return name.startsWith('SIG') ? name.slice(3) : name;
}

/** "INT" or "SIGINT" -> "INT"; undefined for a name SSH cannot carry (STOP, TSTP, ...). */
export function sshSignal(name: string): string | undefined {
  const bare = bareSignal(name);
  return SSH_SIGNALS.has(bare) ? bare : undefined;
}
