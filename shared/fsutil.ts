// Private files and directories: secrets live in 0700 dirs as 0600 files, written atomically.

import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, statSync, chmodSync, openSync, writeSync, fsyncSync, closeSync, unlinkSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, basename } from 'node:path';
import { BurrowError, ErrorCodes } from './errors.js';

/** Make dir (and parents) with mode 0700; refuse one owned by another user; tighten a looser mode. */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new BurrowError(ErrorCodes.IoError, `${dir} is owned by uid ${st.uid}, not by this user (${uid}); refusing to use it`);
  }
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
}

/** Write a file so that readers see the old or the new content, never a torn one. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSync(tmp);
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/** The top-level object of a state file's JSON text; blank text is an empty object. IoError otherwise. */
export function parseJsonObject(text: string, path: string): Record<string, unknown> {
  if (text.trim() === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new BurrowError(ErrorCodes.IoError, `${path} is not valid JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new BurrowError(ErrorCodes.IoError, `${path} is not a JSON object`);
  return v as Record<string, unknown>;
}

/** A text file's content, or undefined when it does not exist; any other failure is an IoError naming the file. */
export function readTextOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    return absentOrThrow(err, path);
  }
}

/** readTextOptional() without blocking (the daemon's per-connection reads). */
export async function readTextOptionalAsync(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    return absentOrThrow(err, path);
  }
}

function absentOrThrow(err: unknown, path: string): undefined {
  if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
  throw new BurrowError(ErrorCodes.IoError, `cannot read ${path}: ${(err as Error).message}`);
}
