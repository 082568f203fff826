/** Lays out rows as aligned columns (two spaces apart), the first row being the header. */
export function table(rows: readonly (readonly string[])[]): string[] {
  if (rows.length === 0) return [];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) =>
    r
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd(),
  );
}

/** At most `max` items, then `+N`; `-` for none. */
export function shortList(items: readonly string[], max = 3): string {
  if (items.length === 0) return '-';
  const shown = items.slice(0, max).join(',');
  return items.length > max ? `${shown} +${items.length - max}` : shown;
}

/** Column labels for the two registries: their names, told apart when both have the same one. */
export function registryLabels(from: string, to: string): { from: string; to: string } {
  return from === to ? { from: `${from} (from)`, to: `${to} (to)` } : { from, to };
}
