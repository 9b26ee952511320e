// Build the native fast client (cli/native/burrow.c) into dist/native/burrow, with the protocol
// constants taken from shared/ipc/frames.ts so the two clients cannot drift apart. Without a C
// compiler, or with one that fails, the build says so and goes on: bin/burrow then runs the Node
// CLI for every command.

import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MAX_CHUNK, MAX_COMMAND, MAX_FRAME, PROTOCOL_VERSION } from '../../shared/ipc/frames.js';

// Run from dist/cli/native/build.js: the repo root is three levels up.
const ROOT = new URL('../../../', import.meta.url);
const source = fileURLToPath(new URL('cli/native/burrow.c', ROOT));
const outDir = fileURLToPath(new URL('dist/native/', ROOT));
const out = `${outDir}burrow`;

const cc = process.env['CC'] || 'cc';
mkdirSync(outDir, { recursive: true });
const r = spawnSync(
  cc,
  [
    '-std=c11',
    '-O2',
    '-Wall',
    '-Wextra',
    '-Werror',
    `-DBURROW_PROTOCOL_VERSION=${PROTOCOL_VERSION}`,
    `-DBURROW_MAX_FRAME=${MAX_FRAME}`,
    `-DBURROW_MAX_CHUNK=${MAX_CHUNK}`,
    `-DBURROW_MAX_COMMAND=${MAX_COMMAND}`,
    // The Node that built us runs the Node CLI for what the native client hands over.
    `-DBURROW_NODE=${JSON.stringify(process.execPath)}`,
    '-o',
    out,
    source,
  ],
  { stdio: ['ignore', 'inherit', 'inherit'] },
);
if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
  process.stderr.write(`burrow build: no C compiler (${cc}); burrow runs on the Node CLI alone, which is slower to start\n`);
} else if (r.status !== 0) {
  // A compiler that cannot build it (missing headers, another libc) costs speed, not function;
  // CI fails here so that a broken native client is never shipped silently.
  rmSync(out, { force: true });
  process.stderr.write(`burrow build: ${cc} failed on ${source}; burrow runs on the Node CLI alone\n`);
  if (process.env['CI']) process.exit(1);
}
