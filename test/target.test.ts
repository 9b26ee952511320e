import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../shared/errors.js';
import { aliasCandidate, parseCopySpec, parseTarget } from '../shared/target.js';
import { ticketEndpointId } from '../shared/ticket.js';
import { parseTicket } from '../daemon/transport/iroh.js';
import { safeRemoteName } from '../daemon/agent/cp.js';
import { bindLoopback } from './helpers/iroh.js';
import { checkKnownHost, hostFieldMatches, knownHostName } from '../daemon/agent/knownhosts.js';
import { ed25519PublicBlob } from '../shared/sshkey.js';

const ID = 'ab'.repeat(32);

describe('target parser', () => {
  it('knows each kind of target', () => {
    expect(parseTarget(ID)).toEqual({ kind: 'endpoint', id: ID });
    expect(parseTarget(`alice@${ID.toUpperCase()}`)).toEqual({ kind: 'endpoint', id: ID, user: 'alice' });
    const ticket = 'endpoint' + 'a'.repeat(40);
    expect(parseTarget(ticket)).toEqual({ kind: 'ticket', ticket });
    expect(parseTarget('box.burrow')).toEqual({ kind: 'alias', name: 'box' });
    expect(parseTarget('bob@example.org:2222')).toEqual({ kind: 'tcp', host: 'example.org', port: 2222, user: 'bob' });
    expect(parseTarget('[::1]:22')).toEqual({ kind: 'tcp', host: '::1', port: 22 });
    expect(parseTarget('myhost')).toEqual({ kind: 'tcp', host: 'myhost' });
  });

  it('offers bare names as alias candidates, never host:port', () => {
    expect(aliasCandidate(parseTarget('myhost'))).toBe('myhost');
    expect(aliasCandidate(parseTarget('myhost:22'))).toBeUndefined();
    expect(aliasCandidate(parseTarget('x.burrow'))).toBe('x');
  });

  it('refuses bad targets with BadTarget and says what is expected', () => {
    for (const bad of ['', '-oProxyCommand=evil', 'a b', 'host:0', 'host:99999', '::1:22', 'us er@host', 'host:port']) {
      expect(() => parseTarget(bad), bad).toThrow(expect.objectContaining({ code: ErrorCodes.BadTarget, message: expect.stringContaining('expected') }));
    }
  });
});

describe('known_hosts', () => {
  it('matches names, [host]:port, globs, negations and hashed entries', () => {
    expect(hostFieldMatches('example.org,10.0.0.1', 'example.org')).toBe(true);
    expect(hostFieldMatches('[127.0.0.1]:2222', knownHostName('127.0.0.1', 2222))).toBe(true);
    expect(hostFieldMatches('[127.0.0.1]:2222', '1')).toBe(false); // brackets are literal, not a character class
    expect(hostFieldMatches('*.example.org,!bad.example.org', 'good.example.org')).toBe(true);
    expect(hostFieldMatches('*.example.org,!bad.example.org', 'bad.example.org')).toBe(false);
    const salt = randomBytes(20);
    const hashed = `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update('secret.host').digest('base64')}`;
    expect(hostFieldMatches(hashed, 'secret.host')).toBe(true);
    expect(hostFieldMatches(hashed, 'other.host')).toBe(false);
  });

  it('accepts and records a new host, accepts it again, and refuses a changed key naming file and line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'burrow-kh-'));
    const files = { user: join(dir, 'user_known_hosts'), own: join(dir, 'known_hosts') };
    writeFileSync(files.user, '# comment\nother.host ssh-ed25519 AAAA\n');
    const k1 = ed25519PublicBlob(randomBytes(32));
    const k2 = ed25519PublicBlob(randomBytes(32));
    expect(await checkKnownHost(files, '127.0.0.1', 2200, k1)).toEqual({ ok: true, recorded: true });
    expect(readFileSync(files.own, 'utf8')).toBe(`[127.0.0.1]:2200 ssh-ed25519 ${k1.toString('base64')}\n`);
    expect(await checkKnownHost(files, '127.0.0.1', 2200, k1)).toEqual({ ok: true, recorded: false });
    const changed = await checkKnownHost(files, '127.0.0.1', 2200, k2);
    expect(changed.ok).toBe(false);
    expect(!changed.ok && changed.message).toContain(`${files.own}:1`);
    rmSync(dir, { recursive: true });
  });
});

describe('copy specs, tickets and remote names', () => {
  it('splits TARGET:path the way scp does', () => {
    expect(parseCopySpec('/abs/file')).toEqual({ kind: 'local', path: '/abs/file' });
    expect(parseCopySpec('./a:b')).toEqual({ kind: 'local', path: './a:b' });
    expect(parseCopySpec('dir/a:b')).toEqual({ kind: 'local', path: 'dir/a:b' });
    expect(parseCopySpec('box:/etc/hosts')).toEqual({ kind: 'remote', target: 'box', path: '/etc/hosts' });
    expect(parseCopySpec('box:')).toEqual({ kind: 'remote', target: 'box', path: '' });
    expect(parseCopySpec('alice@10.0.0.1:2222:notes.txt')).toEqual({ kind: 'remote', target: 'alice@10.0.0.1:2222', path: 'notes.txt' });
    expect(parseCopySpec('[::1]:22:/x')).toEqual({ kind: 'remote', target: '[::1]:22', path: '/x' });
    expect(() => parseCopySpec('bad host:/x')).toThrow(expect.objectContaining({ code: ErrorCodes.BadTarget }));
  });

  it('reads the endpoint id out of a ticket exactly as iroh does', async () => {
    const t = await bindLoopback();
    try {
      expect(ticketEndpointId(t.ticket())).toBe(t.endpointId);
      expect(parseTicket(t.ticket()).id).toBe(t.endpointId);
    } finally {
      await t.close();
    }
    expect(() => ticketEndpointId('endpointab')).toThrow(expect.objectContaining({ code: ErrorCodes.BadTarget }));
  });

  it('never joins a remote name with a slash; skips . and ..', () => {
    expect(safeRemoteName('file.txt')).toBe('file.txt');
    expect(safeRemoteName('.')).toBeNull();
    expect(safeRemoteName('..')).toBeNull();
    for (const bad of ['a/b', '../etc', '/etc', '', 'x\0y']) expect(() => safeRemoteName(bad), bad).toThrow(/refusing remote file name/);
  });
});
