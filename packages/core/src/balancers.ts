import {
  AbortedError,
  BackendUnavailableError,
  ClosedError,
  RollcallError,
  ValidationError,
} from './errors.js';
import { byId } from './instances.js';
import { describeValue } from './options.js';
import type { ServiceDiscovery, ServiceInstance, Snapshot } from './types.js';
import { validateOptionsObject, validateSignal, validateTimeoutMs } from './validation.js';

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
  /** Points on the hash ring per unit of weight, for `consistent-hash`. Integer 1-1000. Default 100. */
  replicas?: number;
  /**
   * Most points a `consistent-hash` ring holds, all instances together: when `replicas x total
   * weight` exceeds it, every instance's points are scaled down alike (each keeps at least one),
   * so one heavy instance cannot make the ring (and every rebuild) huge. Integer 1-1,048,576.
   * Default {@link DEFAULT_MAX_RING_POINTS}.
   */
  maxRingPoints?: number;
}

/** Default bound on the points of a consistent-hash ring: a ring this size builds in a few ms. */
export const DEFAULT_MAX_RING_POINTS = 65_536;
/** Largest `replicas`. */
export const MAX_REPLICAS = 1000;
/** Largest `maxRingPoints`. */
export const MAX_RING_POINTS = 1_048_576;

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

/** FNV-1a over the UTF-16 code units of `text`, from state `h`. */
function fnv(h: number, text: string): number {
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h;
}

/** murmur3's finalizer: spreads similar FNV states apart. */
function finalize(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const FNV_OFFSET = 0x811c9dc5;

/** 32-bit FNV-1a followed by murmur3's finalizer, for an even spread of similar strings. */
export function hash32(text: string): number {
  return finalize(fnv(FNV_OFFSET, text));
}

/** `hash32(prefix + String(n))` for a non-negative integer `n`, given `state = fnv(FNV_OFFSET, prefix)`, without building the string. */
function hashWithNumber(state: number, n: number): number {
  let divisor = 1;
  while (divisor * 10 <= n) divisor *= 10;
  let h = state;
  for (; divisor >= 1; divisor /= 10) {
    h ^= 48 + (Math.floor(n / divisor) % 10);
    h = Math.imul(h, 0x01000193);
  }
  return finalize(h);
}

/**
 * Points each instance gets on a consistent-hash ring, in the order of `weights`: `replicas x
 * weight`, all scaled by the same factor when their total exceeds `maxPoints`, and at least one
 * each. The total is at most `maxPoints` plus one per instance whose share rounds below one point.
 */
export function ringPoints(weights: readonly number[], replicas: number, maxPoints: number): number[] {
  let total = 0;
  for (const w of weights) total += replicas * w;
  const scale = total > maxPoints ? maxPoints / total : 1;
  return weights.map((w) => Math.max(1, Math.floor(replicas * w * scale)));
}

/**
 * Sorts `keys` (ring hashes) and carries `values` (owner ranks) along: a stable LSD radix sort in
 * three passes of 11 bits, linear in the number of points (a comparison sort of a large ring
 * costs several times more). Stability keeps equal hashes in rank order. Returns the sorted pair.
 */
function radixSort(keys: Uint32Array, values: Uint32Array): [Uint32Array, Uint32Array] {
  const n = keys.length;
  let fromKeys: Uint32Array = keys;
  let fromValues: Uint32Array = values;
  let toKeys: Uint32Array = new Uint32Array(n);
  let toValues: Uint32Array = new Uint32Array(n);
  const counts = new Uint32Array(2048);
  for (let shift = 0; shift < 32; shift += 11) {
    counts.fill(0);
    for (let i = 0; i < n; i++) counts[(fromKeys[i]! >>> shift) & 2047]! += 1;
    let sum = 0;
    for (let b = 0; b < 2048; b++) {
      const c = counts[b]!;
      counts[b] = sum;
      sum += c;
    }
    for (let i = 0; i < n; i++) {
      const at = counts[(fromKeys[i]! >>> shift) & 2047]!++;
      toKeys[at] = fromKeys[i]!;
      toValues[at] = fromValues[i]!;
    }
    [fromKeys, toKeys] = [toKeys, fromKeys];
    [fromValues, toValues] = [toValues, fromValues];
  }
  return [fromKeys, fromValues];
}

function sortedById(instances: readonly ServiceInstance[]): readonly ServiceInstance[] {
  for (let i = 1; i < instances.length; i++) {
    if (instances[i - 1]!.id > instances[i]!.id) return [...instances].sort(byId);
  }
  return instances;
}

/**
 * Consistent hashing on a ring of {@link ringPoints} points per instance, placed by hashing the
 * instance id: adding or removing one of N instances moves about 1/N of the keys, and only keys
 * of that instance (while the ring is under `maxRingPoints`; above it, the common scale factor
 * moves a little more). The ring is rebuilt only when the ids or weights change, not when the
 * same list comes again (a `stale` event, a confirmed poll). Calls without a key go round robin.
 */
class ConsistentHash implements Balancer {
  readonly strategy = 'consistent-hash' as const;
  private points: Uint32Array = new Uint32Array(0);
  /** Rank (index in `members`) of each point's instance. */
  private owners: Uint32Array = new Uint32Array(0);
  /** The instances sorted by id: what the ring was built from (current objects). */
  private members: readonly ServiceInstance[] = [];
  private instances: readonly ServiceInstance[] = [];
  private next = 0;
  /** Times the ring was built (for tests and benchmarks: it must not grow on repeated lists). */
  rebuilds = 0;
  constructor(
    private readonly replicas: number,
    private readonly maxPoints: number,
  ) {}

  /** Points on the ring now (for tests and benchmarks). */
  get size(): number {
    return this.points.length;
  }

  update(instances: readonly ServiceInstance[]): void {
    this.instances = instances;
    const members = sortedById(instances);
    const previous = this.members;
    this.members = members;
    const same =
      previous.length === members.length &&
      members.every((m, i) => m.id === previous[i]!.id && weightOf(m) === weightOf(previous[i]!));
    if (!same) this.build(members);
  }

  private build(members: readonly ServiceInstance[]): void {
    this.rebuilds += 1;
    const counts = ringPoints(members.map(weightOf), this.replicas, this.maxPoints);
    const total = counts.reduce((a, b) => a + b, 0);
    const hashes = new Uint32Array(total);
    const ranks = new Uint32Array(total);
    let at = 0;
    members.forEach((member, rank) => {
      const state = fnv(FNV_OFFSET, `${member.id}#`);
      for (let r = 0; r < counts[rank]!; r++) {
        hashes[at] = hashWithNumber(state, r);
        ranks[at++] = rank;
      }
    });
    // Equal hashes stay in rank (= id) order, so every process builds the same ring from the same list.
    [this.points, this.owners] = radixSort(hashes, ranks);
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
    return this.members[this.owners[lo === n ? 0 : lo]!];
  }
}

const STRATEGIES: readonly BalancerStrategy[] = [
  'round-robin',
  'random',
  'weighted-round-robin',
  'consistent-hash',
];

function integerOption(o: Record<string, unknown>, name: string, fallback: number, max: number): number {
  const value = o[name];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max)
    throw new ValidationError(
      `options.${name}`,
      `must be an integer from 1 to ${max}, got ${describeValue(value)}`,
    );
  return value;
}

/**
 * Creates a balancer. Feed it each snapshot's `instances` with `update`, then `pick` per call.
 * Bad options throw a {@link ValidationError} naming the field.
 */
export function createBalancer(
  strategy: BalancerStrategy = 'round-robin',
  options?: BalancerOptions,
): Balancer {
  if (!STRATEGIES.includes(strategy))
    throw new ValidationError(
      'strategy',
      `must be one of ${STRATEGIES.join(', ')}, got ${describeValue(strategy)}`,
    );
  const o = validateOptionsObject(options);
  if (o.random !== undefined && typeof o.random !== 'function')
    throw new ValidationError('options.random', 'must be a function returning a number in [0, 1)');
  const replicas = integerOption(o, 'replicas', 100, MAX_REPLICAS);
  const maxPoints = integerOption(o, 'maxRingPoints', DEFAULT_MAX_RING_POINTS, MAX_RING_POINTS);
  switch (strategy) {
    case 'round-robin':
      return new RoundRobin();
    case 'random':
      return new RandomPick((o.random as (() => number) | undefined) ?? Math.random);
    case 'weighted-round-robin':
      return new SmoothWeighted();
    default:
      return new ConsistentHash(replicas, maxPoints);
  }
}

/** Options of {@link Picker.ready}. */
export interface ReadyOptions {
  /** Give up with an {@link AbortedError} when it aborts. */
  signal?: AbortSignal;
  /**
   * Give up with a {@link BackendUnavailableError} after this many ms without a first list.
   * Default {@link DEFAULT_READY_TIMEOUT_MS}; `Infinity` (or anything above 2^31-1) waits for the
   * backend's own verdict only.
   */
  timeoutMs?: number;
}

/** Default `timeoutMs` of {@link Picker.ready}. */
export const DEFAULT_READY_TIMEOUT_MS = 10_000;

/** A balancer kept up to date by a watch on one service. */
export interface Picker extends Disposable {
  /** One instance of the latest list, or `undefined` when the service has none. */
  pick(key?: string): ServiceInstance | undefined;
  /** The latest snapshot (undefined until the first sync). */
  readonly snapshot: Snapshot | undefined;
  /**
   * Resolves after the first list. Rejects with {@link BackendUnavailableError} when the backend
   * reports itself unreachable before it (or after `timeoutMs`), {@link ClosedError} when the
   * picker or its discovery closes first, {@link AbortedError} when `signal` aborts. The picker
   * keeps watching after a rejection: call `ready()` again to wait more.
   */
  ready(options?: ReadyOptions): Promise<void>;
  /** Stops the watch; a pending `ready()` rejects with {@link ClosedError}. Idempotent. */
  close(): void;
}

/** Watches `service` and balances over its latest instances (stale lists included: an outage never empties them). */
export function createPicker(
  discovery: ServiceDiscovery,
  service: string,
  options: BalancerOptions & { strategy?: BalancerStrategy } = {},
): Picker {
  const o = validateOptionsObject(options);
  const balancer = createBalancer((o.strategy as BalancerStrategy | undefined) ?? 'round-robin', o);
  const watch = discovery.watch(service);
  let snapshot: Snapshot | undefined;
  let closed = false;
  const waiters = new Set<{ resolve: () => void; reject: (error: Error) => void }>();
  const settleAll = (error?: Error) => {
    for (const w of [...waiters]) error ? w.reject(error) : w.resolve();
  };
  const close = () => {
    if (closed) return;
    closed = true;
    settleAll(new ClosedError(`picker of service '${service}'`));
    watch.close();
  };
  void (async () => {
    for await (const event of watch) {
      if (closed) break;
      // A `stale` event or a confirmed poll carries the same list: nothing to rebuild.
      if (event.snapshot.instances !== snapshot?.instances) balancer.update(event.snapshot.instances);
      snapshot = event.snapshot;
      settleAll();
    }
    // The watch ended: the picker (or its discovery) was closed.
    close();
  })();

  const ready = (readyOptions?: ReadyOptions): Promise<void> => {
    try {
      return waitReady(readyOptions);
    } catch (error) {
      return Promise.reject(error);
    }
  };
  const waitReady = (readyOptions?: ReadyOptions): Promise<void> => {
    const r = validateOptionsObject(readyOptions);
    const signal = validateSignal(r.signal);
    const timeoutMs = r.timeoutMs === undefined ? DEFAULT_READY_TIMEOUT_MS : validateTimeoutMs(r.timeoutMs);
    if (snapshot) return Promise.resolve();
    if (closed) return Promise.reject(new ClosedError(`picker of service '${service}'`));
    if (signal?.aborted) return Promise.reject(new AbortedError(signal.reason));
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => done(new AbortedError(signal?.reason));
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(
              () =>
                done(
                  new BackendUnavailableError(
                    discovery.backend,
                    `no list of service '${service}' within ${timeoutMs} ms`,
                  ),
                ),
              timeoutMs,
            );
      const waiter = {
        resolve: () => done(),
        reject: (error: Error) => done(error),
      };
      function done(error?: Error): void {
        if (!waiters.delete(waiter)) return;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        error ? reject(error) : resolve();
      }
      waiters.add(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
      // Shares the watch's cache (no second upstream): rejects as soon as the backend has
      // reported itself unreachable before the first list.
      discovery.getInstances(service).then(
        () => {},
        (error: unknown) => {
          if (snapshot) return;
          done(
            error instanceof RollcallError
              ? error
              : new BackendUnavailableError(discovery.backend, `service '${service}': ${String(error)}`, {
                  cause: error,
                }),
          );
        },
      );
    });
  };

  return {
    pick: (key) => balancer.pick(key),
    get snapshot() {
      return snapshot;
    },
    ready,
    close,
    [Symbol.dispose]: close,
  };
}
