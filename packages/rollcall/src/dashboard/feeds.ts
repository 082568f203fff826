import type { ServiceDiscovery, ServiceInstance, ServiceWatch, Snapshot } from '@rollcall/core';

/** An instance as the page shows it: with the time this dashboard first saw it. */
export interface SeenInstance extends ServiceInstance {
  /** ms epoch when the dashboard first saw this instance (it may be older: see `before`). */
  since: number;
  /** True when the instance was already there when the dashboard started watching the service. */
  before: boolean;
}

/** What the page gets for one service. */
export interface ServiceView {
  service: string;
  instances: SeenInstance[];
  stale: boolean;
  syncedAt: number;
  /** Why the list is stale, while it is. */
  error?: string;
}

interface Feed {
  refs: number;
  watch: ServiceWatch;
  /** By instance id: when first seen, and whether it was in the watch's first list (so older than that). */
  firstSeen: Map<string, { since: number; before: boolean }>;
  synced: boolean;
}

/**
 * One discovery watch per service, shared by every browser: `acquire` counts a subscriber and
 * starts the watch on the first, `release` stops it after the last. Each update reaches
 * `onUpdate` with the instances' first-seen times.
 */
export class ServiceFeeds {
  private readonly feeds = new Map<string, Feed>();

  constructor(
    private readonly discovery: ServiceDiscovery,
    private readonly onUpdate: (view: ServiceView) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** Subscribers of `service` now (0 when not watched). */
  refs(service: string): number {
    return this.feeds.get(service)?.refs ?? 0;
  }

  /** Services watched now. */
  services(): string[] {
    return [...this.feeds.keys()];
  }

  acquire(service: string): void {
    const existing = this.feeds.get(service);
    if (existing) {
      existing.refs += 1;
      return;
    }
    const feed: Feed = { refs: 1, watch: this.discovery.watch(service), firstSeen: new Map(), synced: false };
    this.feeds.set(service, feed);
    void this.pump(feed);
  }

  release(service: string): void {
    const feed = this.feeds.get(service);
    if (!feed) return;
    feed.refs -= 1;
    if (feed.refs > 0) return;
    this.feeds.delete(service);
    feed.watch.close();
  }

  /** Stops every watch. */
  close(): void {
    for (const feed of this.feeds.values()) feed.watch.close();
    this.feeds.clear();
  }

  private async pump(feed: Feed): Promise<void> {
    try {
      for await (const event of feed.watch) {
        const error = event.type === 'stale' ? event.error.message : undefined;
        this.onUpdate(this.view(feed, event.snapshot, error));
      }
    } catch {
      // A watch ends by close(); the shared discovery reports outages as `stale` events, not errors.
    }
  }

  private view(feed: Feed, snapshot: Snapshot, error: string | undefined): ServiceView {
    const now = this.now();
    // Instances of the first list were there before the dashboard looked: their `since` is a lower bound.
    const before = !feed.synced;
    feed.synced = true;
    const ids = new Set<string>();
    const instances = snapshot.instances.map((instance) => {
      ids.add(instance.id);
      let seen = feed.firstSeen.get(instance.id);
      if (!seen) {
        seen = { since: now, before };
        feed.firstSeen.set(instance.id, seen);
      }
      return { ...instance, ...seen };
    });
    for (const id of feed.firstSeen.keys()) if (!ids.has(id)) feed.firstSeen.delete(id);
    return {
      service: snapshot.service,
      instances,
      stale: snapshot.stale,
      syncedAt: snapshot.syncedAt,
      ...(error ? { error } : {}),
    };
  }
}
