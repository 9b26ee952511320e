// A real OpenSSH sshd on loopback for interop tests: temporary host key, its own
// AuthorizedKeysFile, StrictModes no, UsePAM no. Stopped and removed by stop().

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';

export interface RunningSshd {
  port: number;
  dir: string;
  user: string;
  /** The host key's public line (`ssh-ed25519 AAAA...`). */
  hostKeyPub: string;
  /** A client key authorized to log in: OpenSSH private key text and public line. */
  clientKey: string;
  clientKeyPub: string;
  clientKeyPath: string;
  authorizedKeysPath: string;
  /** What sshd has logged so far (LogLevel VERBOSE, on stderr). */
  log(): string;
  stop(): Promise<void>;
}

export const SSHD = ['/usr/sbin/sshd', '/usr/bin/sshd'].find((p) => existsSync(p));

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * OpenSSH client options for the reference in benchmarks: this sshd's client key, one persistent
 * ControlMaster at controlPath, host key learned into scratch/known_hosts, no prompts. No destination.
 */
export function sshMasterOpts(sshd: RunningSshd, controlPath: string, scratch: string): string[] {
  return [
    '-F', 'none', '-i', sshd.clientKeyPath, '-p', String(sshd.port),
    '-o', 'ControlMaster=auto', '-o', `ControlPath=${controlPath}`, '-o', 'ControlPersist=600',
    '-o', `UserKnownHostsFile=${join(scratch, 'known_hosts')}`, '-o', 'StrictHostKeyChecking=accept-new',
    '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR',
  ];
}

export function keygen(path: string, comment = 'burrow-test'): { priv: string; pub: string } {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path]);
  return { priv: readFileSync(path, 'utf8'), pub: readFileSync(`${path}.pub`, 'utf8').trim() };
}

export async function startSshd(extraConfig: string[] = [], fixedPort?: number): Promise<RunningSshd> {
  if (!SSHD) throw new Error('sshd is not installed (apt-get install openssh-server)');
  // sshd refuses to start without its privilege separation directory.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const dir = mkdtempSync(join(tmpdir(), 'burrow-sshd-'));
  const host = keygen(join(dir, 'host_ed25519'), 'host');
  const client = keygen(join(dir, 'client_ed25519'), 'client');
  const authorizedKeysPath = join(dir, 'authorized_keys');
  writeFileSync(authorizedKeysPath, client.pub + '\n', { mode: 0o600 });
  const port = fixedPort ?? (await freePort());
  const config = [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${join(dir, 'host_ed25519')}`,
    `AuthorizedKeysFile ${authorizedKeysPath}`,
    'StrictModes no',
    'UsePAM no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PermitRootLogin prohibit-password',
    `PidFile ${join(dir, 'sshd.pid')}`,
    'LogLevel VERBOSE',
    'Subsystem sftp internal-sftp',
    // bash sources ~/.bashrc for commands it thinks sshd started (stdin a socket, SHLVL < 2); this
    // machine's root .bashrc runs pyenv, which races with itself across 100 parallel sessions.
    'SetEnv SHLVL=1',
    ...extraConfig,
  ];
  writeFileSync(join(dir, 'sshd_config'), config.join('\n') + '\n');
  const proc: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let errText = '';
  proc.stderr!.on('data', (d: Buffer) => (errText += d.toString()));
  // Ready once it accepts TCP connections.
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`sshd exited: ${errText}`);
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`sshd did not listen: ${errText}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    dir,
    user: userInfo().username,
    hostKeyPub: host.pub,
    clientKey: client.priv,
    clientKeyPub: client.pub,
    clientKeyPath: join(dir, 'client_ed25519'),
    authorizedKeysPath,
    log: () => errText,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
