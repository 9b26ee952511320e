// Signals the CLI was started with ignored (nohup, `&` in a script) stay ignored, as with ssh.
// Node resets every signal to its default at start, so the launcher (bin/burrow or the native
// client) names them in BURROW_IGNORED_SIGNALS; read once and taken out of the environment, so
// that nothing this process starts inherits a stale list.

const NAMES = { HUP: 'SIGHUP', INT: 'SIGINT', TERM: 'SIGTERM' } as const;
type Handled = (typeof NAMES)[keyof typeof NAMES];

const ignored = new Set<Handled>();
for (const w of (process.env['BURROW_IGNORED_SIGNALS'] ?? '').split(',')) {
  const sig = NAMES[w as keyof typeof NAMES];
  if (sig) ignored.add(sig);
}
delete process.env['BURROW_IGNORED_SIGNALS'];

/** Ignore again what was ignored when we started: a listener that does nothing replaces Node's default (ending the process). */
export function keepInheritedIgnores(): void {
  for (const sig of ignored) process.on(sig, () => undefined);
}

/** Listen for `sig` unless it was inherited as ignored; returns what stops listening. */
export function onSignal(sig: Handled, h: () => void, once = false): () => void {
  if (ignored.has(sig)) return () => undefined;
  if (once) process.once(sig, h);
  else process.on(sig, h);
  return () => process.off(sig, h);
}
