// What `status` returns: the daemon and each held connection. Shared by the daemon that builds
// it, the CLI that prints it and programs that read it.

export interface ConnectionStatus {
  /** The target as the user wrote it. */
  target: string;
  /** The pool key: user@endpoint-id or user@host:port. */
  key: string;
  kind: 'iroh' | 'tcp';
  /** Set on the target's second connection, which carries copies and forwards apart from shells. */
  lane?: 'bulk';
  endpointId?: string;
  /** Remote address of the path in use. */
  remote?: string;
  /** direct or relay for iroh (none before a path is up), tcp for plain SSH. */
  path: 'direct' | 'relay' | 'none' | 'tcp';
  rttMs?: number;
  channels: number;
  /** Requests waiting for the server to free a session slot. */
  waiting: number;
  idleSeconds: number;
  ageSeconds: number;
  bytesIn: number;
  bytesOut: number;
}

export interface DaemonStatus {
  version: string;
  pid: number;
  uptimeSeconds: number;
  endpointId: string;
  ticket: string;
  relay: 'default' | 'disabled' | 'custom';
  sockets: string[];
  socket: string;
  persist: number;
  host: boolean;
  hostBackend?: 'builtin' | 'sshd';
  hostConnections?: number;
  /** Sessions the host role has served since start. */
  sessionsServed?: number;
  /** The relay this endpoint is reachable through, when it has one. */
  homeRelay?: string;
  ipcSessions: number;
  /** Client input read and not yet handed on (bounded; see SECURITY.md). */
  ipcBufferedBytes?: number;
}

export interface ForwardStatus {
  id: string;
  target: string;
  /** In OpenSSH's words, e.g. "-L 127.0.0.1:8080:db:5432". */
  forward: string;
  /** Held by the daemon until cancelled (burrow forward add), not by a session. */
  detached: boolean;
  state: 'active' | 'reconnecting';
  boundPort?: number;
  connections: number;
  active: number;
  bytesIn: number;
  bytesOut: number;
  lastError?: string;
}

export interface DaemonStatusReport {
  daemon: DaemonStatus;
  connections: ConnectionStatus[];
  forwards: ForwardStatus[];
}

/** What `burrow info TARGET` shows about a host. */
export interface HostInfo {
  hostname: string;
  os: string;
  platform: string;
  kernel: string;
  arch: string;
  cpuModel: string;
  cpus: number;
  memTotalBytes: number;
  memAvailableBytes: number;
  uptimeSeconds: number;
  /** 1, 5 and 15 minute load averages. */
  load: number[];
}
