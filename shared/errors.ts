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
    super(message, options);
    this.name = 'BurrowError';
    this.code = code;
  }
}

/** Wrap anything thrown into a BurrowError, keeping an existing code. */
export function toBurrowError(err: unknown, fallback: ErrorCode = ErrorCodes.Internal): BurrowError {
  if (err instanceof BurrowError) return err;
  return new BurrowError(fallback, firstLine(err instanceof Error ? err.message : String(err)), { cause: err });
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
      return 1;
    case ErrorCodes.BadArgument:
      return 2;
    case ErrorCodes.CommandTimeout:
      return 124; // as timeout(1)
    default:
      return 255;
  }
}
