// What `session list` returns: one row per kept session. Built by the session keeper on the host,
// printed by the CLI.

/** A session as `burrow session list` shows it. */
export interface SessionInfo {
  name: string;
  command: string | null;
  created: number;
  lastAttached: number | null;
  clients: number;
  cols: number;
  rows: number;
  running: boolean;
  exit: { code?: number; signal?: string } | null;
  pid: number;
  keeperPid: number;
  scrollbackBytes: number;
}
