import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './servers/index.js';

/** Latency summary of a set of samples, in ms. */
export interface LatencySummary {
  n: number;
  p50: number;
  p99: number;
  mean: number;
  max: number;
}

/** Summarizes latency samples (ms): count, median, 99th percentile (nearest rank), mean, max. */
export function summarize(samples: readonly number[]): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
  const round = (v: number) => Math.round(v * 1000) / 1000;
  return {
    n: sorted.length,
    p50: round(at(50)),
    p99: round(at(99)),
    mean: round(sorted.reduce((a, b) => a + b, 0) / Math.max(1, sorted.length)),
    max: round(sorted.at(-1) ?? Number.NaN),
  };
}

/** The machine a benchmark ran on, for its report. */
export function machine(): { cpus: number; cpu: string | undefined; node: string; platform: string } {
  return {
    cpus: cpus().length,
    cpu: cpus()[0]?.model,
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
}

/**
 * Prints `rows` as a table under a title naming the date and machine, and writes
 * `bench-results/<name>.json` at the repository root (or the working directory). Returns the file path.
 */
export function reportBench(
  name: string,
  rows: Record<string, unknown>[],
  extra: Record<string, unknown> = {},
): string {
  const result = { benchmark: name, date: new Date().toISOString(), machine: machine(), rows, ...extra };
  console.log(
    `${name}: ${result.date.slice(0, 10)}, ${result.machine.cpus} cores, node ${result.machine.node}`,
  );
  console.table(rows);
  const dir = join(repoRoot() ?? process.cwd(), 'bench-results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  writeFileSync(
    file,
    `${JSON.stringify(result, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`,
  );
  console.log(`wrote ${file}`);
  return file;
}
