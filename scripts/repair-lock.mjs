#!/usr/bin/env node
// Repairs package-lock.json after `npm install --package-lock-only`.
// iroh and msgpackr-extract list platform packages that were never published. npm <= 11.15 writes
// them as bare `{"optional": true}` entries that later npm rejects ("Invalid Version"); npm >= 11.16
// leaves them out and then `npm ci` rejects its own lock ("Missing: ... from lock file").
// Each one gets an entry with the version its parent asks for and the os/cpu/libc its name states,
// like any published platform package, so every npm 11 skips it by platform instead of fetching it.
import { readFileSync, writeFileSync } from 'node:fs';

const lockPath = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(lockPath, 'utf8'));
const packages = lock.packages;

const OS = ['android', 'darwin', 'linux', 'win32', 'freebsd', 'openbsd', 'sunos', 'aix'];
const CPU = ['arm64', 'arm', 'x64', 'ia32', 'riscv64', 'ppc64', 's390x', 'loong64', 'universal'];

/** Platform facts from a name like `iroh-linux-arm-musleabihf` or `msgpackr-extract-darwin-x64`. */
export function platformOf(name) {
  const parts = name.split('/').pop().split('-');
  const osIdx = parts.findIndex((p) => OS.includes(p));
  if (osIdx < 0) return undefined;
  const cpu = parts[osIdx + 1];
  if (!CPU.includes(cpu)) return undefined;
  const abi = parts.slice(osIdx + 2).join('-');
  const out = { os: [parts[osIdx]], cpu: [cpu === 'universal' ? 'arm64' : cpu] };
  if (parts[osIdx] === 'linux') {
    if (abi.startsWith('musl')) out.libc = ['musl'];
    else if (abi.startsWith('gnu')) out.libc = ['glibc'];
  }
  return out;
}

/** The version the nearest parent that lists `name` asks for. */
function wantedVersion(key, name) {
  const parentKey = key.slice(0, key.lastIndexOf('/node_modules/'));
  for (const k of [parentKey, '']) {
    const p = packages[k];
    const spec = p?.optionalDependencies?.[name] ?? p?.dependencies?.[name];
    if (spec) return spec.replace(/^[\^~=]/, '');
  }
  return undefined;
}

let repaired = 0;
// Platform packages a parent lists but the lock lacks: add a placeholder beside the parent.
for (const [key, entry] of Object.entries(packages)) {
  for (const name of Object.keys(entry.optionalDependencies ?? {})) {
    const nested = `${key}/node_modules/${name}`;
    const hoisted = `node_modules/${name}`;
    if (!(nested in packages) && !(hoisted in packages) && platformOf(name)) packages[nested] = {};
  }
}
for (const [key, entry] of Object.entries(packages)) {
  if (key === '' || entry.version || entry.link) continue;
  const name = key.slice(key.lastIndexOf('node_modules/') + 'node_modules/'.length);
  const version = wantedVersion(key, name);
  const platform = platformOf(name);
  if (!version || !platform) {
    console.error(`repair-lock: cannot repair ${key}: no version or platform known`);
    process.exit(1);
  }
  packages[key] = { version, optional: true, ...platform, ...entry };
  repaired += 1;
}
// npm writes entries sorted by key; keep that so a regenerated lock diffs cleanly.
lock.packages = Object.fromEntries(
  Object.entries(packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)),
);
writeFileSync(lockPath, JSON.stringify(lock, null, 2) + '\n');
console.log(`repair-lock: ${repaired} placeholder entr${repaired === 1 ? 'y' : 'ies'} repaired`);
