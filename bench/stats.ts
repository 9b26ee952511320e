// Figures for benchmarks: median and spread of repeated runs, and ratios against a reference.

export interface Summary {
  n: number;
  median: number;
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
  return { n: s.length, median, p90: at(0.9), min: s[0] as number, max: s[s.length - 1] as number };
}

export function fmt(x: Summary, unit: string, digits = 1): string {
  return `median ${x.median.toFixed(digits)} ${unit} (p90 ${x.p90.toFixed(digits)}, range ${x.min.toFixed(digits)}-${x.max.toFixed(digits)}, n=${x.n})`;
}
