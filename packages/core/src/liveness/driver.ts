/**
 * The primitives a backend gives the liveness engine: everything it needs to know about the
 * server-side things that live only as long as this client (etcd leases, Consul sessions and TTL
 * checks, ZooKeeper sessions, Nacos heartbeats, the memory store's sessions). The engine owns the
 * rest: when to renew, when a session counts as lost, re-granting and re-putting with no retry
 * limit, undoing writes that landed on a dropped session, deleting a lost lock's key, periodic
 * reconciliation, and keeping the process alive while anything is held.
 */

/** How a backend ties keys to this client's life. */
export type SessionScope =
  /** One session holds many keys (etcd lease, Consul lock session, ZooKeeper session). */
  | 'client'
  /**
   * Each key is its own session (a Consul service's TTL check, a Nacos instance heartbeat): the
   * engine grants one session per key, and a successful `put` also counts as a renewal.
   */
  | 'key';

/** One key to write on a session. */
export interface SessionWrite<V> {
  readonly key: string;
  readonly value: V;
}

/**
 * What `put` did with one write: `written`, or `conflict` when a live owner that is not one of
 * ours holds the key (another process registered the same id), in which case nothing was written.
 */
export type PutOutcome = 'written' | 'conflict';

/**
 * Who holds a key now, as far as the engine cares: `current` (the given session), `absent` (no key,
 * or a key no live owner holds: expired, written without a session, or left on one of our own older
 * sessions), or `foreign` (another live owner).
 */
export type Ownership = 'current' | 'absent' | 'foreign';

/** A key and the session it should be held by, for {@link SessionDriver.inspect}. */
export interface ClaimRef<S> {
  readonly session: S;
  readonly key: string;
}

/**
 * The liveness primitives of one backend. Every method may reject when the server cannot be
 * reached (the engine retries); none needs its own retry loop, timer or state machine.
 *
 * `S` is the driver's session (an etcd lease id, a Consul session id, a check), `V` the value a
 * registration writes (a JSON string, a Consul service definition).
 */
export interface SessionDriver<S, V = string> {
  /** Backend name, for logs and errors. */
  readonly backend: string;
  /** See {@link SessionScope}. */
  readonly scope: SessionScope;
  /**
   * The owner id that {@link put} and {@link inspect} compare keys against: the lease id, the
   * session id, or (for `key` scope) this client's id. Unique per session for `client` scope.
   */
  ownerOf(session: S): string;
  /**
   * Creates a session that lives `ttlSeconds` past its last renewal (for `key` scope the session
   * of the one key `key`, which `put` then creates on the server). Rejects if it cannot now.
   */
  grant(ttlSeconds: number, signal: AbortSignal, key?: string): Promise<S>;
  /**
   * One renewal (keepalive, heartbeat): resolves `true` once the server has renewed it (the
   * engine counts the renewal from when this call started), `false` when the server says the
   * session no longer exists; rejects when the server cannot tell now.
   */
  renew(session: S, signal: AbortSignal): Promise<boolean>;
  /** Ends the session on the server, removing every key it holds. Resolves when it is already gone. */
  revoke(session: S): Promise<void>;
  /**
   * Writes keys held by `session`. A key may be overwritten when it is absent or held by one of
   * `ours` (owner ids of this client's sessions, current and older) or by no live owner; a key held
   * by a live owner not in `ours` is left alone and reported `conflict`. One outcome per write, in
   * order. Resolves once a fresh read on any client sees the writes.
   */
  put(session: S, writes: readonly SessionWrite<V>[], ours: ReadonlySet<string>): Promise<PutOutcome[]>;
  /** Deletes those of `keys` that `session` still holds; never a key another owner holds. */
  remove(session: S, keys: readonly string[]): Promise<void>;
  /** Who holds each key now (see {@link Ownership}); one answer per ref, in order. */
  inspect(refs: readonly ClaimRef<S>[], ours: ReadonlySet<string>): Promise<Ownership[]>;
}
