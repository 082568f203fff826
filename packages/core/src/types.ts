/**
 * The public contract shared by every backend. See `shared/design/contract.md`; names here are public API.
 */

/**
 * Options every call that may wait on the network takes. An aborted call rejects at once with an
 * error named `AbortError` (Rollcall's `AbortedError`, code `ERR_ABORTED`); a call given an
 * already-aborted signal sends nothing.
 */
export interface CallOptions {
  signal?: AbortSignal;
}

/** One running instance of a service. */
export interface ServiceInstance {
  /** Unique within its service: 1-128 chars of `[A-Za-z0-9._-]`, not `.` and without `..`. */
  id: string;
  /** 1-63 chars: lowercase letters, digits, `-` and `.`, starting and ending with a letter or digit. */
  service: string;
  /** IPv4, IPv6 or DNS name. */
  host: string;
  /** Integer 1-65535. */
  port: number;
  /** Free-form version string, 1-128 printable chars. */
  version?: string;
  /** At most 64 tags, each 1-256 printable chars. */
  tags?: string[];
  /** At most 61 entries; keys `[A-Za-z0-9_-]{1,128}`, not `__proto__`/`constructor`/`prototype`, not starting with `rollcall_` or `consul-`; string values of at most 512 UTF-8 bytes. */
  metadata?: Record<string, string>;
  /** Positive integer, default 1, at most 10,000. Used by the weighted balancers. */
  weight?: number;
}

/** Options of {@link ServiceDiscovery.register}. */
export interface RegisterOptions {
  /** Seconds the backend keeps the instance after this process stops heartbeating. Default 10; minimum 2. */
  ttlSeconds?: number;
  /** Aborts the registration attempt; a registration already made is then removed again. */
  signal?: AbortSignal;
}

/** State of a {@link Registration}. */
export type RegistrationState = 'active' | 'recovering' | 'closed';

/** A live registration: keeps the instance in the backend until deregistered or the process dies. */
export interface Registration extends AsyncDisposable {
  readonly instance: ServiceInstance;
  readonly state: RegistrationState;
  /** Removes the instance at once. Idempotent. */
  deregister(): Promise<void>;
  /** `lost`: the backend dropped the instance (re-registering now). `restored`: it is back. Returns an unsubscribe function. */
  on(event: 'lost' | 'restored', listener: (error?: Error) => void): () => void;
}

/** An immutable list of a service's instances. */
export interface Snapshot {
  readonly service: string;
  /** Sorted by id. */
  readonly instances: readonly ServiceInstance[];
  /** True when the backend is unreachable and this is the last known good list. */
  readonly stale: boolean;
  /** Milliseconds since the epoch when the backend last confirmed this list. */
  readonly syncedAt: number;
}

/** What a {@link ServiceWatch} yields. */
export type DiscoveryEvent =
  | { type: 'sync'; snapshot: Snapshot }
  | {
      type: 'change';
      snapshot: Snapshot;
      added: ServiceInstance[];
      removed: ServiceInstance[];
      updated: ServiceInstance[];
    }
  | { type: 'stale'; snapshot: Snapshot; error: Error };

/** A subscription to one service. The first event is always `sync`. */
export interface ServiceWatch extends AsyncIterable<DiscoveryEvent>, Disposable {
  /** Ends the iteration. Idempotent. */
  close(): void;
}

/** Registration and lookup of service instances. */
export interface ServiceDiscovery extends AsyncDisposable {
  /** Name of the backend: `memory`, `etcd`, `consul`, `migrating`, ... */
  readonly backend: string;
  /** Resolves once the instance is visible to a fresh `getInstances` on any client. */
  register(instance: ServiceInstance, options?: RegisterOptions): Promise<Registration>;
  /** The current list. The first call for a service starts one shared watch; later calls answer from memory. */
  getInstances(service: string, options?: CallOptions): Promise<Snapshot>;
  /** Follows a service: `sync` first, then `change`/`stale`/`sync` in backend order. */
  watch(service: string, options?: { signal?: AbortSignal }): ServiceWatch;
  /** Names of the services that have at least one instance. */
  listServices(options?: CallOptions): Promise<string[]>;
  /** Deregisters what this client registered and ends its watches. Idempotent. */
  close(): Promise<void>;
}

/** What a key/value watch yields. */
export type KvEvent =
  | { type: 'sync'; entries: Map<string, string> }
  | { type: 'change'; put: Map<string, string>; deleted: string[] }
  | { type: 'stale'; error: Error };

/** Key/value access for live configuration. Keys are `/`-separated; one leading `/` is ignored. */
export interface KeyValueSource {
  get(key: string, options?: CallOptions): Promise<string | undefined>;
  /** Every key that starts with `prefix` (a plain string prefix: end it with `/` to mean a folder). */
  getAll(prefix: string, options?: CallOptions): Promise<Map<string, string>>;
  /** An aborted put may still land (like any write whose answer is lost): check, or put again. */
  put(key: string, value: string, options?: CallOptions): Promise<void>;
  delete(key: string, options?: CallOptions): Promise<void>;
  /** `sync` with everything under the prefix first, then changes, one event per backend transaction. */
  watchPrefix(prefix: string, options?: { signal?: AbortSignal }): AsyncIterable<KvEvent> & Disposable;
}

/** A held lock. */
export interface LockLease extends AsyncDisposable {
  readonly name: string;
  /** Strictly increases with each holder of the same lock name. */
  readonly fencingToken: bigint;
  /**
   * The ttl the lock is held with: the one asked for, or the backend's minimum where it cannot do
   * less (Consul: 10 s). The lock outlives a holder that dies by at most about this long.
   */
  readonly ttlSeconds: number;
  /** Aborts when the lock is lost (lease or session expired). */
  readonly signal: AbortSignal;
  /** Idempotent. */
  release(): Promise<void>;
}

/** Leadership won by {@link LockService.campaign}. */
export interface Leadership extends AsyncDisposable {
  /** Aborts when leadership is lost. */
  readonly signal: AbortSignal;
  /** The ttl leadership is held with (see {@link LockLease.ttlSeconds}). */
  readonly ttlSeconds: number;
  resign(): Promise<void>;
}

/** Distributed locks and leader election. */
export interface LockService {
  acquire(
    name: string,
    options?: { ttlSeconds?: number; timeoutMs?: number; signal?: AbortSignal },
  ): Promise<LockLease>;
  tryAcquire(
    name: string,
    options?: { ttlSeconds?: number; signal?: AbortSignal },
  ): Promise<LockLease | undefined>;
  withLock<T>(
    name: string,
    fn: (lease: LockLease) => Promise<T>,
    options?: { ttlSeconds?: number; timeoutMs?: number; signal?: AbortSignal },
  ): Promise<T>;
  campaign(
    election: string,
    value: string,
    options?: { ttlSeconds?: number; signal?: AbortSignal },
  ): Promise<Leadership>;
  leader(election: string, options?: CallOptions): Promise<string | undefined>;
}

/** One backend: discovery, key/value and locks over one connection. */
export interface Backend extends AsyncDisposable {
  readonly name: string;
  readonly discovery: ServiceDiscovery;
  readonly kv: KeyValueSource;
  readonly locks: LockService;
  /** Closes all three. Idempotent. */
  close(): Promise<void>;
}
