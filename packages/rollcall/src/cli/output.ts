import type { ServiceInstance } from '@rollcall/core';

/** Left-aligned columns two spaces apart; the first row is the header. */
export function table(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) =>
    r
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd(),
  );
}

/** JSON with bigints (fencing tokens) as decimal strings, on one line. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

/** `k=v,k2=v2`, or `-` when empty. */
function formatMetadata(metadata: Readonly<Record<string, string>> | undefined): string {
  const pairs = Object.entries(metadata ?? {}).map(([k, v]) => `${k}=${v}`);
  return pairs.join(',') || '-';
}

/** The `instances` table: id, address, version, weight, tags, metadata. */
export function instanceRows(instances: readonly ServiceInstance[]): string[][] {
  return [
    ['ID', 'ADDRESS', 'VERSION', 'WEIGHT', 'TAGS', 'METADATA'],
    ...instances.map((i) => [
      i.id,
      i.host.includes(':') ? `[${i.host}]:${i.port}` : `${i.host}:${i.port}`,
      i.version ?? '-',
      String(i.weight ?? 1),
      (i.tags ?? []).join(',') || '-',
      formatMetadata(i.metadata),
    ]),
  ];
}

/** Milliseconds with one decimal below 10 ms (`0.8 ms`, `12 ms`). */
export function formatMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}
