import {
  BackendUnavailableError,
  type HeldLock,
  type MirrorFeed,
  type ServiceInstance,
} from '@rollcall/core';
import { LockTable, waitForLock } from './locks.js';

/** A source of time in ms. Inject one (e.g. {@link ManualClock}) to expire TTLs without sleeping. */
export interface Clock {
  now(): number;
}

/** A clock that only moves when told to: `advance(11_000)` then `store.expire()`. */
export class ManualClock implements Clock {
  /** Starts at `start` ms (default: the current system time). */
  constructor(private time = Date.now()) {}
  now(): number {
    return this.time;
  }
  /** Moves time forward by `ms`. */
  advance(ms: number): void {
    this.time += ms;
  }
}

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /** Time source for TTLs and `syncedAt`. Default the system clock. */
  clock?: Clock;
  /** How often expiry runs by itself, in real ms. Default 250. `0` turns the timer off (call `expire()` yourself). */
  expiryIntervalMs?: number;
}

interface StoredInstance {
  instance: ServiceInstance;
  owner: StoreClient;
  ttlMs: number;
}

/** The store's view of one connected client ("process"). Internal to the memory backend. */
export interface StoreClient {
  readonly label: string;
  /** False once crashed: it no longer heartbeats, like a killed process. */
  alive: boolean;
  /** When the store last heard from it (set when it crashes or loses the store). */
  lastContact: number;
  /** Called after `restore()` so the client can re-register what the store dropped. */
  onRestore(): void;
  /** Called on `outage()`. */
  onOutage(error: Error): void;
}

type ServiceListener = (put: [string, ServiceInstance][], deleted: string[]) => void;
type KvListener = (put: [string, string][], deleted: string[]) => void;

/**
 * The shared state behind memory backends. Backends made over one store see each other as
 * separate processes would. Fault hooks (`crash`, `outage`/`restore`, `expire`) let tests
 * exercise their own reaction to registry failures without a real server.
 */
export class MemoryStore {
  readonly clock: Clock;
  private readonly services = new Map<string, Map<string, StoredInstance>>();
  private readonly kv = new Map<string, string>();
  private readonly serviceListeners = new Map<string, Set<ServiceListener>>();
  private readonly kvListeners = new Set<{ prefix: string; listener: KvListener }>();
  private readonly clients = new Set<StoreClient>();
  /** Maps a backend (or anything registered with `attach`) to its store client, for `crash(backend)`. */
  private readonly handles = new WeakMap<object, StoreClient>();
  private readonly locks = new LockTable();
  private down = false;
  private readonly timer: NodeJS.Timeout | undefined;

  constructor(options: MemoryStoreOptions = {}) {
    this.clock = options.clock ?? { now: Date.now };
    const every = options.expiryIntervalMs ?? 250;
    if (every > 0) {
      this.timer = setInterval(() => this.expire(), every);
      this.timer.unref();
    }
  }

  /** True between `outage()` and `restore()`. */
  get isDown(): boolean {
    return this.down;
  }

  /** The process `backend` dies without closing: it stops heartbeating, so its instances expire after their TTL. */
  crash(backend: object): void {
    const client = this.handles.get(backend);
    if (!client) throw new TypeError('crash(): not a backend of this store');
    if (!client.alive) return;
    client.alive = false;
    client.lastContact = this.clock.now();
  }

  /** Every client loses the store: calls fail with BackendUnavailableError, watches go stale, heartbeats stop. */
  outage(): void {
    if (this.down) return;
    this.down = true;
    const now = this.clock.now();
    const error = new BackendUnavailableError('memory', 'store outage (simulated)');
    for (const client of this.clients) {
      if (client.alive) client.lastContact = now;
      client.onOutage(error);
    }
  }

  /** Every client regains the store. TTLs that ran out during the outage expire first; clients then re-register and resync. */
  restore(): void {
    if (!this.down) return;
    this.down = false;
    // Nobody could heartbeat during the outage: every client was silent since it began.
    this.expireSilent((owner) => owner.lastContact);
    for (const client of this.clients) if (client.alive) client.onRestore();
  }

  /** Applies TTL expiry now, by the clock. Also runs by itself on a timer. */
  expire(): void {
    // A live, attached client heartbeats continuously; only crashed or detached ones go silent.
    this.expireSilent((owner) => (!owner.alive || !this.clients.has(owner) ? owner.lastContact : undefined));
  }

  /** Removes instances whose owner was last heard (`silentSince`) more than their TTL ago. */
  private expireSilent(silentSince: (owner: StoreClient) => number | undefined): void {
    if (this.down) return;
    const now = this.clock.now();
    this.locks.expire(now, silentSince);
    for (const [service, instances] of this.services) {
      const gone: string[] = [];
      for (const [id, stored] of instances) {
        const since = silentSince(stored.owner);
        if (since !== undefined && now >= since + stored.ttlMs) gone.push(id);
      }
      if (gone.length > 0) {
        for (const id of gone) instances.delete(id);
        if (instances.size === 0) this.services.delete(service);
        this.notifyService(service, [], gone);
      }
    }
  }

  /** How many watches (one per client and service) follow `service`. For tests of fan-out. */
  watcherCount(service: string): number {
    return this.serviceListeners.get(service)?.size ?? 0;
  }

  /** Stops the expiry timer. */
  dispose(): void {
    if (this.timer) clearInterval(this.timer);
  }

  // ---- used by memory backends ----

  /** @internal */
  attach(handle: object, client: StoreClient): void {
    this.clients.add(client);
    this.handles.set(handle, client);
  }

  /** @internal */
  detach(client: StoreClient): void {
    this.clients.delete(client);
  }

  /** @internal Throws when this client cannot reach the store. */
  check(client: StoreClient): void {
    if (!client.alive) throw new BackendUnavailableError('memory', `client ${client.label} has crashed`);
    if (this.down) throw new BackendUnavailableError('memory', 'store outage (simulated)');
  }

  /** @internal */
  putInstance(client: StoreClient, instance: ServiceInstance, ttlMs: number): void {
    this.check(client);
    let instances = this.services.get(instance.service);
    if (!instances) {
      instances = new Map();
      this.services.set(instance.service, instances);
    }
    instances.set(instance.id, { instance, owner: client, ttlMs });
    this.notifyService(instance.service, [[instance.id, instance]], []);
  }

  /** @internal */
  hasInstance(client: StoreClient, instance: ServiceInstance): boolean {
    return this.services.get(instance.service)?.get(instance.id)?.owner === client;
  }

  /** @internal Removes the instance if this client owns it. */
  deleteInstance(client: StoreClient, instance: ServiceInstance): void {
    this.check(client);
    const instances = this.services.get(instance.service);
    if (instances?.get(instance.id)?.owner !== client) return;
    instances.delete(instance.id);
    if (instances.size === 0) this.services.delete(instance.service);
    this.notifyService(instance.service, [], [instance.id]);
  }

  /** @internal */
  listInstances(service: string): [string, ServiceInstance][] {
    return [...(this.services.get(service)?.entries() ?? [])].map(([id, s]) => [id, s.instance]);
  }

  /** @internal */
  serviceNames(): string[] {
    return [...this.services.keys()];
  }

  /** @internal Feeds `feed` with `service`'s list now and on every change, until the returned function is called. */
  watchService(client: StoreClient, service: string, feed: MirrorFeed<ServiceInstance>): () => void {
    const listener: ServiceListener = (put, deleted) => feed.apply(put, deleted);
    let listeners = this.serviceListeners.get(service);
    if (!listeners) {
      listeners = new Set();
      this.serviceListeners.set(service, listeners);
    }
    listeners.add(listener);
    try {
      this.check(client);
      feed.replace(this.listInstances(service));
    } catch (error) {
      feed.stale(error as Error);
    }
    return () => listeners.delete(listener);
  }

  /** @internal Waits for `name` in FIFO order; withdraws when `signal` aborts. */
  async lock(
    client: StoreClient,
    name: string,
    ttlMs: number,
    value: string | undefined,
    signal: AbortSignal,
    queued: () => void,
  ): Promise<HeldLock> {
    this.check(client);
    return waitForLock(this.locks, name, client, ttlMs, value, signal, queued);
  }

  /** @internal Takes `name` only if nobody holds or waits for it. */
  async tryLock(client: StoreClient, name: string, ttlMs: number): Promise<HeldLock | undefined> {
    this.check(client);
    if (!this.locks.isFree(name)) return undefined;
    return waitForLock(this.locks, name, client, ttlMs, undefined, new AbortController().signal, () => {});
  }

  /** @internal */
  lockHolderValue(client: StoreClient, name: string): string | undefined {
    this.check(client);
    return this.locks.holderValue(name);
  }

  /** @internal */
  kvGet(client: StoreClient, key: string): string | undefined {
    this.check(client);
    return this.kv.get(key);
  }

  /** @internal */
  kvGetAll(client: StoreClient, prefix: string): Map<string, string> {
    this.check(client);
    return new Map([...this.kv].filter(([k]) => k.startsWith(prefix)));
  }

  /** @internal Applies puts and deletes as one transaction: each watcher sees one event. */
  kvWrite(client: StoreClient, put: [string, string][], deleted: string[]): void {
    this.check(client);
    const actuallyDeleted = deleted.filter((k) => this.kv.delete(k));
    for (const [k, v] of put) this.kv.set(k, v);
    for (const { prefix, listener } of this.kvListeners) {
      const p = put.filter(([k]) => k.startsWith(prefix));
      const d = actuallyDeleted.filter((k) => k.startsWith(prefix));
      if (p.length + d.length > 0) listener(p, d);
    }
  }

  /** @internal */
  watchKv(client: StoreClient, prefix: string, feed: MirrorFeed<string>): () => void {
    const entry = {
      prefix,
      listener: (put: [string, string][], deleted: string[]) => feed.apply(put, deleted),
    };
    this.kvListeners.add(entry);
    try {
      feed.replace(this.kvGetAll(client, prefix));
    } catch (error) {
      feed.stale(error as Error);
    }
    return () => this.kvListeners.delete(entry);
  }

  private notifyService(service: string, put: [string, ServiceInstance][], deleted: string[]): void {
    for (const listener of this.serviceListeners.get(service) ?? []) listener(put, deleted);
  }
}
