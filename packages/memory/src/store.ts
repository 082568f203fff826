import { BackendUnavailableError, type ServiceInstance, SessionGoneError } from '@rollcall/core';
import { type ClaimRef, type Ownership, type PutOutcome, type SessionWrite } from '@rollcall/core/driver';
import { LockTable } from './locks.js';

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

/** The store's view of one connected client ("process"). Internal to the memory backend. */
export interface StoreClient {
  readonly label: string;
  /** False once crashed: it no longer heartbeats, like a killed process. */
  alive: boolean;
  /** When the store last heard from it (set when it crashes or loses the store). */
  lastContact: number;
  /** Called on `crash()`: the client stops everything it runs, like a killed process. */
  onCrash(): void;
  /** Called on `outage()`. */
  onOutage(error: Error): void;
  /** Called after `restore()`: the client re-reads what it watches and checks its sessions. */
  onRestore(): void;
}

/** A session: keys tied to one client's life, expiring a ttl after the client falls silent. */
interface StoreSession {
  readonly id: string;
  readonly owner: StoreClient;
  readonly ttlMs: number;
}

interface StoredInstance {
  readonly instance: ServiceInstance;
  readonly session: string;
}

type ServiceListener = (put: [string, ServiceInstance][], deleted: string[]) => void;
type KvListener = (put: [string, string][], deleted: string[]) => void;

/** The key of an instance in a memory session (what the liveness engine calls it). */
export function instanceKey(service: string, id: string): string {
  return `instances/${service}/${id}`;
}

function parseInstanceKey(key: string): [string, string] | undefined {
  const match = /^instances\/([^/]+)\/([^/]+)$/.exec(key);
  return match ? [match[1]!, match[2]!] : undefined;
}

let sessionSerial = 0;

/**
 * The shared state behind memory backends. Backends made over one store see each other as
 * separate processes would. Fault hooks (`crash`, `outage`/`restore`, `expire`) let tests
 * exercise their own reaction to registry failures without a real server.
 *
 * Like a real registry it keeps sessions: instances and locks are held by a client's session, and
 * a session expires (taking its keys with it) a ttl after its client fell silent: crashed, or cut
 * off by an outage. A live client is taken to heartbeat continuously, so a manual clock only
 * expires the sessions of silent clients.
 */
export class MemoryStore {
  readonly clock: Clock;
  private readonly sessions = new Map<string, StoreSession>();
  private readonly services = new Map<string, Map<string, StoredInstance>>();
  private readonly kv = new Map<string, string>();
  private readonly serviceListeners = new Map<string, Set<ServiceListener>>();
  private readonly kvListeners = new Set<{ prefix: string; listener: KvListener }>();
  private readonly clients = new Set<StoreClient>();
  /** Maps a backend (or anything registered with `attach`) to its store client, for `crash(backend)`. */
  private readonly handles = new WeakMap<object, StoreClient>();
  /** @internal */
  readonly locks = new LockTable();
  private down = false;
  private timer: NodeJS.Timeout | undefined;

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

  /** The process `backend` dies without closing: it stops heartbeating, so its sessions expire after their TTL. */
  crash(backend: object): void {
    const client = this.handles.get(backend);
    if (!client) throw new TypeError('crash(): not a backend of this store');
    if (!client.alive) return;
    client.alive = false;
    client.lastContact = this.clock.now();
    client.onCrash();
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

  /** Every client regains the store. TTLs that ran out during the outage expire first; clients then resync and re-register. */
  restore(): void {
    if (!this.down) return;
    this.down = false;
    // Nobody could heartbeat during the outage: every client was silent since it began.
    this.expireSilent((owner) => owner.lastContact);
    for (const client of [...this.clients]) if (client.alive) client.onRestore();
  }

  /** Applies TTL expiry now, by the clock. Also runs by itself on a timer. */
  expire(): void {
    // A live, attached client heartbeats continuously; only crashed or detached ones go silent.
    this.expireSilent((owner) => (!owner.alive || !this.clients.has(owner) ? owner.lastContact : undefined));
  }

  /** Ends sessions whose owner was last heard (`silentSince`) more than their TTL ago, with their keys. */
  private expireSilent(silentSince: (owner: StoreClient) => number | undefined): void {
    if (this.down) return;
    const now = this.clock.now();
    for (const session of [...this.sessions.values()]) {
      const since = silentSince(session.owner);
      if (since !== undefined && now >= since + session.ttlMs) this.endSession(session.id);
    }
  }

  /** How many watches (one per client and service) follow `service`. For tests of fan-out. */
  watcherCount(service: string): number {
    return this.serviceListeners.get(service)?.size ?? 0;
  }

  /** Services with at least one watch now (diagnostics, tests: no listener set outlives its watches). */
  get watchedServiceCount(): number {
    return this.serviceListeners.size;
  }

  /** Sessions alive in the store now (diagnostics, tests). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Stops the expiry timer. Idempotent. */
  dispose(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
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

  // ---- sessions ----

  /** @internal */
  grantSession(client: StoreClient, ttlMs: number): string {
    this.check(client);
    const id = `s${++sessionSerial}`;
    this.sessions.set(id, { id, owner: client, ttlMs });
    return id;
  }

  /** @internal True when the session still exists. */
  renewSession(client: StoreClient, id: string): boolean {
    this.check(client);
    return this.sessions.get(id)?.owner === client;
  }

  /** @internal Ends a session of `client`'s and everything it holds. */
  revokeSession(client: StoreClient, id: string): void {
    this.check(client);
    if (this.sessions.get(id)?.owner === client) this.endSession(id);
  }

  private endSession(id: string): void {
    if (!this.sessions.delete(id)) return;
    for (const [service, instances] of [...this.services]) {
      const gone = [...instances].filter(([, s]) => s.session === id).map(([key]) => key);
      if (gone.length === 0) continue;
      for (const key of gone) instances.delete(key);
      if (instances.size === 0) this.services.delete(service);
      this.notifyService(service, [], gone);
    }
    this.locks.endSession(id);
  }

  /** Whether `owner` names a live session of someone other than one of `ours`. */
  private isForeignLive(owner: string, ours: ReadonlySet<string>): boolean {
    return !ours.has(owner) && this.sessions.has(owner);
  }

  private requireSession(client: StoreClient, id: string): void {
    if (this.sessions.get(id)?.owner !== client)
      throw new SessionGoneError('memory', `session ${id} expired or was revoked`);
  }

  /** @internal Writes instances on a session; a key a live foreign session holds is a conflict. */
  putInstances(
    client: StoreClient,
    session: string,
    writes: readonly SessionWrite<ServiceInstance>[],
    ours: ReadonlySet<string>,
  ): PutOutcome[] {
    this.check(client);
    this.requireSession(client, session);
    return writes.map(({ value: instance }) => {
      let instances = this.services.get(instance.service);
      const existing = instances?.get(instance.id);
      // Another live session holds the id at another address: a conflict. At the same address it can
      // only be this process's previous incarnation (one address, one process): taken over.
      if (
        existing &&
        existing.session !== session &&
        this.isForeignLive(existing.session, ours) &&
        (existing.instance.host !== instance.host || existing.instance.port !== instance.port)
      )
        return 'conflict';
      if (!instances) {
        instances = new Map();
        this.services.set(instance.service, instances);
      }
      instances.set(instance.id, { instance, session });
      this.notifyService(instance.service, [[instance.id, instance]], []);
      return 'written';
    });
  }

  /** @internal Deletes keys (instances, locks) the session still holds. */
  removeKeys(client: StoreClient, session: string, keys: readonly string[]): void {
    this.check(client);
    for (const key of keys) {
      const parsed = parseInstanceKey(key);
      if (parsed) {
        const [service, id] = parsed;
        const instances = this.services.get(service);
        if (instances?.get(id)?.session !== session) continue;
        instances.delete(id);
        if (instances.size === 0) this.services.delete(service);
        this.notifyService(service, [], [id]);
      } else this.locks.releaseKey(key, session);
    }
  }

  /** @internal Who holds each key (see the engine's `Ownership`). */
  inspect(client: StoreClient, refs: readonly ClaimRef<string>[], ours: ReadonlySet<string>): Ownership[] {
    this.check(client);
    return refs.map(({ session, key }) => {
      const parsed = parseInstanceKey(key);
      const holder = parsed
        ? this.services.get(parsed[0])?.get(parsed[1])?.session
        : this.locks.holderOfKey(key);
      if (holder === undefined) return 'absent';
      if (holder === session) return 'current';
      return this.isForeignLive(holder, ours) ? 'foreign' : 'absent';
    });
  }

  // ---- instances ----

  /** @internal */
  listInstances(service: string): [string, ServiceInstance][] {
    return [...(this.services.get(service)?.entries() ?? [])].map(([id, s]) => [id, s.instance]);
  }

  /** @internal */
  serviceNames(): string[] {
    return [...this.services.keys()];
  }

  /** @internal Calls `listener` with every change of `service` until the returned function is called. */
  watchService(service: string, listener: ServiceListener): () => void {
    let listeners = this.serviceListeners.get(service);
    if (!listeners) {
      listeners = new Set();
      this.serviceListeners.set(service, listeners);
    }
    listeners.add(listener);
    return () => {
      const set = this.serviceListeners.get(service);
      if (!set?.delete(listener)) return;
      if (set.size === 0) this.serviceListeners.delete(service);
    };
  }

  // ---- key/value ----

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
    for (const { prefix, listener } of [...this.kvListeners]) {
      const p = put.filter(([k]) => k.startsWith(prefix));
      const d = actuallyDeleted.filter((k) => k.startsWith(prefix));
      if (p.length + d.length > 0) listener(p, d);
    }
  }

  /** @internal Calls `listener` with every change under `prefix` until the returned function is called. */
  watchKv(prefix: string, listener: KvListener): () => void {
    const entry = { prefix, listener };
    this.kvListeners.add(entry);
    return () => this.kvListeners.delete(entry);
  }

  private notifyService(service: string, put: [string, ServiceInstance][], deleted: string[]): void {
    for (const listener of [...(this.serviceListeners.get(service) ?? [])]) listener(put, deleted);
  }
}
