import {
  type AssembledBackend,
  ClosedError,
  createBackend,
  type DiscoveryDriver,
  type DiscoveryOptions,
  type ManagedKeyValueSource,
  type MirrorFeed,
  normalizeKey,
  type RegistrationControl,
  type ServiceInstance,
  validateValue,
} from '@rollcall/core';
import { MemoryStore, type StoreClient } from './store.js';

/** Options of {@link createMemoryBackend}. */
export interface MemoryBackendOptions extends DiscoveryOptions {
  /** The store to share with other clients. Default: a fresh store of its own. */
  store?: MemoryStore;
}

let clients = 0;

/**
 * One client of a {@link MemoryStore}: the discovery and key/value drivers of the memory
 * backend. It owns no watch logic of its own: feeds go to core's mirrors.
 */
class MemoryClient implements StoreClient, DiscoveryDriver {
  readonly backend = 'memory';
  readonly label = `memory-${++clients}`;
  alive = true;
  lastContact: number;
  closed = false;
  private readonly registrations = new Set<RegistrationControl>();
  private readonly serviceFeeds = new Map<MirrorFeed<ServiceInstance>, string>();
  private readonly kvFeeds = new Map<MirrorFeed<string>, string>();

  constructor(private readonly store: MemoryStore) {
    this.lastContact = store.clock.now();
  }

  // ---- StoreClient ----

  onOutage(error: Error): void {
    for (const feed of this.serviceFeeds.keys()) feed.stale(error);
    for (const feed of this.kvFeeds.keys()) feed.stale(error);
  }

  onRestore(): void {
    // What expired during the outage is re-registered: lost, then restored, as on a real backend.
    for (const control of this.registrations) {
      if (!this.store.hasInstance(this, control.instance)) {
        control.lost(new Error('instance expired while the store was unreachable'));
        this.store.putInstance(this, control.instance, control.ttlSeconds * 1000);
        control.restored();
      }
    }
    for (const [feed, service] of this.serviceFeeds) feed.replace(this.store.listInstances(service));
    for (const [feed, prefix] of this.kvFeeds) feed.replace(this.store.kvGetAll(this, prefix));
  }

  // ---- DiscoveryDriver ----

  async register(control: RegistrationControl): Promise<void> {
    this.assertOpen();
    this.store.putInstance(this, control.instance, control.ttlSeconds * 1000);
    this.registrations.add(control);
  }

  async deregister(control: RegistrationControl): Promise<void> {
    this.registrations.delete(control);
    if (this.alive && !this.store.isDown) this.store.deleteInstance(this, control.instance);
  }

  watch(service: string, feed: MirrorFeed<ServiceInstance>): () => void {
    this.serviceFeeds.set(feed, service);
    const stop = this.store.watchService(this, service, feed);
    return () => {
      this.serviceFeeds.delete(feed);
      stop();
    };
  }

  async listServices(): Promise<string[]> {
    this.store.check(this);
    return this.store.serviceNames();
  }

  async ping(): Promise<void> {
    this.store.check(this);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.store.detach(this);
  }

  // ---- KvDriver ----

  async get(key: string): Promise<string | undefined> {
    return this.store.kvGet(this, key);
  }

  async getAll(prefix: string): Promise<Map<string, string>> {
    return this.store.kvGetAll(this, prefix);
  }

  async put(key: string, value: string): Promise<void> {
    this.store.kvWrite(this, [[key, value]], []);
  }

  async delete(key: string): Promise<void> {
    this.store.kvWrite(this, [], [key]);
  }

  watchKv(prefix: string, feed: MirrorFeed<string>): () => void {
    this.kvFeeds.set(feed, prefix);
    const stop = this.store.watchKv(this, prefix, feed);
    return () => {
      this.kvFeeds.delete(feed);
      stop();
    };
  }

  private assertOpen(): void {
    if (this.closed) throw new ClosedError('memory backend');
  }
}

/** The in-process backend. `kv.batch` applies several writes as one transaction (one watch event). */
export interface MemoryBackend extends AssembledBackend {
  readonly kv: ManagedKeyValueSource & {
    /** Puts and deletes atomically: each watcher sees one `change`. */
    batch(put: Record<string, string>, deleted?: string[]): Promise<void>;
  };
  /** The store this backend is a client of. */
  readonly store: MemoryStore;
}

/**
 * Creates an in-process backend: for unit tests and demos, not a stand-in for etcd or Consul in
 * their own tests. Backends over one `store` behave as separate processes sharing a registry.
 */
export function createMemoryBackend(options: MemoryBackendOptions = {}): MemoryBackend {
  const { store = new MemoryStore(), ...discoveryOptions } = options;
  const client = new MemoryClient(store);
  const backend = createBackend(
    {
      name: 'memory',
      discovery: client,
      discoveryOptions: { now: () => store.clock.now(), ...discoveryOptions },
      kv: {
        backend: 'memory',
        get: (k) => client.get(k),
        getAll: (p) => client.getAll(p),
        put: (k, v) => client.put(k, v),
        delete: (k) => client.delete(k),
        watch: (p, feed) => client.watchKv(p, feed),
      },
      locks: {
        backend: 'memory',
        minTtlSeconds: 2,
        acquire: (name, ttl, signal, queued) =>
          store.lock(client, `lock/${name}`, ttl * 1000, undefined, signal, queued),
        tryAcquire: (name, ttl) => store.tryLock(client, `lock/${name}`, ttl * 1000),
        campaign: (election, value, ttl, signal) =>
          store.lock(client, `election/${election}`, ttl * 1000, value, signal, () => {}),
        leader: async (election) => store.lockHolderValue(client, `election/${election}`),
      },
    },
    { store },
  );
  Object.assign(backend.kv, {
    async batch(put: Record<string, string>, deleted: string[] = []): Promise<void> {
      const puts = Object.entries(put).map(
        ([k, v]) => [normalizeKey(k), validateValue(v, `value of ${k}`)] as [string, string],
      );
      store.kvWrite(
        client,
        puts,
        deleted.map((k) => normalizeKey(k)),
      );
    },
  });
  store.attach(backend, client);
  return backend as MemoryBackend;
}
