import { type Backend, type Snapshot, validateServiceName } from '@rollcall/core';
import { ACK_SERVICE } from './acks.js';

/** One service, side by side in both registries. */
export interface ServiceComparison {
  service: string;
  /** Instances in `from`. */
  from: number;
  /** Instances in `to`. */
  to: number;
  /** Ids only in `from`, sorted. */
  onlyInFrom: string[];
  /** Ids only in `to`, sorted. */
  onlyInTo: string[];
  /** May reads of this service move to `to`? `blocked` unless `to >= threshold x from` and `to > 0` where `from > 0`. */
  verdict: 'ok' | 'blocked';
  /** True when either registry answered from its last known list (it is unreachable): the counts may be old. */
  stale: boolean;
}

/** Services compared at once (each comparison reads both registries). */
const CONCURRENCY = 8;

/** The verdict rule, learned from Dubbo 3's address comparator (`new = 0` stays; else `new / old >= threshold`). */
export function verdictOf(from: number, to: number, threshold: number): 'ok' | 'blocked' {
  if (from === 0) return 'ok';
  return to > 0 && to >= threshold * from ? 'ok' : 'blocked';
}

/** Compares two snapshots of one service. */
export function compareSnapshots(from: Snapshot, to: Snapshot, threshold: number): ServiceComparison {
  const fromIds = new Set(from.instances.map((i) => i.id));
  const toIds = new Set(to.instances.map((i) => i.id));
  return {
    service: from.service,
    from: fromIds.size,
    to: toIds.size,
    onlyInFrom: [...fromIds].filter((id) => !toIds.has(id)).sort(),
    onlyInTo: [...toIds].filter((id) => !fromIds.has(id)).sort(),
    verdict: verdictOf(fromIds.size, toIds.size, threshold),
    stale: from.stale || to.stale,
  };
}

/**
 * Compares every service of both registries (or only `service`), sorted by name. The fleet's
 * own presence service ({@link ACK_SERVICE}) is left out: it lives in `to` only, by design.
 */
export async function compareRegistries(
  from: Backend,
  to: Backend,
  threshold: number,
  service?: string,
): Promise<ServiceComparison[]> {
  let services: string[];
  if (service !== undefined) services = [validateServiceName(service)];
  else {
    const [a, b] = await Promise.all([from.discovery.listServices(), to.discovery.listServices()]);
    services = [...new Set([...a, ...b])].filter((s) => s !== ACK_SERVICE).sort();
  }
  const out: ServiceComparison[] = new Array(services.length);
  let next = 0;
  const worker = async () => {
    while (next < services.length) {
      const at = next++;
      const name = services[at]!;
      const [f, t] = await Promise.all([from.discovery.getInstances(name), to.discovery.getInstances(name)]);
      out[at] = compareSnapshots(f, t, threshold);
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, services.length) }, worker));
  return out;
}
