import {
  ClosedError,
  ConfigError,
  type ConfigIssue,
  normalizeKey,
  type ServiceInstance,
  type SharedBackendOptions,
  validateValue,
} from '@rollcall/core';
import {
  type AssembledBackend,
  checkSharedOptions,
  createBackend,
  type DiscoveryDriver,
  LivenessEngine,
  type LivenessOptions,
  type ManagedKeyValueSource,
  type MirrorFeed,
  type SessionWrite,
  SHARED_OPTION_NAMES,
  type SharedOptions,
} from '@rollcall/core/driver';
import { MemoryLockDriver } from './lock-driver.js';
import { MemorySessionDriver } from './sessions.js';
import { instanceKey, MemoryStore, type StoreClient } from './store.js';

/** Options of {@link createMemoryBackend}. */
export interface MemoryBackendOptions extends SharedBackendOptions {
  /** The store to share with other clients. Default: a fresh store of its own, disposed by `close()`. */
  store?: MemoryStore;
}

let clients = 0;

/** A feed the client keeps current: fed by the store's notifications once it has read the full list. */
interface Feed<V> {
  readonly feed: MirrorFeed<V>;
  /** False until a full read succeeded (and again after an outage): notifications wait for it. */
  synced: boolean;
  readonly read: () => Iterable<[string, V]>;
  stop: () => void;
}

/**
 * One client of a {@link MemoryStore} ("one process"): the discovery and key/value drivers of the
 * memory backend. Registrations and locks live on sessions kept by core's liveness engine; watch
 * logic is core's mirrors.
 */
class MemoryClient implements StoreClient, DiscoveryDriver {
  readonly backend = 'memory';
  readonly label = `memory-${++clients}`;
  alive = true;
  lastContact: number;
  readonly liveness: LivenessEngine<string, ServiceInstance>;
  private closed = false;
  private readonly serviceFeeds = new Set<Feed<ServiceInstance>>();
  private readonly kvFeeds = new Set<Feed<string>>();

  constructor(
    private readonly store: MemoryStore,
    liveness: LivenessOptions,
  ) {
    this.lastContact = store.clock.now();
    this.liveness = new LivenessEngine(new MemorySessionDriver(store, this), liveness);
  }

  // ---- StoreClient ----

  onCrash(): void {
    // A killed process: nothing of it runs any more.
    this.liveness.abandon();
    for (const f of [...this.serviceFeeds, ...this.kvFeeds]) f.stop();
    this.serviceFeeds.clear();
    this.kvFeeds.clear();
  }

  onOutage(error: Error): void {
    for (const f of [...this.serviceFeeds, ...this.kvFeeds]) {
      f.synced = false;
      f.feed.stale(error);
    }
  }

  onRestore(): void {
    for (const f of this.serviceFeeds) this.sync(f);
    for (const f of this.kvFeeds) this.sync(f);
    // What expired during the outage is re-registered by the engine: lost, then restored.
    this.liveness.nudge();
  }

  // ---- DiscoveryDriver ----

  registration(instance: ServiceInstance): SessionWrite<ServiceInstance> {
    return { key: instanceKey(instance.service, instance.id), value: instance };
  }

  watch(service: string, feed: MirrorFeed<ServiceInstance>): () => void {
    return this.follow(
      this.serviceFeeds,
      feed,
      () => this.store.listInstances(service),
      (listener) => this.store.watchService(service, listener),
    );
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
    await this.liveness.close();
    for (const f of [...this.serviceFeeds, ...this.kvFeeds]) f.stop();
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
    this.assertOpen();
    this.store.kvWrite(this, [[key, value]], []);
  }

  async delete(key: string): Promise<void> {
    this.assertOpen();
    this.store.kvWrite(this, [], [key]);
  }

  watchKv(prefix: string, feed: MirrorFeed<string>): () => void {
    return this.follow(
      this.kvFeeds,
      feed,
      () => this.store.kvGetAll(this, prefix),
      (listener) => this.store.watchKv(prefix, listener),
    );
  }

  /**
   * Feeds `feed` with a full read, then with the store's notifications; a read that fails (outage,
   * crash) makes it stale until `onRestore` reads again. Notifications before a successful read are
   * not applied (the mirror has nothing to apply them to).
   */
  private follow<V>(
    feeds: Set<Feed<V>>,
    feed: MirrorFeed<V>,
    read: () => Iterable<[string, V]>,
    listen: (listener: (put: [string, V][], deleted: string[]) => void) => () => void,
  ): () => void {
    const entry: Feed<V> = { feed, synced: false, read, stop: () => {} };
    const unlisten = listen((put, deleted) => {
      if (entry.synced) feed.apply(put, deleted);
    });
    entry.stop = () => {
      unlisten();
      feeds.delete(entry);
    };
    feeds.add(entry);
    this.sync(entry);
    return entry.stop;
  }

  private sync<V>(entry: Feed<V>): void {
    try {
      this.store.check(this);
      entry.feed.replace(entry.read());
      entry.synced = true;
    } catch (error) {
      entry.synced = false;
      entry.feed.stale(error as Error);
    }
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

/** Checks the options (the ones every backend shares, and `store`): a ConfigError lists every bad one. */
function resolveMemoryOptions(options: MemoryBackendOptions): SharedOptions {
  const issues: ConfigIssue[] = [];
  const bad = (path: string, message: string) => void issues.push({ path, message });
  if (typeof options !== 'object' || options === null)
    throw new ConfigError([{ path: '', message: 'must be an object' }]);
  for (const name of Object.keys(options))
    if (name !== 'store' && !SHARED_OPTION_NAMES.includes(name)) bad(name, 'unknown option');
  if (options.store !== undefined && !(options.store instanceof MemoryStore))
    bad('store', 'must be a MemoryStore');
  const resolved = checkSharedOptions(options as Record<string, unknown>, bad, 'memory');
  if (issues.length > 0) throw new ConfigError(issues);
  return resolved;
}

/**
 * Creates an in-process backend: for unit tests and demos, not a stand-in for etcd or Consul in
 * their own tests. Backends over one `store` behave as separate processes sharing a registry.
 */
export function createMemoryBackend(options: MemoryBackendOptions = {}): MemoryBackend {
  const resolved = resolveMemoryOptions(options);
  const shared = options.store;
  const store = shared ?? new MemoryStore();
  const client = new MemoryClient(store, resolved.liveness);
  const backend = createBackend(
    {
      name: 'memory',
      discovery: client,
      discoveryOptions: { now: () => store.clock.now(), ...resolved.discovery },
      kv: {
        backend: 'memory',
        get: (k) => client.get(k),
        getAll: (p) => client.getAll(p),
        put: (k, v) => client.put(k, v),
        delete: (k) => client.delete(k),
        watch: (p, feed) => client.watchKv(p, feed),
      },
      locks: new MemoryLockDriver(store, client, client.liveness),
      // A store made for this backend alone goes with it (its expiry timer included).
      release: () => {
        if (!shared) store.dispose();
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
