// The SSH subsystems burrow's own hosts serve and its agent asks for, and what a host says in its
// ident: the names both roles must agree on, kept here so neither role imports the other.

/** Host facts as JSON (`burrow info`); served by host/info.ts. */
export const INFO_SUBSYSTEM = 'burrow-info@burrow';
/** A command read from the channel: for commands over one SSH packet (see ssh/channels.ts). */
export const LONG_EXEC_SUBSYSTEM = 'exec@burrow';
/** Persistent sessions: the keeper's frames over the channel (session/agent.ts, session/host.ts). */
export const SESSION_SUBSYSTEM = 'burrow-session@burrow';
/** The comment a burrow host puts after its version in its SSH ident: this, then hex new at each start. */
export const BOOT_ID_PREFIX = 'boot-';
