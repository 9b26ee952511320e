// burrow system install [--user] [--host] | uninstall [--user]: write the systemd units with this
// install's real paths, then daemon-reload and enable --now. Without systemctl, print the units.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { BurrowError, ErrorCodes } from '../../shared/errors.js';
import { packagePath } from '../../shared/package.js';
import { BURROWD, usage, type CliContext } from '../context.js';

const UNITS_DIR = packagePath('systemd/');

interface Plan {
  user: boolean;
  dir: string;
  units: string[];
  /** The units to enable (a socket-activated service is enabled through its socket). */
  enable: string[];
}

function plan(user: boolean, host: boolean): Plan {
  if (!user) return { user, dir: process.env['BURROW_SYSTEMD_DIR'] ?? '/etc/systemd/system', units: ['burrowd.service'], enable: ['burrowd.service'] };
  const units = ['burrow-agent.socket', 'burrow-agent.service', ...(host ? ['burrow-host.service'] : [])];
  const base = process.env['XDG_CONFIG_HOME'] ?? join(homedir(), '.config');
  return { user, dir: process.env['BURROW_SYSTEMD_DIR'] ?? join(base, 'systemd', 'user'), units, enable: ['burrow-agent.socket', ...(host ? ['burrow-host.service'] : [])] };
}

/** A unit's text with this install's node and burrowd paths. */
export function renderUnit(name: string): string {
  return readFileSync(join(UNITS_DIR, name), 'utf8').replaceAll('@NODE@', process.execPath).replaceAll('@BURROWD@', BURROWD);
}

function which(cmd: string): string | undefined {
  for (const d of (process.env['PATH'] ?? '').split(delimiter)) if (d && existsSync(join(d, cmd))) return join(d, cmd);
  return undefined;
}

function systemctl(p: Plan, args: string[]): void {
  const r = spawnSync('systemctl', [...(p.user ? ['--user'] : []), ...args], { encoding: 'utf8' });
  if (r.status === 0) return;
  const why = (r.stderr || r.error?.message || '').trim().split('\n')[0] ?? '';
  if (/connect to bus|DBUS_SESSION_BUS_ADDRESS|XDG_RUNTIME_DIR/.test(why)) {
    throw new BurrowError(ErrorCodes.IoError, `no systemd ${p.user ? 'user ' : ''}bus here (systemctl: ${why}); nothing was installed: use burrow daemon start, or log in to a session with systemd${p.user ? ' --user' : ''}`);
  }
  throw new BurrowError(ErrorCodes.IoError, `systemctl ${p.user ? '--user ' : ''}${args.join(' ')} failed: ${why}`);
}

export function systemCommand(_ctx: CliContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  const user = rest.includes('--user');
  const host = rest.includes('--host');
  if (rest.some((a) => a !== '--user' && a !== '--host')) usage('usage: burrow system install [--user] [--host] | burrow system uninstall [--user]');
  const p = plan(user, host || !user);
  if (verb === 'install') {
    if (!which('systemctl')) {
      process.stderr.write(`burrow: systemctl is not available here; the units for ${p.dir} follow, to install by hand\n`);
      for (const u of p.units) process.stdout.write(`# ${join(p.dir, u)}\n${renderUnit(u)}\n`);
      return Promise.resolve(0);
    }
    const made = !existsSync(p.dir) ? p.dir : undefined;
    mkdirSync(p.dir, { recursive: true });
    const written = p.units.filter((u) => !existsSync(join(p.dir, u)));
    for (const u of p.units) writeFileSync(join(p.dir, u), renderUnit(u), { mode: 0o644 });
    try {
      systemctl(p, ['daemon-reload']);
    } catch (err) {
      // Nothing half-installed: the units this run added go again (and the directory it made).
      for (const u of written) rmSync(join(p.dir, u), { force: true });
      if (made) rmSync(made, { recursive: true, force: true });
      throw err;
    }
    process.stdout.write(`wrote ${p.units.map((u) => join(p.dir, u)).join(', ')}\n`);
    systemctl(p, ['enable', '--now', ...p.enable]);
    process.stdout.write(`enabled and started ${p.enable.join(', ')}\n`);
    return Promise.resolve(0);
  }
  if (verb === 'uninstall') {
    const all = user ? plan(true, true) : p;
    if (which('systemctl')) {
      const present = all.enable.filter((u) => existsSync(join(all.dir, u)));
      if (present.length > 0) systemctl(all, ['disable', '--now', ...present]);
    }
    for (const u of all.units) rmSync(join(all.dir, u), { force: true });
    if (which('systemctl')) systemctl(all, ['daemon-reload']);
    process.stdout.write(`removed ${all.units.join(', ')} from ${all.dir}\n`);
    return Promise.resolve(0);
  }
  return usage('usage: burrow system install [--user] [--host] | burrow system uninstall [--user]');
}
