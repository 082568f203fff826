/**
 * Groups `items` by `key`, in order within each group. Linear: each group is one array appended
 * to (copying a group's array on every item, `[...(map.get(k) ?? []), item]`, is quadratic, and
 * every registration of a client shares one lease or one ttl).
 */
export function groupBy<T, K>(items: Iterable<T>, key: (item: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const group = groups.get(k);
    if (group) group.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}
