// The library API for Node programs.
export * from './errors.js';
export * from './ipc/frames.js';
export * from './ipc/codec.js';
export * from './paths.js';
export * from './lib.js';
export * from './status.js';
export * from './target.js';
export { IpcConnection } from './ipc/client.js';
export * from './fleet.js';
export * from './groups.js';
