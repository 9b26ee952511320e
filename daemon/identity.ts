// The daemon's one ed25519 key: iroh endpoint key, SSH host key and default SSH user key.
// Stored as an unencrypted OpenSSH private key (openssh-key-v1): ssh2 parses ed25519 keys only in
// that format, and OpenSSH's own tools can use the same file. ssh2 reads it; ssh2 has no writer,
// so encodeOpenSSHPrivateKey() writes it.

import { createPrivateKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { statSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import ssh2 from 'ssh2';
import { BurrowError, ErrorCodes } from '../shared/errors.js';
import { StateFiles } from '../shared/paths.js';
import { ensurePrivateDir, readTextOptional, writeFileAtomic } from '../shared/fsutil.js';
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

/** Parse an unencrypted OpenSSH ed25519 private key (ssh2's parser); returns the 32-byte seed. */
export function decodeOpenSSHPrivateKey(text: string): Buffer {
  const parsed = ssh2.utils.parseKey(text);
  if (parsed instanceof Error) throw parsed;
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key === undefined || !key.isPrivateKey()) throw new Error('not a private key');
  if (key.type !== KEY_TYPE) throw new Error(`not an ed25519 key (${key.type})`);
  // ssh2 hands the private half back as PKCS#8; Node's JWK export of it carries the seed as `d`.
  const jwk = createPrivateKey(key.getPrivatePEM()).export({ format: 'jwk' });
  if (typeof jwk.d !== 'string') throw new Error('ed25519 key export lacks d');
  return Buffer.from(jwk.d, 'base64url');
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
  const text = readTextOptional(path);
  if (text === undefined) {
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
