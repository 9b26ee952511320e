// Host facts for `burrow info`, gathered with systeminformation on the host and served as JSON on
// the `burrow-info@burrow` subsystem, i.e. only over an authenticated SSH channel. Cached briefly.

import { loadavg } from 'node:os';
import si from 'systeminformation';
import type { HostInfo } from '../../shared/status.js';

const TTL_MS = 10_000;
let cached: { at: number; info: Promise<HostInfo> } | undefined;

async function gather(): Promise<HostInfo> {
  const [os, cpu, mem, time] = await Promise.all([si.osInfo(), si.cpu(), si.mem(), Promise.resolve(si.time())]);
  const [l1 = 0, l5 = 0, l15 = 0] = loadavg();
  return {
    hostname: os.hostname,
    os: `${os.distro} ${os.release}`.trim(),
    platform: os.platform,
    kernel: os.kernel,
    arch: os.arch,
    cpuModel: `${cpu.manufacturer} ${cpu.brand}`.trim(),
    cpus: cpu.cores,
    memTotalBytes: mem.total,
    memAvailableBytes: mem.available,
    uptimeSeconds: Math.floor(Number(time.uptime)),
    load: [l1, l5, l15],
  };
}

export function hostInfo(): Promise<HostInfo> {
  if (!cached || Date.now() - cached.at > TTL_MS) {
    const info = gather();
    cached = { at: Date.now(), info };
    info.catch(() => (cached = undefined));
  }
  return cached.info;
}
