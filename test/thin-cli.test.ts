// The CLI stays thin: what it loads is shared/, msgpackr and Node's own modules, nothing else
// (no ssh2, iroh, pino or systeminformation), since its start-up is part of every command.

import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packagePath } from '../shared/package.js';

const ROOT = packagePath('');

function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:import|export)[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => (m[1] ?? m[2]) as string);
}

function tsFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => join(ROOT, dir, f));
}

describe('thin CLI', () => {
  it('imports only shared/, msgpackr and node: modules', () => {
    const allowed = (spec: string, from: string): boolean =>
      spec.startsWith('node:') || spec === 'msgpackr' || (spec.startsWith('.') && (from.includes('/cli/') ? !spec.includes('daemon/') : !spec.includes('daemon/') && !spec.includes('cli/')));
    const offenders: string[] = [];
    for (const f of [...tsFiles('cli'), ...tsFiles('shared')]) for (const spec of imports(f)) if (!allowed(spec, f)) offenders.push(`${f.slice(ROOT.length)} -> ${spec}`);
    expect(offenders).toEqual([]);
  });

  it('ships as one bundle without ssh2, iroh, pino or systeminformation', () => {
    const bundle = readFileSync(join(ROOT, 'dist/cli/burrow.mjs'), 'utf8');
    for (const heavy of ['@number0/iroh', 'ssh2', 'pino', 'systeminformation', '@lydell/node-pty']) expect(bundle.includes(`"${heavy}"`) || bundle.includes(`'${heavy}'`), heavy).toBe(false);
    expect(readFileSync(join(ROOT, 'bin/burrow.js'), 'utf8')).toContain('dist/cli/burrow.mjs');
    // bin/burrow runs the native client when built, else the same bundle.
    const launcher = readFileSync(join(ROOT, 'bin/burrow'), 'utf8');
    expect(launcher).toContain('dist/native/burrow');
    expect(launcher).toContain('dist/cli/burrow.mjs');
  });
});
