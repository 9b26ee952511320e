// IPC frame types: one table of field specs from which both the TypeScript types and the
// validation of arriving frames are derived, so the two can never disagree.

import { BurrowError, ErrorCodes } from '../errors.js';

export const PROTOCOL_VERSION = 1;
/** Largest encoded frame body, in bytes. */
export const MAX_FRAME = 1024 * 1024;
/** Largest data chunk carried in one stdin/stdout/stderr frame. */
export const MAX_CHUNK = 64 * 1024;
/** Longest remote command, in UTF-8 bytes (about what OpenSSH's sshd takes in one packet). */
export const MAX_COMMAND = 256 * 1024;

type Kind = 'string' | 'uint' | 'int' | 'bool' | 'bytes' | 'strings' | 'map' | 'object';
type FieldSpec = Kind | `${Kind}?`;

const SPECS = {
  // Both ways, first frame: the protocol version.
  hello: { v: 'uint' },
  // Either way, last frame: a failure with a code from shared/errors.ts.
  error: { code: 'string', message: 'string' },

  // Requests, client -> daemon; one per connection.
  exec: { target: 'string', command: 'string', pty: 'bool?', term: 'string?', cols: 'uint?', rows: 'uint?', env: 'map?' },
  shell: { target: 'string', term: 'string?', cols: 'uint?', rows: 'uint?', env: 'map?' },
  proxy: { target: 'string' },
  // src and dst: one is TARGET:path, the other an absolute local path.
  cp: { src: 'string', dst: 'string', recursive: 'bool?', preserve: 'bool?', resume: 'bool?', follow: 'bool?' },
  // A forward (-L/-R/-D spec); without detach it lives as long as this connection.
  forward: { target: 'string', type: 'string', spec: 'string', detach: 'bool?' },
  forwards: {},
  forward_cancel: { which: 'string' },
  info: { target: 'string' },
  status: {},
  check: { target: 'string' },
  disconnect: { target: 'string' },
  stop: {},

  // Streams, both ways.
  stdin: { data: 'bytes' },
  stdout: { data: 'bytes' },
  stderr: { data: 'bytes' },
  eof: {},
  resize: { cols: 'uint', rows: 'uint' },
  signal: { name: 'string' },

  // Replies, daemon -> client.
  exit: { code: 'int?', signal: 'string?' },
  result: { value: 'object' },
  // Transfer progress: bytes of the current file, and totals so far.
  progress: { path: 'string', bytes: 'uint', size: 'uint', files: 'uint', totalBytes: 'uint' },
} as const satisfies Record<string, Record<string, FieldSpec>>;

type Specs = typeof SPECS;
export type FrameType = keyof Specs;

type KindType<K> = K extends 'string'
  ? string
  : K extends 'uint' | 'int'
    ? number
    : K extends 'bool'
      ? boolean
      : K extends 'bytes'
        ? Uint8Array
        : K extends 'strings'
          ? string[]
          : K extends 'map'
            ? Record<string, string>
            : K extends 'object'
              ? Record<string, unknown>
              : never;
type Strip<S> = S extends `${infer K}?` ? K : S;
type Fields<S> = {
  -readonly [F in keyof S as S[F] extends `${string}?` ? never : F]: KindType<S[F]>;
} & {
  -readonly [F in keyof S as S[F] extends `${string}?` ? F : never]?: KindType<Strip<S[F]>>;
};

/** One frame of type T. */
export type FrameOf<T extends FrameType> = { t: T } & Fields<Specs[T]>;
/** Any frame: a discriminated union on `t`. */
export type Frame = { [T in FrameType]: FrameOf<T> }[FrameType];

function isKind(kind: Kind, v: unknown): boolean {
  switch (kind) {
    case 'string':
      return typeof v === 'string';
    case 'uint':
      return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
    case 'int':
      return typeof v === 'number' && Number.isSafeInteger(v);
    case 'bool':
      return typeof v === 'boolean';
    case 'bytes':
      return v instanceof Uint8Array;
    case 'strings':
      return Array.isArray(v) && v.every((x) => typeof x === 'string');
    case 'map':
      return isPlainObject(v) && Object.values(v).every((x) => typeof x === 'string');
    case 'object':
      return isPlainObject(v);
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || v instanceof Uint8Array) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/** Check a decoded value against the frame table; throws a BurrowError naming what is wrong. */
export function validateFrame(v: unknown): Frame {
  if (!isPlainObject(v)) throw new BurrowError(ErrorCodes.BadFrame, 'frame is not a map');
  const t = v['t'];
  if (typeof t !== 'string') throw new BurrowError(ErrorCodes.BadFrame, 'frame has no string field t');
  if (!hasOwn(SPECS, t)) throw new BurrowError(ErrorCodes.UnknownFrame, `unknown frame type ${JSON.stringify(t.slice(0, 40))}`);
  const spec: Record<string, FieldSpec> = SPECS[t as FrameType];
  for (const [field, fs] of Object.entries(spec)) {
    const optional = fs.endsWith('?');
    const kind = (optional ? fs.slice(0, -1) : fs) as Kind;
    const value = v[field];
    if (value === undefined || value === null) {
      if (optional) {
        delete v[field]; // nil on the wire means absent
        continue;
      }
      throw new BurrowError(ErrorCodes.BadFrame, `${t} frame lacks field ${field}`);
    }
    if (!isKind(kind, value)) throw new BurrowError(ErrorCodes.BadFrame, `${t} frame field ${field} is not ${kind}`);
  }
  for (const field of Object.keys(v)) {
    if (field !== 't' && !hasOwn(spec, field)) {
      throw new BurrowError(ErrorCodes.BadFrame, `${t} frame has unknown field ${JSON.stringify(field.slice(0, 40))}`);
    }
  }
  return v as Frame;
}

/** The frame types, for tests that generate frames from the table. */
export function frameSpecs(): Readonly<Record<FrameType, Readonly<Record<string, FieldSpec>>>> {
  return SPECS;
}
