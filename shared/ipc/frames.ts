// IPC frame types: one table of field specs from which both the TypeScript types and the
// validation of arriving frames are derived, so the two can never disagree.

import { BurrowError, ErrorCodes, isErrorCode } from '../errors.js';
import type { ConnectionStatus, DaemonStatusReport, ForwardStatus, HostInfo } from '../status.js';

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
  // connectTimeout (ms) bounds reaching the host (ssh -o ConnectTimeout, fleet --connect-timeout);
  // exec's timeout (ms) bounds the command once started.
  exec: { target: 'string', command: 'string', pty: 'bool?', term: 'string?', cols: 'uint?', rows: 'uint?', env: 'map?', connectTimeout: 'uint?', timeout: 'uint?' },
  // pty: false asks for a shell with no PTY (ssh -T, or stdin not a terminal); absent means a PTY.
  shell: { target: 'string', term: 'string?', cols: 'uint?', rows: 'uint?', env: 'map?', pty: 'bool?', connectTimeout: 'uint?' },
  proxy: { target: 'string' },
  // src and dst: one is TARGET:path, the other an absolute local path. srcs, when present, lists
  // every source (src is then the first); several sources go into the directory dst.
  cp: { src: 'string', dst: 'string', recursive: 'bool?', preserve: 'bool?', resume: 'bool?', follow: 'bool?', srcs: 'strings?' },
  // A forward (-L/-R/-D spec); without detach it lives as long as this connection.
  forward: { target: 'string', type: 'string', spec: 'string', detach: 'bool?' },
  forwards: {},
  forward_cancel: { which: 'string' },
  info: { target: 'string' },
  status: {},
  check: { target: 'string' },
  disconnect: { target: 'string' },
  stop: {},
  // The entries of a remote directory, over the pooled connection's SFTP (shell completion).
  ls: { target: 'string', path: 'string' },
  // Pairing by code: open an invitation (host), list or cancel them, join with a code (client).
  invite: { name: 'string?', ttl: 'uint?', detach: 'bool?' },
  invitations: {},
  invite_cancel: { which: 'string?' },
  join: { code: 'string' },
  // Persistent sessions (docs/ARCHITECTURE.md): attach to NAME, creating it when asked; offset
  // is the last output byte the client saw, so a reattach gets exactly what it missed.
  session_open: { target: 'string', name: 'string', command: 'string?', create: 'bool?', readOnly: 'bool?', offset: 'uint?', term: 'string?', cols: 'uint?', rows: 'uint?', env: 'map?', linger: 'uint?' },
  sessions: { target: 'string' },
  session_kill: { target: 'string', name: 'string' },

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
  // An invitation is open: its code (the password words: shown to the user, never logged).
  invitation: { code: 'string', nameplate: 'string', expiresAt: 'uint', name: 'string', where: 'string?' },
  // A persistent session attached: stdout that follows starts at output offset `offset`; screen,
  // when present, is the terminal redrawn (the missed bytes were no longer held).
  attached: { name: 'string', offset: 'uint', screen: 'bytes?', writer: 'bool', pid: 'uint' },
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

// The requests: what each answers with, and which frames the client may send after it (the
// stream phase; before the request only hello, after the answer nothing). The daemon's set of
// requests and its check of the frames that follow one are derived from this.
const SESSION_IN = ['stdin', 'eof', 'resize', 'signal'] as const;
const REQUESTS = {
  exec: { replies: ['stdout', 'stderr', 'exit'], follows: SESSION_IN },
  shell: { replies: ['stdout', 'stderr', 'exit'], follows: SESSION_IN },
  proxy: { replies: ['stdout', 'exit'], follows: ['stdin', 'eof'] },
  cp: { replies: ['progress', 'stderr', 'result'], follows: [] },
  // Without detach the result comes first and the forward lives until the client goes.
  forward: { replies: ['result'], follows: [] },
  forwards: { replies: ['result'], follows: [] },
  forward_cancel: { replies: ['result'], follows: [] },
  info: { replies: ['result'], follows: [] },
  status: { replies: ['result'], follows: [] },
  check: { replies: ['result'], follows: [] },
  disconnect: { replies: ['result'], follows: [] },
  stop: { replies: ['result'], follows: [] },
  ls: { replies: ['result'], follows: [] },
  // The invitation first; without detach, warnings on stderr, then the result once joined.
  invite: { replies: ['invitation', 'stderr', 'result'], follows: [] },
  invitations: { replies: ['result'], follows: [] },
  invite_cancel: { replies: ['result'], follows: [] },
  join: { replies: ['result'], follows: [] },
  // eof and signal are taken and ignored: the session outlives the client's stdin.
  session_open: { replies: ['attached', 'stdout', 'exit'], follows: SESSION_IN },
  sessions: { replies: ['result'], follows: [] },
  session_kill: { replies: ['result'], follows: [] },
} as const satisfies Record<string, { replies: readonly FrameType[]; follows: readonly FrameType[] }>;

/** The requests a client may make, one per connection. */
export type RequestType = keyof typeof REQUESTS;
export type RequestFrame = { [T in RequestType]: FrameOf<T> }[RequestType];

export function isRequest(f: Frame): f is RequestFrame {
  return hasOwn(REQUESTS, f.t);
}

/** Whether frame type `t` may follow request `req` (client -> daemon). */
export function mayFollow(req: RequestType, t: FrameType): boolean {
  return (REQUESTS[req].follows as readonly FrameType[]).includes(t);
}

/** The request types, for tests and the daemon's handler table. */
export function requestTypes(): RequestType[] {
  return Object.keys(REQUESTS) as RequestType[];
}

/** The `result` value a request answers with, where it has a shared type; others are plain maps. */
interface ResultValues {
  status: DaemonStatusReport;
  info: HostInfo;
  forward: ForwardStatus;
  forwards: { forwards: ForwardStatus[] };
  forward_cancel: { cancelled: number };
  stop: { stopping: boolean; pid: number };
  check: { alive: true; connection: ConnectionStatus } | { alive: false; key: string };
  disconnect: { closed: boolean; key: string };
}
export type ResultOf<T extends RequestType> = T extends keyof ResultValues ? ResultValues[T] : Record<string, unknown>;

/**
 * The typed value of request `_req`'s result frame. The daemon is this build's (hello checked the
 * protocol version), so its result for T is ResultOf<T>: this is the one place the client trusts it.
 */
export function resultValue<T extends RequestType>(_req: T, f: FrameOf<'result'>): ResultOf<T> {
  const value: unknown = f.value;
  return value as ResultOf<T>;
}

/** A `result` frame carrying a typed value (the one place a typed value becomes the wire's map). */
export function resultFrame<T extends RequestType>(_req: T, value: ResultOf<T>): FrameOf<'result'> {
  return { t: 'result', value: value as Record<string, unknown> };
}

/** An error frame as a BurrowError; a code this build does not know becomes Internal. */
export function errorFromFrame(f: FrameOf<'error'>): BurrowError {
  return new BurrowError(isErrorCode(f.code) ? f.code : ErrorCodes.Internal, f.message);
}
