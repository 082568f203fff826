import {
  abortable,
  type DiscoveryDriver,
  type Logger,
  type MirrorFeed,
  type RegistrationControl,
  type ServiceInstance,
  UpstreamCounter,
  validateInstance,
} from '@rollcall/core';
import type { EtcdConnection } from './connection.js';
import { Interner } from './intern.js';
import { LeaseKeeper } from './leases.js';
import { type PrefixCodec, PrefixWatch } from './prefix-watch.js';

/**
 * The etcd discovery driver: an instance is the key `<namespace>services/<service>/<id>` holding
 * the instance as JSON, on the client's shared lease; a service is watched on the prefix
 * `<namespace>services/<service>/` (trailing separator: `web` never sees `web-admin`).
 */
export class EtcdDiscoveryDriver implements DiscoveryDriver {
  readonly backend = 'etcd';
  /** One lease keeper per distinct TTL (normally one). */
  readonly keepers = new Map<number, LeaseKeeper>();
  /** Number of live etcd watches, by service. */
  /** etcd watches held now, by service. */
  readonly watches = new UpstreamCounter();
  private readonly liveWatches = new Set<PrefixWatch<ServiceInstance>>();
  private readonly interner = new Interner();
  private readonly servicesRoot: string;

  constructor(private readonly conn: EtcdConnection) {
    this.servicesRoot = `${conn.options.namespace}services/`;
  }

  /** The etcd key of an instance. */
  instanceKey(instance: Pick<ServiceInstance, 'service' | 'id'>): string {
    return `${this.servicePrefix(instance.service)}${instance.id}`;
  }

  /** The etcd prefix of a service's instances, with its trailing separator. */
  servicePrefix(service: string): string {
    return `${this.servicesRoot}${service}/`;
  }

  async register(control: RegistrationControl): Promise<void> {
    this.conn.assertOpen();
    await this.keeper(control.ttlSeconds).register(
      control,
      this.instanceKey(control.instance),
      JSON.stringify(control.instance),
    );
  }

  /** The client's lease keeper for `ttlSeconds`, made on first use; shared by registrations and locks. */
  keeper(ttlSeconds: number): LeaseKeeper {
    let keeper = this.keepers.get(ttlSeconds);
    if (!keeper) {
      keeper = new LeaseKeeper(this.conn, ttlSeconds);
      this.keepers.set(ttlSeconds, keeper);
    }
    return keeper;
  }

  async deregister(control: RegistrationControl): Promise<void> {
    const keeper = this.keepers.get(control.ttlSeconds);
    const key = this.instanceKey(control.instance);
    if (keeper) await keeper.deregister(control, key);
    else if (!this.conn.crashed) {
      await this.conn.call('deregister', (o) => this.conn.client.delete().key(key).options(o).exec());
    }
  }

  watch(service: string, feed: MirrorFeed<ServiceInstance>): () => void {
    const prefix = this.servicePrefix(service);
    const codec = new InstanceCodec(service, prefix, this.interner, this.conn.options.logger);
    const watch = new PrefixWatch(this.conn, prefix, codec, feed, `service '${service}'`);
    this.liveWatches.add(watch);
    watch.start();
    return this.watches.track(service, () => {
      watch.stop();
      this.liveWatches.delete(watch);
    });
  }

  /** Number of etcd watches this client holds for `service` (1 while anything watches or caches it). */
  upstreams(service: string): number {
    return this.watches.count(service);
  }

  async listServices(): Promise<string[]> {
    this.conn.assertOpen();
    const keys = await this.conn.call('list services', (o) =>
      this.conn.client.getAll().prefix(this.servicesRoot).options(o).keys(),
    );
    const names = new Set<string>();
    for (const key of keys) {
      const rest = key.slice(this.servicesRoot.length);
      const slash = rest.indexOf('/');
      if (slash > 0 && slash < rest.length - 1) names.add(rest.slice(0, slash));
    }
    return [...names];
  }

  async ping(signal?: AbortSignal): Promise<void> {
    await abortable(this.conn.ping(signal), signal);
  }

  /** Revokes the leases (their keys go at once), then closes the client: revoking after close would loop on ClientClosedError. */
  async close(): Promise<void> {
    this.stopWatches();
    if (this.conn.isOpen) await Promise.all([...this.keepers.values()].map((k) => k.close()));
    this.conn.close();
  }

  /** Simulates a killed process: keepalives stop, nothing is revoked or deleted, the connection drops. */
  crash(): void {
    for (const keeper of this.keepers.values()) keeper.abandon();
    this.stopWatches();
    this.conn.close(true);
  }

  private stopWatches(): void {
    for (const w of this.liveWatches) w.stop();
    this.liveWatches.clear();
    this.watches.clear();
  }
}

/**
 * Decodes the keys and values under one service's prefix, defensively: a key that is not
 * `<prefix><id>`, a key attached to no lease (Rollcall always writes instances on a lease, so a
 * lease-less one was written by something else: `etcdctl`, another tool), a value that is not a
 * valid instance, or an instance stored under another service or id is skipped with a warning (and
 * counts as absent), never crashing the watch. A lease-less key is reported once per key.
 */
class InstanceCodec implements PrefixCodec<ServiceInstance> {
  /** Lease-less keys already reported (bounded: cleared when it grows past 1,000). */
  private readonly reported = new Set<string>();

  constructor(
    private readonly service: string,
    private readonly prefix: string,
    private readonly interner: Interner,
    private readonly logger: Logger,
  ) {}

  id(key: string): string | undefined {
    if (!key.startsWith(this.prefix)) return undefined;
    const id = key.slice(this.prefix.length);
    return id.length === 0 || id.includes('/') ? undefined : id;
  }

  keyOf(instance: ServiceInstance): string {
    return instance.id;
  }

  decode(id: string, value: Buffer, key: string, lease: string): ServiceInstance | undefined {
    if (!lease || lease === '0') {
      if (!this.reported.has(key)) {
        if (this.reported.size >= 1000) this.reported.clear();
        this.reported.add(key);
        this.logger.warn('etcd: ignoring an instance key that Rollcall did not write (it has no lease)', {
          key,
        });
      }
      return undefined;
    }
    let instance: ServiceInstance;
    try {
      instance = validateInstance(JSON.parse(value.toString('utf8')));
    } catch (error) {
      this.logger.warn('etcd: skipping a key that does not hold a valid instance', {
        key,
        error: error instanceof Error ? error.message : String(error),
      });
      return undefined;
    }
    if (instance.service !== this.service || instance.id !== id) {
      this.logger.warn('etcd: skipping an instance stored under another service or id', {
        key,
        service: instance.service,
        id: instance.id,
      });
      return undefined;
    }
    return this.interner.instance(instance, this.service);
  }
}
