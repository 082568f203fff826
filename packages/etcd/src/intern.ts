import type { ServiceInstance } from '@rollcall/core';

/**
 * Shares identical immutable parts of cached instances (version strings, tag lists, metadata
 * objects), which instances of one service nearly always have in common. Every instance is frozen
 * by validation, so sharing is invisible to callers; it cuts the heap cost of a large cache.
 * Bounded: past `limit` distinct values, new ones are simply not shared.
 */
export class Interner {
  private readonly strings = new Map<string, string>();
  private readonly tags = new Map<string, readonly string[]>();
  private readonly metadata = new Map<string, Readonly<Record<string, string>>>();

  constructor(private readonly limit = 10_000) {}

  /** A copy of `instance` (already validated and frozen) whose shareable parts are shared. */
  instance(instance: ServiceInstance, service: string): ServiceInstance {
    if (instance.version === undefined && instance.tags === undefined && instance.metadata === undefined)
      return instance;
    const out: ServiceInstance = { id: instance.id, service, host: instance.host, port: instance.port };
    if (instance.version !== undefined)
      out.version = this.share(this.strings, instance.version, instance.version);
    if (instance.tags !== undefined)
      out.tags = this.share(this.tags, instance.tags.join('\u0000'), instance.tags) as string[];
    if (instance.metadata !== undefined) {
      out.metadata = this.share(
        this.metadata,
        JSON.stringify(instance.metadata),
        instance.metadata,
      ) as Record<string, string>;
    }
    if (instance.weight !== undefined) out.weight = instance.weight;
    return Object.freeze(out);
  }

  private share<T>(map: Map<string, T>, key: string, value: T): T {
    const known = map.get(key);
    if (known !== undefined) return known;
    if (map.size < this.limit && key.length <= 1024) map.set(key, value);
    return value;
  }
}
