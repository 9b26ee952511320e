// SSH public key encoding shared by the daemon and the CLI (an endpoint id IS an ed25519 SSH key).

import { createHash } from 'node:crypto';

function sshString(b: Buffer | string): Buffer {
  const body = typeof b === 'string' ? Buffer.from(b) : b;
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

export { sshString };

/** The SSH wire blob of an ed25519 public key. */
export function ed25519PublicBlob(publicKey: Buffer): Buffer {
  return Buffer.concat([sshString('ssh-ed25519'), sshString(publicKey)]);
}

/** OpenSSH's SHA256 fingerprint of a public key blob (`SHA256:...`, no padding). */
export function fingerprint(blob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(blob).digest('base64').replace(/=+$/, '');
}

/** The authorized_keys line for an endpoint id. */
export function endpointKeyLine(endpointId: string, comment = `burrow:${endpointId.slice(0, 12)}`): string {
  return `ssh-ed25519 ${ed25519PublicBlob(Buffer.from(endpointId, 'hex')).toString('base64')} ${comment}`;
}
