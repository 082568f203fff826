import {
  AbortedError,
  type Backend,
  ClosedError,
  ConflictError,
  type Logger,
  type Registration,
  type ServiceInstance,
  type ServiceWatch,
  silentLogger,
  ValidationError,
  validateServiceName,
} from '@rollcall/core';
import { Backoff, instanceEquals, linkSignals, sleep } from '@rollcall/core/driver';
import { ACK_SERVICE, newClientId } from '../acks.js';

/** Metadata naming the registry a bridged copy comes from. */
export const SOURCE_META = 'migration-source';
/** Metadata naming the bridge that owns a copy (and marks it as a copy). */
export const BRIDGE_META = 'migration-bridge';
/** The election bridges campaign in (on `to`'s locks). */
export const BRIDGE_ELECTION = 'rollcall-migration-bridge';

/** Options of {@link startBridge}. */
export interface BridgeOptions {
  /** The registry whose foreign services are mirrored (Consul). Not closed by the bridge. */
  from: Backend;
  /** The registry the copies go to (etcd); the election runs on its locks. Not closed by the bridge. */
  to: Backend;
  /** Services to mirror. */
  services?: string[];
  /** Mirror every service of `from` (rescanned every `rescanMs`); its Rollcall clients are left alone (they are in `to` already). Default `false`. */
  all?: boolean;
  /** This bridge's id (published as the leader's value and in its copies). Default: host, pid and a random part. */
  id?: string;
  /** TTL of the copies and of the leadership, in seconds. Default 10. */
  ttlSeconds?: number;
  /** How long an instance must be in `from` and missing in `to` before it is copied, so that a Rollcall client registering in both is never copied. Default 1000 ms. */
  settleMs?: number;
  /** How often `all` looks for new services. Default 30000 ms. */
  rescanMs?: number;
  logger?: Logger;
  /** Called for everything the bridge does (for the CLI's output). */
  onEvent?: (event: BridgeEvent) => void;
}

/** What a bridge does, as it happens. */
export type BridgeEvent =
  | { type: 'waiting'; leader: string | undefined }
  | { type: 'leading'; services: string[] }
  | { type: 'listed'; service: string; instances: number }
  | { type: 'copied'; service: string; id: string }
  | { type: 'removed'; service: string; id: string }
  | { type: 'skipped'; service: string; id: string; reason: string }
  /** `from` cannot be read: its last list stands and no copy is removed until it answers again. */
  | { type: 'source-stale'; service: string }
  | { type: 'source-back'; service: string }
  | { type: 'stepped-down' };

/** A running bridge. */
export interface Bridge extends AsyncDisposable {
  readonly id: string;
  /** True while this bridge leads (and copies). */
  readonly leading: boolean;
  /** The copies this bridge holds now. */
  copies(): ServiceInstance[];
  /** Removes this bridge's copies, resigns and stops. Idempotent. */
  stop(): Promise<void>;
  /** Settles when the bridge has stopped (rejects if it failed). */
  readonly done: Promise<void>;
}

interface Copy {
  instance: ServiceInstance;
  registration: Registration;
  /** Stops listening to the registration's events. */
  unsubscribe: () => void;
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * The mirror of one service while this bridge leads: `from`'s passing instances copied into
 * `to` (tagged with their source and this bridge), Nacos-Sync style. Copies are never copied
 * back, only this bridge's copies are removed, and nothing is removed before the first full
 * listing of `from` (nor while `from` is unreachable: its last list stands).
 */
class ServiceMirror {
  private fromList: Map<string, ServiceInstance> | undefined;
  private fromStale = false;
  private toList = new Map<string, ServiceInstance>();
  private readonly copies = new Map<string, Copy>();
  private readonly firstMissing = new Map<string, number>();
  /**
   * Ids `to` was seen holding without the bridge tag (a Rollcall client registered there): never
   * copied while their source lasts, even when that registration is briefly missing (an etcd
   * outage for that client), or a copy would be taken for the client's own re-registration at the
   * same address and hold it out (the liveness engine's conflict rule).
   */
  private readonly heldElsewhere = new Set<string>();
  private readonly watches: ServiceWatch[] = [];
  private running: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    readonly service: string,
    private readonly bridge: { id: string; from: Backend; to: Backend; ttlSeconds: number; settleMs: number },
    private readonly logger: Logger,
    private readonly emit: (event: BridgeEvent) => void,
  ) {}

  start(): void {
    this.follow(this.bridge.from, (list, stale, full) => {
      if (full && !this.fromList) this.emit({ type: 'listed', service: this.service, instances: list.size });
      if (stale !== this.fromStale)
        this.emit({ type: stale ? 'source-stale' : 'source-back', service: this.service });
      this.fromList = list;
      this.fromStale = stale;
    });
    this.follow(this.bridge.to, (list) => {
      this.toList = list;
    });
  }

  held(): ServiceInstance[] {
    return [...this.copies.values()].map((c) => c.instance);
  }

  /** Stops following and removes this bridge's copies. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const w of this.watches) w.close();
    await this.running;
    await Promise.all([...this.copies.keys()].map((id) => this.remove(id)));
  }

  private follow(
    backend: Backend,
    update: (list: Map<string, ServiceInstance>, stale: boolean, full: boolean) => void,
  ): void {
    const watch = backend.discovery.watch(this.service);
    this.watches.push(watch);
    void (async () => {
      for await (const event of watch) {
        update(
          new Map(event.snapshot.instances.map((i) => [i.id, i])),
          event.snapshot.stale,
          event.type === 'sync',
        );
        this.reconcile();
      }
    })().catch((error) =>
      this.logger.warn({ service: this.service, error: message(error) }, 'bridge watch ended'),
    );
  }

  /** Runs one reconciliation at a time; updates meanwhile run another right after. */
  private reconcile(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch((error) =>
        this.logger.warn({ service: this.service, error: message(error) }, 'bridge pass failed'),
      )
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.reconcile();
        }
      });
  }

  private async pass(): Promise<void> {
    const from = this.fromList;
    if (!from || this.stopped) return;
    const now = Date.now();
    let wait = Number.POSITIVE_INFINITY;
    const work: Promise<void>[] = [];
    for (const [id, source] of from) {
      // Never copy a copy back (a bridge the other way round, or this one's own).
      if (source.metadata?.[BRIDGE_META]) continue;
      const copy = this.copyOf(source);
      const mine = this.copies.get(id);
      const there = this.toList.get(id);
      if (there && !there.metadata?.[BRIDGE_META]) this.heldElsewhere.add(id);
      if (mine) {
        if (there && there.metadata?.[BRIDGE_META] !== this.bridge.id) {
          // Someone else registered this id in `to` over the copy: it is theirs now.
          work.push(this.abandon(id, 'registered in the new registry by someone else'));
          continue;
        }
        if (!instanceEquals(mine.instance, copy)) work.push(this.replace(id, copy));
        continue;
      }
      if (this.heldElsewhere.has(id)) {
        this.firstMissing.delete(id);
        continue; // A Rollcall client (or the service itself) registers there: not ours to mirror.
      }
      // Missing (or another bridge's copy, left by a previous leader): copy it once it has settled.
      const since = this.firstMissing.get(id) ?? now;
      this.firstMissing.set(id, since);
      const due = there ? 0 : since + this.bridge.settleMs - now;
      if (due <= 0) work.push(this.add(id, copy));
      else wait = Math.min(wait, due);
    }
    for (const id of this.firstMissing.keys()) if (!from.has(id)) this.firstMissing.delete(id);
    if (!this.fromStale)
      for (const id of this.heldElsewhere) if (!from.has(id)) this.heldElsewhere.delete(id);
    // Removals only from an authoritative list: never from a stale one.
    if (!this.fromStale)
      for (const id of this.copies.keys()) {
        const source = from.get(id);
        if (!source || source.metadata?.[BRIDGE_META]) work.push(this.remove(id));
      }
    await Promise.all(work);
    clearTimeout(this.timer);
    if (Number.isFinite(wait) && !this.stopped) {
      this.timer = setTimeout(() => this.reconcile(), wait + 5);
      this.timer.unref();
    }
  }

  private copyOf(source: ServiceInstance): ServiceInstance {
    return {
      ...source,
      metadata: {
        ...(source.metadata ?? {}),
        [SOURCE_META]: this.bridge.from.name,
        [BRIDGE_META]: this.bridge.id,
      },
    };
  }

  private async add(id: string, copy: ServiceInstance): Promise<void> {
    try {
      const registration = await this.bridge.to.discovery.register(copy, {
        ttlSeconds: this.bridge.ttlSeconds,
      });
      // Another live client took the id (at the source's address, its own re-registration wins):
      // the copy is given up, never fought over.
      const unsubscribe = registration.on('lost', (error) => {
        if (error instanceof ConflictError && this.copies.get(id)?.registration === registration) {
          this.heldElsewhere.add(id);
          void this.abandon(id, 'held in the new registry by another live client');
        }
      });
      this.copies.set(id, { instance: registration.instance, registration, unsubscribe });
      this.firstMissing.delete(id);
      this.emit({ type: 'copied', service: this.service, id });
    } catch (error) {
      this.emit({ type: 'skipped', service: this.service, id, reason: message(error) });
    }
  }

  private async replace(id: string, copy: ServiceInstance): Promise<void> {
    await this.remove(id, false);
    await this.add(id, copy);
  }

  /**
   * Stops managing a copy someone else now holds, and drops its registration: the registry deletes
   * the key only while it is still the copy's, so the other holder keeps it, and the copy can never
   * come back once the id is free again.
   */
  private async abandon(id: string, why: string): Promise<void> {
    const mine = this.copies.get(id);
    if (!mine) return;
    this.copies.delete(id);
    mine.unsubscribe();
    this.logger.warn(
      {
        service: this.service,
        id,
        why,
      },
      'a bridged instance is held by someone else now; leaving it to them',
    );
    this.emit({ type: 'skipped', service: this.service, id, reason: why });
    await mine.registration.deregister().catch(() => {});
  }

  /** Deregisters a copy (the registry deletes the key only while it is still the copy's, never someone else's registration). */
  private async remove(id: string, announce = true): Promise<void> {
    const mine = this.copies.get(id);
    if (!mine) return;
    this.copies.delete(id);
    mine.unsubscribe();
    await mine.registration.deregister().catch((error) =>
      this.logger.warn(
        {
          service: this.service,
          id,
          error: message(error),
        },
        'cannot remove a bridged copy (it expires with the lease)',
      ),
    );
    if (announce) this.emit({ type: 'removed', service: this.service, id });
  }
}

class BridgeImpl implements Bridge {
  readonly id: string;
  readonly done: Promise<void>;
  private readonly stopping = new AbortController();
  private readonly mirrors = new Map<string, ServiceMirror>();
  private isLeading = false;
  private readonly logger: Logger;
  private readonly ttlSeconds: number;
  private readonly settleMs: number;
  private readonly rescanMs: number;

  constructor(private readonly options: BridgeOptions) {
    this.id = options.id ?? `bridge-${newClientId()}`;
    this.logger = options.logger ?? silentLogger;
    this.ttlSeconds = options.ttlSeconds ?? 10;
    this.settleMs = options.settleMs ?? 1000;
    this.rescanMs = options.rescanMs ?? 30_000;
    this.done = this.run();
  }

  get leading(): boolean {
    return this.isLeading;
  }

  copies(): ServiceInstance[] {
    return [...this.mirrors.values()].flatMap((m) => m.held());
  }

  async stop(): Promise<void> {
    this.stopping.abort(new AbortedError('bridge stopped'));
    await this.done;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  private emit(event: BridgeEvent): void {
    this.options.onEvent?.(event);
  }

  private async run(): Promise<void> {
    const { to } = this.options;
    const stop = this.stopping.signal;
    const backoff = new Backoff();
    while (!stop.aborted) {
      this.emit({ type: 'waiting', leader: await to.locks.leader(BRIDGE_ELECTION).catch(() => undefined) });
      let leadership: Awaited<ReturnType<Backend['locks']['campaign']>>;
      try {
        leadership = await to.locks.campaign(BRIDGE_ELECTION, this.id, {
          ttlSeconds: this.ttlSeconds,
          signal: stop,
        });
        backoff.reset();
      } catch (error) {
        if (stop.aborted) return;
        if (error instanceof ClosedError) {
          this.logger.warn({}, 'bridge stops: its registry client was closed');
          return;
        }
        this.logger.warn({ error: message(error) }, 'bridge cannot campaign; retrying');
        await sleep(backoff.next(), stop).catch(() => {});
        continue;
      }
      const linked = linkSignals(leadership.signal, stop);
      this.isLeading = true;
      try {
        await this.lead(linked.signal);
      } finally {
        this.isLeading = false;
        linked.dispose();
        await Promise.all([...this.mirrors.values()].map((m) => m.stop()));
        this.mirrors.clear();
        await leadership.resign().catch(() => {});
        if (!stop.aborted) this.emit({ type: 'stepped-down' });
      }
    }
  }

  /** Mirrors the chosen services until `signal` aborts (leadership lost, or stop). */
  private async lead(signal: AbortSignal): Promise<void> {
    const explicit = (this.options.services ?? []).map((s) => validateServiceName(s, 'services'));
    let announced = false;
    while (!signal.aborted) {
      let services = explicit;
      if (this.options.all) {
        try {
          const found = await this.options.from.discovery.listServices();
          services = [...new Set([...explicit, ...found.filter((s) => s !== ACK_SERVICE)])];
        } catch (error) {
          this.logger.warn(
            {
              error: message(error),
            },
            'bridge cannot list services; keeping the current ones',
          );
          services = [...new Set([...explicit, ...this.mirrors.keys()])];
        }
      }
      for (const service of services) {
        if (this.mirrors.has(service)) continue;
        const mirror = new ServiceMirror(
          service,
          {
            id: this.id,
            from: this.options.from,
            to: this.options.to,
            ttlSeconds: this.ttlSeconds,
            settleMs: this.settleMs,
          },
          this.logger,
          (e) => this.emit(e),
        );
        this.mirrors.set(service, mirror);
        mirror.start();
      }
      if (!announced) {
        announced = true;
        this.emit({ type: 'leading', services: [...this.mirrors.keys()].sort() });
      }
      if (!this.options.all) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.rescanMs);
        timer.unref();
        signal.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            resolve();
          },
          { once: true },
        );
      });
    }
    if (!signal.aborted)
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
  }
}

/**
 * Starts a bridge: it campaigns for leadership on `to` (several bridges may run; one leads, the
 * others wait), and while it leads mirrors the passing instances of `services` (or of every
 * service, with `all`) from `from` into `to`, under its own lease. Services that are not Rollcall
 * clients (other languages registering in Consul directly) thus appear in etcd for clients that
 * read it.
 */
export function startBridge(options: BridgeOptions): Bridge {
  if (!options.all && (options.services ?? []).length === 0)
    throw new ValidationError('services', 'name at least one service to bridge, or set all');
  return new BridgeImpl(options);
}

/** A bridge event as a line of the CLI's output. */
export function formatBridgeEvent(event: BridgeEvent): string {
  switch (event.type) {
    case 'waiting':
      return event.leader ? `waiting: bridge ${event.leader} leads` : 'campaigning for leadership';
    case 'leading':
      return `leading: mirroring ${event.services.length} service(s): ${event.services.join(', ') || '(none yet)'}`;
    case 'listed':
      return `listed ${event.service}: ${event.instances} passing instance(s)`;
    case 'copied':
      return `copied ${event.service}/${event.id}`;
    case 'removed':
      return `removed ${event.service}/${event.id}`;
    case 'skipped':
      return `skipped ${event.service}/${event.id}: ${event.reason}`;
    case 'source-stale':
      return `cannot read ${event.service} in the source registry: keeping its copies until it answers`;
    case 'source-back':
      return `${event.service} readable again`;
    case 'stepped-down':
      return 'lost leadership: copies removed, campaigning again';
  }
}
