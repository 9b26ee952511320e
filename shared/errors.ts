// The one list of error codes that cross the IPC socket. Daemon, CLI and library all use these
// strings unchanged; exit codes are derived from them in one place (exitCodeFor).

export const ErrorCodes = {
  /** A frame could not be decoded (bad msgpack, not a map, wrong field types). */
  BadFrame: 'BadFrame',
  /** A frame's declared length is over the 1 MiB limit. */
  FrameTooLarge: 'FrameTooLarge',
  /** A frame's `t` names no known frame type. */
  UnknownFrame: 'UnknownFrame',
  /** A frame arrived that the protocol does not allow at this point. */
  UnexpectedFrame: 'UnexpectedFrame',
  /** The peer speaks another IPC protocol version. */
  VersionMismatch: 'VersionMismatch',
  /** A target string could not be parsed. */
  BadTarget: 'BadTarget',
  /** A target names an alias or host that is not known. */
  UnknownTarget: 'UnknownTarget',
  /** A command-line argument or request field is invalid. */
  BadArgument: 'BadArgument',
  /** The connection attempt did not complete in time. */
  ConnectTimeout: 'ConnectTimeout',
  /** The connection attempt failed (unreachable, refused, handshake error). */
  ConnectFailed: 'ConnectFailed',
  /** A live connection was lost. */
  Disconnected: 'Disconnected',
  /** The remote's SSH host key is not the one expected for this target. */
  HostKeyMismatch: 'HostKeyMismatch',
  /** The remote refused every key we offered. */
  AuthRejected: 'AuthRejected',
  /** The remote refused our endpoint id at the transport, before SSH. */
  PeerRefused: 'PeerRefused',
  /** The remote refused to open a channel. */
  ChannelRefused: 'ChannelRefused',
  /** A file or remote object does not exist. */
  NotFound: 'NotFound',
  /** A local file operation failed. */
  IoError: 'IoError',
  /** No daemon answers on the socket. */
  DaemonUnavailable: 'DaemonUnavailable',
  /** Another daemon already serves this socket. */
  AlreadyRunning: 'AlreadyRunning',
  /** The daemon is shutting down. */
  ShuttingDown: 'ShuttingDown',
  /** A bug: something that should not happen. */
  Internal: 'Internal',
  /** Pairing by code failed: a wrong code was tried, the invitation expired or was cancelled. */
  PairingFailed: 'PairingFailed',
  /** The socket or its directory is a symlink, owned by another user, or open to others. */
  UnsafeSocket: 'UnsafeSocket',
  /** An IPC client broke a limit: too slow (hello, a partial frame), too much unread input, too many connections. */
  IpcLimit: 'IpcLimit',
  /** The remote command ran past its time limit and was ended. */
  CommandTimeout: 'CommandTimeout',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

const codeSet: ReadonlySet<string> = new Set(Object.values(ErrorCodes));

export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && codeSet.has(s);
}

/** An error with a stable code a caller can match on; `cause` keeps the underlying error. */
export class BurrowError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(plainMessage(message), options);
    this.name = 'BurrowError';
    this.code = code;
  }
}

/** Wrap anything thrown into a BurrowError, keeping an existing code. */
export function toBurrowError(err: unknown, fallback: ErrorCode = ErrorCodes.Internal): BurrowError {
  if (err instanceof BurrowError) return err;
  return new BurrowError(fallback, firstLine(err instanceof Error ? err.message : String(err)), { cause: err });
}

// What native (Rust) errors put in their text that means nothing to a user: source locations
// like "(/home/x/.cargo/.../src/endpoint.rs:1057:26)" and type paths like "ConnectError::Connect".
const SOURCE_LOCATION = /\s*\(?(?:at\s+)?[^\s()]*\.rs:\d+(?::\d+)?\)?/g;
const TYPE_PATH = /\b[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)+\b/g;

/**
 * The one place every error message is made plain: no Rust source paths, no crate or type names
 * (BurrowError's constructor applies it). A message that loses its detail says what failed.
 */
export function plainMessage(message: string): string {
  return message
    .split('\n')
    .map((line) => {
      const s = line.replace(SOURCE_LOCATION, '').replace(TYPE_PATH, '').replace(/[ \t]{2,}/g, ' ').trimEnd();
      if (s === line.trimEnd()) return s;
      const bare = s.replace(/[\s:(]+$/, '');
      return bare === '' ? 'failed' : bare === s ? s : `${bare} failed`;
    })
    .join('\n');
}

/** Native errors (iroh's anyhow) carry backtraces after the first line; messages keep one line. */
export function firstLine(s: string): string {
  const line = s.split('\n', 1)[0] ?? '';
  return line.trim();
}

/** Exit status of the CLI for a failure with this code, like ssh: 255 for connection trouble. */
export function exitCodeFor(code: ErrorCode): number {
  switch (code) {
    case ErrorCodes.NotFound:
    case ErrorCodes.IoError:
    case ErrorCodes.PairingFailed:
      return 1;
    case ErrorCodes.BadArgument:
      return 2;
    case ErrorCodes.CommandTimeout:
      return 124; // as timeout(1)
    default:
      return 255;
  }
}

/**
 * Input quoted in a message, cut to `max` characters: a message must never grow with its input
 * (a 1 MiB target quoted whole made an error frame over the frame limit).
 */
export function quoteInput(s: string, max = 80): string {
  if (s.length <= max) return JSON.stringify(s);
  return `${JSON.stringify(s.slice(0, max))}... (${s.length} characters)`;
}

/** Longest message an error frame carries; longer ones are cut (their start says what failed). */
export const MAX_ERROR_MESSAGE = 4096;

/** A message cut to MAX_ERROR_MESSAGE characters. */
export function boundedMessage(s: string): string {
  return s.length <= MAX_ERROR_MESSAGE ? s : `${s.slice(0, MAX_ERROR_MESSAGE)}... (${s.length - MAX_ERROR_MESSAGE} more characters)`;
}

/**
 * Text from elsewhere (a remote's file names, a server's or peer's messages) made safe to write to
 * a terminal (CVE-2019-6109 class): C0 and C1 controls, DEL and bidi overrides become \xNN or
 * \uNNNN, so a name cannot move the cursor, retitle the window, erase a line or reorder what is
 * shown. A newline is kept unless `keepNewline` is false.
 */
export function printable(s: string, keepNewline = true): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    if (c === '\n' && keepNewline) return c;
    const n = c.charCodeAt(0);
    return n <= 0xff ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
}
