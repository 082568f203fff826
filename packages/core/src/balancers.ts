import type { ServiceDiscovery, ServiceInstance, Snapshot } from './types.js';

/** Picks an instance for each call from the latest list of a service. */
export interface Balancer {
  /** `round-robin`, `random`, `weighted-round-robin` or `consistent-hash`. */
  readonly strategy: BalancerStrategy;
  /** Replaces the candidate list (e.g. from each new {@link Snapshot}). State is kept by instance id. */
  update(instances: readonly ServiceInstance[]): void;
  /** One instance, or `undefined` when there is none. `key` routes calls for consistent hashing; the others ignore it. */
  pick(key?: string): ServiceInstance | undefined;
}

/** The built-in strategies. */
export type BalancerStrategy = 'round-robin' | 'random' | 'weighted-round-robin' | 'consistent-hash';

/** Options of {@link createBalancer}. */
export interface BalancerOptions {
  /** Random source in [0, 1) for `random`. Default `Math.random`. */
  random?: () => number;
  /** Points on the hash ring per unit of weight, for `consistent-hash`. Default 100. */
  replicas?: number;
}

const weightOf = (i: ServiceInstance) => i.weight ?? 1;

class RoundRobin implements Balancer {
  readonly strategy = 'round-robin' as const;
  private instances: readonly ServiceInstance[] = [];
  private next = 0;
  update(instances: readonly ServiceInstance[]): void {
    this.instances = instances;
  }
  pick(): ServiceInstance | undefined {
    const n = this.instances.length;
    if (n === 0) return undefined;
    if (this.next >= n) this.next = 0;
    return this.instances[this.next++];
  }
}

/** Weighted random: each instance is drawn with probability weight / total weight. */
class RandomPick implements Balancer {
  readonly strategy = 'random' as const;
  private instances: readonly ServiceInstance[] = [];
  private cumulative = new Float64Array(0);
  private uniform = true;
  constructor(private readonly random: () => number) {}
  update(instances: readonly ServiceInstance[]): void {
    this.instances = instances;
    this.cumulative = new Float64Array(instances.length);
    let sum = 0;
    instances.forEach((i, at) => {
      sum += weightOf(i);
      this.cumulative[at] = sum;
    });
    this.uniform = instances.every((i) => weightOf(i) === 1);
  }
  pick(): ServiceInstance | undefined {
    const n = this.instances.length;
    if (n === 0) return undefined;
    if (this.uniform) return this.instances[Math.floor(this.random() * n)];
    const target = this.random() * this.cumulative[n - 1]!;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cumulative[mid]! > target) hi = mid;
      else lo = mid + 1;
    }
    return this.instances[lo];
  }
}

/**
 * Smooth weighted round robin (as in nginx): over any window of total-weight picks each
 * instance is picked exactly weight times, and picks of a heavy instance are spread out.
 */
class SmoothWeighted implements Balancer {
  readonly strategy = 'weighted-round-robin' as const;
  private instances: readonly ServiceInstance[] = [];
  private weights = new Int32Array(0);
  private current = new Float64Array(0);
  private total = 0;
  update(instances: readonly ServiceInstance[]): void {
    const previous = new Map(this.instances.map((i, at) => [i.id, this.current[at]!]));
    this.instances = instances;
    this.weights = Int32Array.from(instances, weightOf);
    this.current = Float64Array.from(instances, (i) => previous.get(i.id) ?? 0);
    this.total = this.weights.reduce((a, b) => a + b, 0);
  }
  pick(): ServiceInstance | undefined {
    const n = this.instances.length;
    if (n === 0) return undefined;
    let best = 0;
    for (let i = 0; i < n; i++) {
      this.current[i]! += this.weights[i]!;
      if (this.current[i]! > this.current[best]!) best = i;
    }
    this.current[best]! -= this.total;
    return this.instances[best];
  }
}

/** 32-bit FNV-1a followed by murmur3's finalizer, for an even spread of similar strings. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Consistent hashing on a ring with `replicas * weight` points per instance, placed by
 * hashing the instance id: adding or removing one of N instances moves about 1/N of the keys,
 * and only keys of that instance. Calls without a key go round robin.
 */
class ConsistentHash implements Balancer {
  readonly strategy = 'consistent-hash' as const;
  private points = new Uint32Array(0);
  private owners: ServiceInstance[] = [];
  private instances: readonly ServiceInstance[] = [];
  private next = 0;
  constructor(private readonly replicas: number) {}
  update(instances: readonly ServiceInstance[]): void {
    this.instances = instances;
    const ring: [number, ServiceInstance][] = [];
    for (const instance of instances) {
      const count = this.replicas * weightOf(instance);
      for (let r = 0; r < count; r++) ring.push([hash32(`${instance.id}#${r}`), instance]);
    }
    // Ties broken by id so every process builds the same ring from the same list.
    ring.sort((a, b) => a[0] - b[0] || (a[1].id < b[1].id ? -1 : a[1].id > b[1].id ? 1 : 0));
    this.points = Uint32Array.from(ring, (p) => p[0]);
    this.owners = ring.map((p) => p[1]);
  }
  pick(key?: string): ServiceInstance | undefined {
    const n = this.points.length;
    if (n === 0) return undefined;
    if (key === undefined) {
      if (this.next >= this.instances.length) this.next = 0;
      return this.instances[this.next++];
    }
    const h = hash32(key);
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.points[mid]! < h) lo = mid + 1;
      else hi = mid;
    }
    return this.owners[lo === n ? 0 : lo];
  }
}

/** Creates a balancer. Feed it each snapshot's `instances` with `update`, then `pick` per call. */
export function createBalancer(
  strategy: BalancerStrategy = 'round-robin',
  options: BalancerOptions = {},
): Balancer {
  switch (strategy) {
    case 'round-robin':
      return new RoundRobin();
    case 'random':
      return new RandomPick(options.random ?? Math.random);
    case 'weighted-round-robin':
      return new SmoothWeighted();
    case 'consistent-hash':
      return new ConsistentHash(options.replicas ?? 100);
    default:
      throw new TypeError(`unknown balancer strategy '${String(strategy)}'`);
  }
}

/** A balancer kept up to date by a watch on one service. */
export interface Picker extends Disposable {
  /** One instance of the latest list, or `undefined` when the service has none. */
  pick(key?: string): ServiceInstance | undefined;
  /** The latest snapshot (undefined until the first sync). */
  readonly snapshot: Snapshot | undefined;
  /** Resolves after the first sync. */
  ready(): Promise<void>;
  /** Stops the watch. */
  close(): void;
}

/** Watches `service` and balances over its latest instances (stale lists included: an outage never empties them). */
export function createPicker(
  discovery: ServiceDiscovery,
  service: string,
  options: BalancerOptions & { strategy?: BalancerStrategy } = {},
): Picker {
  const balancer = createBalancer(options.strategy ?? 'round-robin', options);
  const watch = discovery.watch(service);
  let snapshot: Snapshot | undefined;
  let markReady: () => void = () => {};
  const readyPromise = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  void (async () => {
    for await (const event of watch) {
      snapshot = event.snapshot;
      balancer.update(event.snapshot.instances);
      markReady();
    }
  })();
  return {
    pick: (key) => balancer.pick(key),
    get snapshot() {
      return snapshot;
    },
    ready: () => readyPromise,
    close: () => watch.close(),
    [Symbol.dispose]: () => watch.close(),
  };
}
