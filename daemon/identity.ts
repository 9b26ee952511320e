// The daemon's one ed25519 key: iroh endpoint key, SSH host key and default SSH user key.
// Stored as an unencrypted OpenSSH private key (openssh-key-v1): ssh2 parses ed25519 keys only in
// that format, and OpenSSH's own tools can use the same file.

import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, statSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { BurrowError, ErrorCodes } from '../shared/errors.js';
import { StateFiles } from '../shared/paths.js';
import { ensurePrivateDir, writeFileAtomic } from '../shared/fsutil.js';
import { ed25519PublicBlob, sshString } from '../shared/sshkey.js';

export interface Identity {
  /** 32-byte ed25519 seed. Never logged. */
  readonly seed: Buffer;
  /** 32-byte ed25519 public key. */
  readonly publicKey: Buffer;
  /** Endpoint id: the public key in lowercase hex (iroh's text form). */
  readonly endpointId: string;
  /** The private key in OpenSSH format, for ssh2. */
  readonly privateKeyOpenSSH: string;
  /** `ssh-ed25519 AAAA... comment`, for authorized_keys. */
  readonly publicKeyLine: string;
}

const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');
const KEY_TYPE = 'ssh-ed25519';

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

export function publicKeyFromSeed(seed: Buffer): Buffer {
  // PKCS#8 wrapping of a raw ed25519 seed (RFC 8410), so Node's crypto derives the public half.
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  const jwk = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new BurrowError(ErrorCodes.Internal, 'ed25519 key export lacks x');
  return Buffer.from(jwk.x, 'base64url');
}

export function encodeOpenSSHPrivateKey(seed: Buffer, publicKey: Buffer, comment: string): string {
  const check = randomBytes(4);
  let priv = Buffer.concat([check, check, sshString(KEY_TYPE), sshString(publicKey), sshString(Buffer.concat([seed, publicKey])), sshString(comment)]);
  const pad: number[] = [];
  for (let i = 1; (priv.length + pad.length) % 8 !== 0; i++) pad.push(i);
  priv = Buffer.concat([priv, Buffer.from(pad)]);
  const body = Buffer.concat([MAGIC, sshString('none'), sshString('none'), sshString(''), u32(1), sshString(ed25519PublicBlob(publicKey)), sshString(priv)]);
  const b64 = body.toString('base64').replace(/.{1,70}/g, '$&\n');
  return `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}-----END OPENSSH PRIVATE KEY-----\n`;
}

class Reader {
  private off = 0;
  constructor(private readonly buf: Buffer) {}
  u32(): number {
    if (this.off + 4 > this.buf.length) throw new Error('truncated');
    const n = this.buf.readUInt32BE(this.off);
    this.off += 4;
    return n;
  }
  bytes(): Buffer {
    const n = this.u32();
    if (this.off + n > this.buf.length) throw new Error('truncated');
    const b = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return b;
  }
  string(): string {
    return this.bytes().toString('latin1');
  }
}

/** Parse an unencrypted OpenSSH ed25519 private key; returns the 32-byte seed. */
export function decodeOpenSSHPrivateKey(text: string): Buffer {
  const m = /-----BEGIN OPENSSH PRIVATE KEY-----([\s\S]*?)-----END OPENSSH PRIVATE KEY-----/.exec(text);
  if (!m || m[1] === undefined) throw new Error('not an OpenSSH private key');
  const body = Buffer.from(m[1].replace(/\s+/g, ''), 'base64');
  if (!body.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error('not an openssh-key-v1 key');
  const r = new Reader(body.subarray(MAGIC.length));
  if (r.string() !== 'none' || r.string() !== 'none') throw new Error('encrypted keys are not supported');
  r.bytes(); // kdf options
  if (r.u32() !== 1) throw new Error('expected exactly one key');
  r.bytes(); // public key blob, repeated in the private section
  const p = new Reader(r.bytes());
  if (p.u32() !== p.u32()) throw new Error('check bytes differ (corrupt key)');
  if (p.string() !== KEY_TYPE) throw new Error('not an ed25519 key');
  const pub = p.bytes();
  const both = p.bytes();
  if (pub.length !== 32 || both.length !== 64) throw new Error('bad ed25519 key lengths');
  return Buffer.from(both.subarray(0, 32));
}

export function identityFromSeed(seed: Buffer, comment = 'burrow'): Identity {
  const publicKey = publicKeyFromSeed(seed);
  const blob = ed25519PublicBlob(publicKey);
  return {
    seed,
    publicKey,
    endpointId: publicKey.toString('hex'),
    privateKeyOpenSSH: encodeOpenSSHPrivateKey(seed, publicKey, comment),
    publicKeyLine: `${KEY_TYPE} ${blob.toString('base64')} ${comment}`,
  };
}

/** Load the state dir's key, generating it on first start. The dir is made 0700 and the file 0600. */
export function loadOrCreateIdentity(state: string): Identity {
  ensurePrivateDir(state);
  const path = join(state, StateFiles.key);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new BurrowError(ErrorCodes.IoError, `cannot read ${path}: ${String(err)}`);
    const jwk = generateKeyPairSync('ed25519').privateKey.export({ format: 'jwk' });
    if (typeof jwk.d !== 'string') throw new BurrowError(ErrorCodes.Internal, 'ed25519 key export lacks d');
    const id = identityFromSeed(Buffer.from(jwk.d, 'base64url'));
    writeFileAtomic(path, id.privateKeyOpenSSH, 0o600);
    return id;
  }
  if ((statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600);
  try {
    return identityFromSeed(decodeOpenSSHPrivateKey(text));
  } catch (err) {
    throw new BurrowError(ErrorCodes.IoError, `${path} is not a usable key: ${err instanceof Error ? err.message : String(err)}`);
  }
}
