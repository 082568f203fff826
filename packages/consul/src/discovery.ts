import {
  AbortedError,
  BackendUnavailableError,
  type BackoffOptions,
  type Logger,
  type ServiceInstance,
} from '@rollcall/core';
import {
  Backoff,
  type DiscoveryDriver,
  type LivenessEngine,
  linkSignals,
  type MirrorFeed,
  type SessionWrite,
  UpstreamCounter,
  unboundedController,
} from '@rollcall/core/driver';
import type { ConsulApi } from './api.js';
import { checkConsulLimits, decodeHealth, serviceIdOf } from './codec.js';
import type { ConsulWatchMode } from './options.js';
import type { CheckSession, ConsulRegistrationValue } from './registrations.js';
import { sleepUntil } from './time.js';

/** What the discovery driver needs of the backend options (no token: the API layer alone holds it). */
export interface DiscoveryDriverOptions {
  pollIntervalMs: number;
  watchMode: ConsulWatchMode;
  backoff: BackoffOptions;
  logger: Logger;
}

const isAbort = (error: unknown) => error instanceof AbortedError;
const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * The Consul discovery driver: one poller (or rate-limited blocking query) per watched service.
 * Registrations are agent services with a TTL check, kept passing by core's liveness engine
 * ({@link ConsulRegistrationSessions}). Everything else (validation, caching, fan-out, stale lists,
 * registration handles, the grace window after a re-sync) is core's.
 */
export class ConsulDiscoveryDriver implements DiscoveryDriver {
  readonly backend = 'consul';
  private readonly pollers = new UpstreamCounter();
  /** Aborted when the client closes or dies: stops every poller. */
  private readonly lifetime = unboundedController();

  constructor(
    private readonly api: ConsulApi,
    readonly liveness: LivenessEngine<CheckSession, ConsulRegistrationValue>,
    private readonly options: DiscoveryDriverOptions,
  ) {}

  registration(instance: ServiceInstance): SessionWrite<ConsulRegistrationValue> {
    checkConsulLimits(instance);
    return { key: serviceIdOf(instance), value: { instance } };
  }

  watch(service: string, feed: MirrorFeed<ServiceInstance>): () => void {
    const stop = new AbortController();
    const linked = linkSignals(stop.signal, this.lifetime.signal);
    void this.poll(service, feed, linked.signal).catch((error) =>
      this.options.logger.error({ service, error: message(error) }, 'consul poller failed'),
    );
    return this.pollers.track(service, () => {
      stop.abort();
      linked.dispose();
    });
  }

  /** Number of pollers this client runs for `service` (core guarantees at most one). */
  pollerCount(service: string): number {
    return this.pollers.count(service);
  }

  /**
   * The one upstream of a watched service. Requests start at least `pollIntervalMs` apart, always
   * (in blocking mode too, however often the service changes), measured on a monotonic clock (a
   * wall-clock step never freezes or hurries a poller); after errors a jittered backoff is added
   * on top. A blocking query waits at most `pollIntervalMs`, so a silent partition, or an agent that
   * restarted and would hold a query with an index from before for its whole wait, is noticed within
   * about one interval. When Consul's index goes backwards (the agent restarted and lost its state,
   * even between two polls) the list is handed over as a re-sync: core keeps instances missing from
   * it for its grace window, while their owners re-register.
   */
  private async poll(service: string, feed: MirrorFeed<ServiceInstance>, signal: AbortSignal): Promise<void> {
    const blocking = this.options.watchMode === 'blocking';
    const backoff = new Backoff(this.options.backoff);
    let index = 0n;
    /** The highest `X-Consul-Index` seen, kept through errors: one lower than it means the agent lost its state. */
    let seen = 0n;
    let lastStart = Number.NEGATIVE_INFINITY;
    let extraMs = 0;
    let failing = false;
    while (!signal.aborted) {
      try {
        await sleepUntil(lastStart + this.options.pollIntervalMs + extraMs, signal);
      } catch {
        return;
      }
      lastStart = performance.now();
      try {
        const answer = await this.api.healthService(
          service,
          blocking && index > 0n ? { index, waitMs: this.options.pollIntervalMs, signal } : { signal },
        );
        // Consul's index only grows; one that goes backwards (agent restarted, snapshot restored) starts over.
        index = answer.index === undefined || answer.index < index ? 0n : answer.index;
        const reset = answer.index !== undefined && answer.index < seen;
        if (answer.index !== undefined) seen = answer.index;
        extraMs = 0;
        backoff.reset();
        if (failing) this.options.logger.info({ service }, 'consul poller recovered');
        if (reset)
          this.options.logger.info(
            {
              service,
            },
            'consul lost its state (its index went backwards); re-syncing',
          );
        failing = false;
        feed.replace(decodeHealth(answer.data, service), reset ? { resynced: true } : undefined);
      } catch (error) {
        if (signal.aborted || isAbort(error)) return;
        if (!failing)
          this.options.logger.warn(
            {
              service,
              error: message(error),
            },
            'consul poll failed; serving the last known list',
          );
        failing = true;
        index = 0n;
        extraMs = backoff.next();
        feed.stale(error instanceof Error ? error : new Error(String(error)));
      }
    }
  }

  async listServices(): Promise<string[]> {
    const services = await this.api.catalogServices();
    // `consul` is the servers' own service, not an application's.
    return Object.keys(services).filter((name) => name !== 'consul');
  }

  async ping(signal?: AbortSignal): Promise<void> {
    const leader = await this.api.leader(signal);
    if (!leader)
      throw new BackendUnavailableError(
        'consul',
        `the agent at ${this.api.address} answers but the cluster has no leader`,
      );
  }

  /** Stops the pollers and the registration engine (every registration is already deregistered). */
  async close(): Promise<void> {
    this.lifetime.abort();
    await this.liveness.close();
  }

  /**
   * Test hook: behave like a process killed without closing. Heartbeats and pollers stop, nothing
   * is deregistered (later deregistrations and `close()` send nothing).
   */
  crash(): void {
    this.lifetime.abort();
    this.liveness.abandon();
  }
}
