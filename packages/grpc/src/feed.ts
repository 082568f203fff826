import type { Logger, ServiceDiscovery, ServiceInstance, ServiceWatch, Snapshot } from '@rollcall/core';

/** What the channels of one service are told: the instances to send calls to, or why there are none. */
export type Resolution =
  | { readonly ok: true; readonly instances: readonly ServiceInstance[]; readonly stale: boolean }
  | { readonly ok: false; readonly reason: string };

/** A channel's side of a {@link ServiceFeed}. */
export type FeedListener = (resolution: Resolution) => void;

/** host:port:weight of every instance: two lists with the same key need no new resolution. */
function addressKey(instances: readonly ServiceInstance[]): string {
  return instances.map((i) => `${i.host}|${i.port}|${i.weight ?? 1}`).join(',');
}

/**
 * One discovery watch of one service, shared by every channel that targets it. It lives while at
 * least one channel listens (a channel that goes IDLE stops listening) and tells the listeners
 * each change of the service's address list. A `stale` snapshot (backend outage) changes nothing:
 * channels keep the last known good list. Before any list is known, an unreachable backend or a
 * failed watch is told as an error.
 */
export class ServiceFeed {
  private readonly listeners = new Set<FeedListener>();
  private watch: ServiceWatch | undefined;
  private current: Resolution | undefined;
  private currentKey: string | undefined;
  private stale = false;
  private closed = false;

  constructor(
    private readonly discovery: ServiceDiscovery,
    readonly service: string,
    private readonly logger: Logger,
    /** Called when the last listener leaves (the owner forgets this feed). */
    private readonly onIdle: (feed: ServiceFeed) => void,
  ) {}

  /** The last resolution, if the watch has told one yet. */
  get latest(): Resolution | undefined {
    return this.current;
  }

  /** Number of channels listening. */
  get listenerCount(): number {
    return this.listeners.size;
  }

  /** Whether the last list came from a stale snapshot or the watch reported an outage since. */
  get isStale(): boolean {
    return this.stale;
  }

  /** Whether the discovery watch is open. */
  get watching(): boolean {
    return this.watch !== undefined;
  }

  /** Adds a listener and opens the watch if needed. Returns the function that removes it. */
  subscribe(listener: FeedListener): () => void {
    this.listeners.add(listener);
    this.ensureWatching();
    return () => {
      if (this.listeners.delete(listener) && this.listeners.size === 0) this.close();
    };
  }

  /** Opens the discovery watch again if it ended (discovery closed, watch failed). Idempotent. */
  ensureWatching(): void {
    if (this.watch || this.closed) return;
    let watch: ServiceWatch;
    try {
      watch = this.discovery.watch(this.service);
    } catch (error) {
      this.fail(error);
      return;
    }
    this.watch = watch;
    void this.consume(watch);
    // A watch opened while the registry is down may say nothing until it comes back; a read
    // fails at once (or after the backend's call timeout), so channels need not wait for their
    // deadline to learn that nothing is known.
    if (!this.current)
      this.discovery.getInstances(this.service).then(
        (snapshot) => {
          if (!this.current && !this.closed) this.onSnapshot(snapshot);
        },
        (error: unknown) => {
          if (!this.current && !this.closed) this.fail(error);
        },
      );
  }

  /** Ends the watch and drops every listener. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    this.watch?.close();
    this.watch = undefined;
    this.onIdle(this);
  }

  private async consume(watch: ServiceWatch): Promise<void> {
    try {
      for await (const event of watch) {
        if (event.type === 'stale') this.onStale(event.snapshot, event.error);
        else this.onSnapshot(event.snapshot);
      }
    } catch (error) {
      this.fail(error);
    } finally {
      if (this.watch === watch) this.watch = undefined;
    }
  }

  private onSnapshot(snapshot: Snapshot): void {
    if (snapshot.stale && snapshot.instances.length === 0) {
      this.onStale(snapshot, undefined);
      return;
    }
    this.stale = snapshot.stale;
    this.publish({ ok: true, instances: snapshot.instances, stale: snapshot.stale });
  }

  private onStale(snapshot: Snapshot, error: Error | undefined): void {
    this.stale = true;
    this.logger.warn(
      {
        service: this.service,
        instances: snapshot.instances.length,
        error: error?.message,
      },
      'registry unreachable: channels keep the last known instances',
    );
    if (this.current?.ok) return;
    if (snapshot.instances.length > 0) this.publish({ ok: true, instances: snapshot.instances, stale: true });
    else
      this.publish({
        ok: false,
        reason: this.unresolved(`the registry is unreachable${error ? ` (${error.message})` : ''}`),
      });
  }

  private fail(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    this.logger.warn({ service: this.service, error: message }, 'discovery watch failed');
    if (this.current?.ok) return;
    this.publish({ ok: false, reason: this.unresolved(message) });
  }

  private unresolved(why: string): string {
    return `rollcall: cannot resolve '${this.service}', no instance is known yet: ${why}`;
  }

  private publish(resolution: Resolution): void {
    const key = resolution.ok ? addressKey(resolution.instances) : `!${resolution.reason}`;
    if (key === this.currentKey) {
      this.current = resolution;
      return;
    }
    this.current = resolution;
    this.currentKey = key;
    for (const listener of this.listeners) listener(resolution);
  }
}
