// Where the package is installed, found one way for every caller: the CLI bundle
// (dist/cli/burrow.mjs), the compiled files (dist/...), the daemon, and the TypeScript source the
// tests run. Each sits at a different depth, so the root is the nearest directory holding package.json.

import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

function findRoot(): URL {
  for (let dir = new URL('./', import.meta.url); ; ) {
    if (existsSync(new URL('package.json', dir))) return dir;
    const up = new URL('../', dir);
    if (up.href === dir.href) throw new Error(`no package.json above ${import.meta.url}`);
    dir = up;
  }
}

/** The package root, as a directory URL (ends in /). */
export const PACKAGE_ROOT: URL = findRoot();

/** A path inside the package: `packagePath('bin/burrowd.js')`. */
export const packagePath = (rel: string): string => fileURLToPath(new URL(rel, PACKAGE_ROOT));

/** The version in package.json (burrow and burrowd report the same one). */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('package.json', PACKAGE_ROOT), 'utf8')) as { version: string }).version;
}
