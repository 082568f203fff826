import { FORBIDDEN_KEYS } from '@rollcall/core';

/** A key that cannot become a field of the configuration object, and why. */
export interface RefusedKey {
  /** The full key. */
  readonly key: string;
  readonly reason: string;
}

/** What {@link buildTree} makes of the keys under a prefix. */
export type Tree =
  | { readonly ok: true; readonly value: Record<string, unknown> }
  | { readonly ok: false; readonly refused: readonly RefusedKey[] };

/** Parses a stored value: JSON where it parses, else the string itself. */
export function parseValue(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

/** The first refused object key found inside a parsed JSON value, if any. */
function forbiddenInside(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  for (const [key, inner] of Object.entries(value)) {
    if (FORBIDDEN_KEYS.has(key)) return key;
    const deeper = forbiddenInside(inner);
    if (deeper !== undefined) return deeper;
  }
  return undefined;
}

/**
 * Turns the keys under `prefix` (full key -> stored value) into the raw configuration object:
 * each `/`-separated segment after the prefix is a level (`db/host` gives `{ db: { host } }`).
 *
 * The result depends on the set of keys alone, never on their order of arrival (fields are
 * built in key order), so it refuses
 * (lists every refused key, builds nothing) rather than guess:
 * - a key that is both a value and a folder (`db` and `db/host`): both keys are refused;
 * - a segment, or an object key inside a JSON value, named `__proto__`, `constructor` or
 *   `prototype`: such names could reach `Object.prototype` (prototype pollution).
 */
export function buildTree(entries: ReadonlyMap<string, string>, prefix: string): Tree {
  const refused = new Map<string, string>();
  const fields = new Map<string, { segments: string[]; value: unknown }>();
  // Sorted, so that even the order of the object's keys does not depend on the order of arrival.
  for (const [key, raw] of [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const path = key.slice(prefix.length);
    const segments = path.split('/');
    const bad = segments.find((s) => FORBIDDEN_KEYS.has(s));
    if (bad !== undefined) {
      refused.set(key, `the segment '${bad}' is refused (it could reach Object.prototype)`);
      continue;
    }
    const value = parseValue(raw);
    const inside = forbiddenInside(value);
    if (inside !== undefined) {
      refused.set(
        key,
        `its JSON value holds the object key '${inside}', which is refused (it could reach Object.prototype)`,
      );
      continue;
    }
    fields.set(path, { segments, value });
  }
  for (const [path, { segments }] of fields) {
    for (let i = 1; i < segments.length; i++) {
      const folder = segments.slice(0, i).join('/');
      if (!fields.has(folder)) continue;
      const reason = `'${folder}' is both a value and a folder ('${path}'): a key cannot be both`;
      refused.set(`${prefix}${folder}`, reason);
      refused.set(`${prefix}${path}`, reason);
    }
  }
  if (refused.size > 0) return { ok: false, refused: [...refused].map(([key, reason]) => ({ key, reason })) };
  const value: Record<string, unknown> = {};
  for (const { segments, value: leaf } of fields.values()) {
    let node = value;
    for (const part of segments.slice(0, -1)) {
      node[part] ??= {};
      node = node[part] as Record<string, unknown>;
    }
    node[segments.at(-1)!] = leaf;
  }
  return { ok: true, value };
}
