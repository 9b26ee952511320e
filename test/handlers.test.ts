// The daemon's handler table against the frame table: every request has exactly one handler, and
// what may follow a request is what its handler takes.

import { describe, expect, it } from 'vitest';
import { HANDLERS } from '../daemon/ipc/handlers.js';
import { frameSpecs, isRequest, mayFollow, requestTypes, type Frame, type FrameType } from '../shared/ipc/frames.js';

describe('the handler table', () => {
  it('has a handler for every request in the frame table, and for nothing else', () => {
    const requests = requestTypes();
    expect(requests.length).toBeGreaterThan(0);
    for (const t of requests) expect(typeof HANDLERS[t], `handler for ${t}`).toBe('function');
    expect(Object.keys(HANDLERS).sort()).toEqual([...requests].sort());
  });

  it('names only frames of the table as requests, and no reply or stream frame', () => {
    const all = Object.keys(frameSpecs()) as FrameType[];
    for (const t of requestTypes()) expect(all).toContain(t);
    for (const t of ['hello', 'error', 'stdin', 'eof', 'resize', 'signal', 'stdout', 'stderr', 'exit', 'result', 'progress', 'invitation', 'attached'] as const) {
      expect(isRequest({ t } as Frame), t).toBe(false);
    }
  });

  it('lets only stream input follow a request: stdin, eof, resize and signal for sessions, stdin and eof for proxy, nothing for the rest', () => {
    const input: FrameType[] = ['stdin', 'eof', 'resize', 'signal'];
    for (const t of ['exec', 'shell', 'session_open'] as const) for (const f of input) expect(mayFollow(t, f), `${f} after ${t}`).toBe(true);
    expect(mayFollow('proxy', 'stdin')).toBe(true);
    expect(mayFollow('proxy', 'eof')).toBe(true);
    expect(mayFollow('proxy', 'resize')).toBe(false);
    for (const t of requestTypes()) {
      expect(mayFollow(t, 'hello'), `hello after ${t}`).toBe(false);
      expect(mayFollow(t, 'exec'), `exec after ${t}`).toBe(false);
    }
    for (const t of ['status', 'forward', 'cp', 'invite', 'stop', 'join'] as const) for (const f of input) expect(mayFollow(t, f), `${f} after ${t}`).toBe(false);
  });
});
