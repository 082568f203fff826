import {
  AbortedError,
  BackendUnavailableError,
  Backoff,
  type BackoffOptions,
  type DiscoveryDriver,
  type Logger,
  linkSignals,
  type MirrorFeed,
  PermissionDeniedError,
  type RegistrationControl,
  retryForever,
  type ServiceInstance,
  sleep,
  UpstreamCounter,
} from '@rollcall/core';
import { type ConsulApi, isUnknownCheck, isUnknownService } from './api.js';
import { checkConsulLimits, checkIdOf, decodeHealth, registrationBody, serviceIdOf } from './codec.js';
import type { ConsulWatchMode } from './options.js';
import { sleepUntil } from './time.js';

/** Heartbeat retries after a failed check pass are never further apart than this (nor than the heartbeat interval). */
export const HEARTBEAT_RETRY_MAX_MS = 1000;
/** `wait` of a blocking query on a service (Consul adds up to wait/16 of jitter). */
export const BLOCKING_WAIT_MS = 30_000;
/** How long `register` waits for the agent to show a registration in `/v1/health/service` before retrying it. */
const VISIBLE_DEADLINE_MS = 3000;

/** What the discovery driver needs of the backend options (no token: the API layer alone holds it). */
export interface DiscoveryDriverOptions {
  pollIntervalMs: number;
  watchMode: ConsulWatchMode;
  deregisterCriticalAfter: string;
  backoff: BackoffOptions;
  logger: Logger;
}

interface Held {
  control: RegistrationControl;
  /** Aborts on deregister/close (the control's signal) or when the client dies (simulated crash, close). */
  stop: AbortSignal;
  /** Detaches `stop` from the client's long-lived lifetime signal once the registration is gone. */
  unlink: () => void;
  /** The heartbeat loop; settles once it has stopped and its last request has finished. */
  loop: Promise<void>;
}

const isAbort = (error: unknown) => error instanceof AbortedError;
const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * The Consul discovery driver: agent services with a TTL check kept passing by a heartbeat per
 * registration, and one poller (or rate-limited blocking query) per watched service. Everything
 * else (validation, caching, fan-out, stale lists, registration handles) is core's.
 */
export class ConsulDiscoveryDriver implements DiscoveryDriver {
  readonly backend = 'consul';
  private readonly held = new Map<RegistrationControl, Held>();
  private readonly pollers = new UpstreamCounter();
  /** Aborted when the client closes or dies: stops every heartbeat and poller. */
  private readonly lifetime = new AbortController();
  /** Registrations whose `PUT /v1/agent/service/register` was sent: only those are ever deregistered. */
  private readonly sent = new WeakSet<RegistrationControl>();
  private crashed = false;

  constructor(
    private readonly api: ConsulApi,
    private readonly options: DiscoveryDriverOptions,
  ) {}

  // ---- registration ----

  async register(control: RegistrationControl, signal?: AbortSignal): Promise<void> {
    checkConsulLimits(control.instance);
    // linkSignals, not AbortSignal.any: the lifetime signal outlives every registration (see core).
    const stop = linkSignals(control.signal, this.lifetime.signal);
    const attempt = signal ? linkSignals(stop.signal, signal) : undefined;
    let sentAt: number;
    try {
      sentAt = await this.putAndConfirm(control, attempt?.signal ?? stop.signal);
    } catch (error) {
      stop.dispose();
      throw error;
    } finally {
      attempt?.dispose();
    }
    if (stop.signal.aborted) return;
    const held: Held = { control, stop: stop.signal, unlink: stop.dispose, loop: Promise.resolve() };
    held.loop = this.heartbeat(held, sentAt).catch((error) => {
      this.options.logger.error('consul heartbeat loop failed', {
        ...this.who(control),
        error: message(error),
      });
    });
    this.held.set(control, held);
  }

  async deregister(control: RegistrationControl): Promise<void> {
    const held = this.held.get(control);
    this.held.delete(control);
    // The control's signal is aborted already: wait for the heartbeat to stop so that no pass or
    // re-registration in flight can land after the deregistration and bring the service back.
    await held?.loop;
    held?.unlink();
    // Never sent (refused before any request): the service ID may belong to another process.
    if (this.crashed || !this.sent.has(control)) return;
    try {
      await this.api.deregisterService(serviceIdOf(control.instance));
    } catch (error) {
      if (isUnknownService(error)) return;
      if (error instanceof PermissionDeniedError) throw error;
      throw new BackendUnavailableError(
        'consul',
        `deregister ${this.label(control)}: ${message(error).replace(/^consul: /, '')}; its TTL check stops being passed, so it leaves watchers within ${control.ttlSeconds} s`,
      );
    }
  }

  /**
   * Registers the instance and resolves once a fresh `GET /v1/health/service/<name>?passing` shows
   * it. Re-registering over a service whose check is critical keeps the check critical (Consul keeps
   * an existing check's status), so an instance that does not show up gets its check passed.
   */
  private async putAndConfirm(control: RegistrationControl, signal: AbortSignal): Promise<number> {
    const { instance, ttlSeconds } = control;
    let sentAt = Date.now();
    this.sent.add(control);
    await this.api.registerService(
      registrationBody(instance, ttlSeconds, this.options.deregisterCriticalAfter),
    );
    const deadline = Date.now() + VISIBLE_DEADLINE_MS;
    const filter = `Service.ID == "${serviceIdOf(instance)}"`;
    for (let round = 0; ; round++) {
      const answer = await this.api.healthService(instance.service, { filter, signal, local: true });
      if (decodeHealth(answer.data, instance.service).some(([id]) => id === instance.id)) return sentAt;
      if (Date.now() >= deadline) {
        throw new BackendUnavailableError(
          'consul',
          `register ${this.label(control)}: the agent accepted it but /v1/health/service does not show it passing after ${VISIBLE_DEADLINE_MS} ms`,
        );
      }
      if (round === 0) {
        sentAt = Date.now();
        await this.api.passCheck(checkIdOf(instance), signal);
      }
      await sleep(Math.min(50 * 2 ** round, 500), signal);
    }
  }

  /**
   * Passes the TTL check every ttl/3. A pass the agent refuses because it does not know the check
   * (agent restarted: state lost) is a loss: `lost`, re-register with no retry limit, `restored`.
   * A pass that fails because the agent cannot be reached is retried (at most
   * {@link HEARTBEAT_RETRY_MAX_MS} apart) without calling it a loss, until the agent answers again;
   * if by then no pass reached it for longer than the TTL, the check has gone critical and every
   * watcher dropped the instance: that is reported as `lost` and, once passed again, `restored`.
   */
  private async heartbeat(held: Held, registeredAt: number): Promise<void> {
    const { control, stop } = held;
    const ttlMs = control.ttlSeconds * 1000;
    const intervalMs = ttlMs / 3;
    const retryBackoff = new Backoff({
      ...this.options.backoff,
      maxMs: Math.min(this.options.backoff.maxMs ?? 5000, intervalMs, HEARTBEAT_RETRY_MAX_MS),
    });
    const checkId = checkIdOf(control.instance);
    // When the last successful pass (or registration) was sent: the agent reset the TTL no earlier.
    let lastPass = registeredAt;
    let delay = intervalMs;
    let failures = 0;
    /** Reports the loss, registers again with no retry limit until visible, reports the recovery. */
    const recover = async (reason: string): Promise<boolean> => {
      control.lost(new BackendUnavailableError('consul', `${this.label(control)}: ${reason}`));
      try {
        lastPass = await retryForever(() => this.putAndConfirm(control, stop), {
          backoff: retryBackoff,
          signal: stop,
          onError: (e, n, wait) =>
            this.options.logger.warn('consul re-registration failed; retrying', {
              ...this.who(control),
              attempt: n + 1,
              retryInMs: Math.round(wait),
              error: message(e),
            }),
        });
      } catch (e) {
        if (stop.aborted || isAbort(e)) return false;
        throw e;
      }
      failures = 0;
      delay = intervalMs;
      retryBackoff.reset();
      control.restored();
      return true;
    };
    while (!stop.aborted) {
      try {
        await sleep(delay, stop);
      } catch {
        return;
      }
      const sentAt = Date.now();
      try {
        await this.api.passCheck(checkId, stop);
      } catch (error) {
        if (stop.aborted || isAbort(error)) return;
        if (isUnknownCheck(error)) {
          if (!(await recover('the agent no longer knows the registration (agent restarted: state lost)')))
            return;
          continue;
        }
        failures += 1;
        delay = retryBackoff.next();
        const log = failures === 1 ? this.options.logger.warn : this.options.logger.debug;
        log.call(this.options.logger, 'consul heartbeat failed; retrying', {
          ...this.who(control),
          failures,
          retryInMs: Math.round(delay),
          error: message(error),
        });
        continue;
      }
      // The agent handled this pass at some moment before now, the previous one after `lastPass`:
      // if more than the TTL may lie between them, the check expired (a stalled or paused agent
      // fires its TTL timers as soon as it runs again) and watchers dropped the instance.
      const silentMs = Date.now() - lastPass;
      lastPass = sentAt;
      delay = intervalMs;
      retryBackoff.reset();
      if (failures > 0)
        this.options.logger.info('consul heartbeat reaches the agent again', {
          ...this.who(control),
          failures,
        });
      failures = 0;
      if (silentMs > ttlMs) {
        const reason = `no heartbeat reached the agent for up to ${Math.round(silentMs)} ms (TTL ${control.ttlSeconds} s): its check went critical and watchers dropped it`;
        if (!(await recover(reason))) return;
      }
    }
  }

  // ---- discovery ----

  watch(service: string, feed: MirrorFeed<ServiceInstance>): () => void {
    const stop = new AbortController();
    const linked = linkSignals(stop.signal, this.lifetime.signal);
    void this.poll(service, feed, linked.signal).catch((error) =>
      this.options.logger.error('consul poller failed', { service, error: message(error) }),
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
   * (in blocking mode too, however often the service changes); after errors a jittered backoff is
   * added on top. After an outage, or when Consul's index went backwards (the agent restarted and
   * lost its state, even between two polls), an answer that removes instances is confirmed by the
   * next one before it is published (the last list is kept meanwhile, stale if there was an error):
   * an agent restart loses every registration until its owner re-registers (within one heartbeat
   * interval, shorter than the poll interval for TTLs up to 15 s), and watchers should not see that
   * as "all gone".
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
    let confirming = false;
    let known = new Set<string>();
    while (!signal.aborted) {
      try {
        await sleepUntil(lastStart + this.options.pollIntervalMs + extraMs, signal);
      } catch {
        return;
      }
      lastStart = Date.now();
      try {
        const block = blocking && !confirming && index > 0n;
        const answer = await this.api.healthService(
          service,
          block ? { index, waitMs: BLOCKING_WAIT_MS, signal } : { signal },
        );
        // Consul's index only grows; one that goes backwards (agent restarted, snapshot restored) starts over.
        index = answer.index === undefined || answer.index < index ? 0n : answer.index;
        const reset = answer.index !== undefined && answer.index < seen;
        if (answer.index !== undefined) seen = answer.index;
        const list = decodeHealth(answer.data, service);
        extraMs = 0;
        backoff.reset();
        if ((failing || reset) && !confirming && [...known].some((id) => !list.some(([k]) => k === id))) {
          confirming = true;
          this.options.logger.info(
            'consul answers again (or lost its state) and instances are missing; confirming with the next poll',
            {
              service,
            },
          );
          continue;
        }
        if (failing) this.options.logger.info('consul poller recovered', { service });
        failing = false;
        confirming = false;
        known = new Set(list.map(([id]) => id));
        feed.replace(list);
      } catch (error) {
        if (signal.aborted || isAbort(error)) return;
        if (!failing)
          this.options.logger.warn('consul poll failed; serving the last known list', {
            service,
            error: message(error),
          });
        failing = true;
        confirming = false;
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

  async close(): Promise<void> {
    this.lifetime.abort();
    await Promise.allSettled([...this.held.values()].map((h) => h.loop));
    this.held.clear();
  }

  /**
   * Test hook: behave like a process killed without closing. Heartbeats and pollers stop, nothing
   * is deregistered (later deregistrations and `close()` send nothing).
   */
  crash(): void {
    this.crashed = true;
    this.lifetime.abort();
  }

  private label(control: RegistrationControl): string {
    return `${control.instance.service}/${control.instance.id}`;
  }

  private who(control: RegistrationControl): Record<string, string> {
    return { service: control.instance.service, id: control.instance.id };
  }
}
