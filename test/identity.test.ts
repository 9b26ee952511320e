import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../shared/errors.js';
import { StateFiles } from '../shared/paths.js';
import { loadOrCreateIdentity } from '../daemon/identity.js';

// A throwaway key as burrow's own writer produced it before ssh2 read the files, and its endpoint id.
const OLD_KEY =
  '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\nQyNTUxOQAAACAGEnPWTIKX+0kWGypKNpt9qvFxC7VXLaSR1g+3HBT8MAAAAJB1R/0cdUf9\nHAAAAAtzc2gtZWQyNTUxOQAAACAGEnPWTIKX+0kWGypKNpt9qvFxC7VXLaSR1g+3HBT8MA\nAAAEBGrRyq9Dw89IgetruFjbK5kMFJbXlMZHLlgDmLLUGIYwYSc9ZMgpf7SRYbKko2m32q\n8XELtVctpJHWD7ccFPwwAAAABmJ1cnJvdwECAwQFBgc=\n-----END OPENSSH PRIVATE KEY-----\n';
const OLD_ID = '061273d64c8297fb49161b2a4a369b7daaf1710bb5572da491d60fb71c14fc30';

let state: string;
beforeEach(() => {
  state = mkdtempSync(join(tmpdir(), 'burrow-identity-'));
});
afterEach(() => rmSync(state, { recursive: true, force: true }));

const keyPath = (): string => join(state, StateFiles.key);
const mode = (p: string): number => statSync(p).mode & 0o777;

describe('endpoint key file', () => {
  it('a key written by the earlier writer loads unchanged and keeps its endpoint id', () => {
    writeFileSync(keyPath(), OLD_KEY, { mode: 0o600 });
    expect(loadOrCreateIdentity(state).endpointId).toBe(OLD_ID);
    expect(readFileSync(keyPath(), 'utf8')).toBe(OLD_KEY);
    expect(mode(keyPath())).toBe(0o600);
  });

  it('a key made by ssh-keygen -t ed25519 loads with the public key ssh-keygen printed', () => {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'made-by-ssh-keygen', '-f', keyPath()]);
    const pub = readFileSync(`${keyPath()}.pub`, 'utf8').split(' ');
    const id = loadOrCreateIdentity(state);
    expect(id.publicKeyLine.split(' ').slice(0, 2)).toEqual(pub.slice(0, 2));
  });

  it('a new key is 0600 in a 0700 dir, and OpenSSH reads it back to the same public key', () => {
    chmodSync(state, 0o755);
    const id = loadOrCreateIdentity(state);
    expect(mode(state)).toBe(0o700);
    expect(mode(keyPath())).toBe(0o600);
    const pub = execFileSync('ssh-keygen', ['-y', '-f', keyPath()], { encoding: 'utf8' }).trim().split(' ');
    expect(pub.slice(0, 2)).toEqual(id.publicKeyLine.split(' ').slice(0, 2));
    expect(loadOrCreateIdentity(state).endpointId).toBe(id.endpointId);
  });

  it('a looser mode on the key file is tightened to 0600', () => {
    writeFileSync(keyPath(), OLD_KEY, { mode: 0o644 });
    chmodSync(keyPath(), 0o644);
    loadOrCreateIdentity(state);
    expect(mode(keyPath())).toBe(0o600);
  });

  it('a key burrow cannot use (encrypted, not ed25519, not a key) is an IoError naming the file', () => {
    execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', 'secret', '-f', keyPath()]);
    expect(() => loadOrCreateIdentity(state)).toThrow(expect.objectContaining({ code: ErrorCodes.IoError, message: expect.stringContaining(`${keyPath()} is not a usable key`) }));
    rmSync(keyPath());
    execFileSync('ssh-keygen', ['-q', '-t', 'ecdsa', '-N', '', '-f', keyPath()]);
    expect(() => loadOrCreateIdentity(state)).toThrow(expect.objectContaining({ code: ErrorCodes.IoError, message: expect.stringContaining('not an ed25519 key') }));
    writeFileSync(keyPath(), 'hello\n');
    expect(() => loadOrCreateIdentity(state)).toThrow(expect.objectContaining({ code: ErrorCodes.IoError }));
  });
});
