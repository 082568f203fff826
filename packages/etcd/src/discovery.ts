import { type Logger, type ServiceInstance, validateInstance } from '@rollcall/core';
import {
  abortable,
  type DiscoveryDriver,
  type LivenessEngine,
  type MirrorFeed,
  type SessionWrite,
  UpstreamCounter,
} from '@rollcall/core/driver';
import type { EtcdConnection } from './connection.js';
import { Interner } from './intern.js';
import { type PrefixCodec, PrefixWatch } from './prefix-watch.js';

/**
 * The etcd discovery driver: an instance is the key `<namespace>services/<service>/<id>` holding
 * the instance as JSON, on the client's shared lease (kept by core's liveness engine); a service is
 * watched on the prefix `<namespace>services/<service>/` (trailing separator: `web` never sees
 * `web-admin`).
 */
export class EtcdDiscoveryDriver implements DiscoveryDriver {
  readonly backend = 'etcd';
  /** etcd watches held now, by service. */
  readonly watches = new UpstreamCounter();
  private readonly liveWatches = new Set<PrefixWatch<ServiceInstance>>();
  private readonly interner = new Interner();
  private readonly servicesRoot: string;

  constructor(
    private readonly conn: EtcdConnection,
    readonly liveness: LivenessEngine<string, string>,
  ) {
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

  registration(instance: ServiceInstance): SessionWrite<string> {
    return { key: this.instanceKey(instance), value: JSON.stringify(instance) };
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

  /** Stops the watches and revokes the lease(s) (their keys go at once); the backend then closes the client. */
  async close(): Promise<void> {
    this.stopWatches();
    await this.liveness.close();
  }

  /** Simulates a killed process: keepalives stop, nothing is revoked or deleted. */
  crash(): void {
    this.liveness.abandon();
    this.stopWatches();
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
  /** Lease-less keys already reported (bounded: cleared when it grows past 1,000). Made on the first. */
  private reported: Set<string> | undefined;

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
      this.reported ??= new Set();
      if (!this.reported.has(key)) {
        if (this.reported.size >= 1000) this.reported.clear();
        this.reported.add(key);
        this.logger.warn(
          {
            key,
          },
          'etcd: ignoring an instance key that Rollcall did not write (it has no lease)',
        );
      }
      return undefined;
    }
    let instance: ServiceInstance;
    try {
      instance = validateInstance(JSON.parse(value.toString('utf8')));
    } catch (error) {
      this.logger.warn(
        {
          key,
          error: error instanceof Error ? error.message : String(error),
        },
        'etcd: skipping a key that does not hold a valid instance',
      );
      return undefined;
    }
    if (instance.service !== this.service || instance.id !== id) {
      this.logger.warn(
        {
          key,
          service: instance.service,
          id: instance.id,
        },
        'etcd: skipping an instance stored under another service or id',
      );
      return undefined;
    }
    return this.interner.instance(instance, this.service);
  }
}
