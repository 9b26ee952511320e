// Figures for benchmarks: median and spread of repeated runs, and ratios against a reference.

export interface Summary {
  n: number;
  median: number;
  p10: number;
  p90: number;
  min: number;
  max: number;
}

export function summarize(xs: number[]): Summary {
  if (xs.length === 0) throw new Error('no samples');
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)] as number;
  const mid = s.length / 2;
  const median = s.length % 2 ? (s[Math.floor(mid)] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
  return { n: s.length, median, p10: at(0.1), p90: at(0.9), min: s[0] as number, max: s[s.length - 1] as number };
}

export function fmt(x: Summary, unit: string, digits = 1): string {
  return `median ${x.median.toFixed(digits)} ${unit} (p90 ${x.p90.toFixed(digits)}, range ${x.min.toFixed(digits)}-${x.max.toFixed(digits)}, n=${x.n})`;
}

/**
 * Ratios of interleaved runs taken pair by pair (a[i] / b[i]): on a shared machine load drifts
 * within seconds, and each pair ran side by side, so the spread of these is the ratio's own.
 */
export function pairRatios(a: number[], b: number[]): Summary {
  if (a.length !== b.length) throw new Error(`unpaired samples: ${a.length} vs ${b.length}`);
  return summarize(a.map((x, i) => x / (b[i] as number)));
}

/** A ratio with its spread: `0.93 (p10 0.85, p90 1.02, n=30)`. */
export function fmtRatio(x: Summary): string {
  return `${x.median.toFixed(2)} (p10 ${x.p10.toFixed(2)}, p90 ${x.p90.toFixed(2)}, n=${x.n})`;
}
