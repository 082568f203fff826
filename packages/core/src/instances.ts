import type { ServiceInstance, Snapshot } from './types.js';

function sameList(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  return a.every((v, i) => v === b[i]);
}

function sameRecord(a: Record<string, string> | undefined, b: Record<string, string> | undefined): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => a[k] === b[k]);
}

/** True when two instances carry the same data (field order and copies do not matter). */
export function instanceEquals(a: ServiceInstance, b: ServiceInstance): boolean {
  return (
    a.id === b.id &&
    a.service === b.service &&
    a.host === b.host &&
    a.port === b.port &&
    a.version === b.version &&
    a.weight === b.weight &&
    sameList(a.tags, b.tags) &&
    sameRecord(a.metadata, b.metadata)
  );
}

/** Orders instances by id (the order of every {@link Snapshot}). */
export function byId(a: ServiceInstance, b: ServiceInstance): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Builds a frozen snapshot; `instances` need not be sorted. */
export function makeSnapshot(
  service: string,
  instances: Iterable<ServiceInstance>,
  stale: boolean,
  syncedAt: number,
): Snapshot {
  // The list is typed readonly but not frozen: see patchSorted.
  return Object.freeze({ service, instances: [...instances].sort(byId), stale, syncedAt });
}

/** Index of the first instance whose id is not below `id` in a list sorted by id. */
function lowerBound(list: readonly ServiceInstance[], id: string): number {
  let lo = 0;
  let hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (list[mid]!.id < id) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The sorted list after a change, built from the previous sorted list with binary searches
 * (O(n) copy + O(k log n)) instead of a re-sort: a large service's watchers pay for the change,
 * not for the list. (Lists are not frozen: V8 copies frozen arrays on a slow path, 60x slower.)
 */
export function patchSorted(
  previous: readonly ServiceInstance[],
  upserts: readonly ServiceInstance[],
  removedIds: readonly string[],
): readonly ServiceInstance[] {
  const out = previous.slice();
  for (const id of removedIds) {
    const at = lowerBound(out, id);
    if (out[at]?.id === id) out.splice(at, 1);
  }
  for (const instance of upserts) {
    const at = lowerBound(out, instance.id);
    if (out[at]?.id === instance.id) out[at] = instance;
    else out.splice(at, 0, instance);
  }
  return out;
}

/** The difference between two lists of one service, by id. */
export interface InstanceDiff {
  added: ServiceInstance[];
  removed: ServiceInstance[];
  updated: ServiceInstance[];
}

/** Compares two lists of one service by id; `updated` holds the new version of each changed instance. */
export function diffInstances(
  previous: Iterable<ServiceInstance>,
  next: Iterable<ServiceInstance>,
): InstanceDiff {
  const before = new Map<string, ServiceInstance>();
  for (const i of previous) before.set(i.id, i);
  const added: ServiceInstance[] = [];
  const updated: ServiceInstance[] = [];
  const seen = new Set<string>();
  for (const i of next) {
    seen.add(i.id);
    const old = before.get(i.id);
    if (!old) added.push(i);
    else if (!instanceEquals(old, i)) updated.push(i);
  }
  const removed = [...before.values()].filter((i) => !seen.has(i.id));
  return { added: added.sort(byId), removed: removed.sort(byId), updated: updated.sort(byId) };
}
