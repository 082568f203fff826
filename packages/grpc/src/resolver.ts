import { type ChannelOptions, experimental, type ServiceConfig, status as Status } from '@grpc/grpc-js';
import {
  ConfigError,
  type Logger,
  type ServiceDiscovery,
  type ServiceInstance,
  silentLogger,
  ValidationError,
} from '@rollcall/core';
import { type Resolution, ServiceFeed } from './feed.js';
import {
  DEFAULT_SCHEME,
  expectedForm,
  InvalidTargetError,
  serviceOfTarget,
  validateScheme,
} from './target.js';
import { registerWeightedPolicy, WEIGHTED_POLICY, WEIGHTS_ATTRIBUTE } from './weighted.js';

/** Policies the resolver can put in the service config it hands out. */
export type BalancingPolicy = 'round_robin' | typeof WEIGHTED_POLICY;

/** Options of {@link registerResolver}. */
export interface ResolverOptions {
  /** URI scheme the resolver answers for: targets are `<scheme>:///<service>`. Default `'rollcall'`. */
  scheme?: string;
  /**
   * Balancing policy of the service config the resolver hands to channels that set no
   * `grpc.service_config` of their own: `'round_robin'` or `'rollcall_weighted'` (calls in
   * proportion to each instance's `weight`). Default `'round_robin'`.
   */
  policy?: BalancingPolicy;
  /**
   * Shortest time between two answers to one channel's re-resolution requests (its load balancer
   * asks again whenever a connection fails). Registry changes are never delayed by it. Default 1000 ms.
   */
  minReresolutionIntervalMs?: number;
  /** Where watch failures and outages are reported. Default silent. */
  logger?: Logger;
}

/** One watched service, as {@link ResolverRegistration.stats} reports it. */
export interface WatchedService {
  readonly service: string;
  /** Channels (not IDLE) following this service. They share one discovery watch. */
  readonly channels: number;
  /** Instances in the list the channels use. */
  readonly instances: number;
  /** True while the registry is unreachable and channels use the last known list. */
  readonly stale: boolean;
}

/** Counters of a {@link ResolverRegistration}, for tests and diagnostics. */
export interface ResolverStats {
  /** Services with an open discovery watch: one per service, however many channels target it. */
  readonly services: readonly WatchedService[];
  /** Results (address lists or errors) handed to channels so far. */
  readonly resolutions: number;
  /** Re-resolution requests received from channels' load balancers so far. */
  readonly reresolutionRequests: number;
}

/** What {@link registerResolver} returns: disposing it unregisters the scheme and ends its watches. */
export interface ResolverRegistration extends Disposable {
  readonly scheme: string;
  /** A snapshot of the registration's counters. */
  stats(): ResolverStats;
  /** Same as `[Symbol.dispose]()`. Idempotent. */
  close(): void;
}

const DEFAULT_RERESOLUTION_INTERVAL_MS = 1000;
const active = new Map<string, Hub>();

/** Instances as grpc-js endpoints (one per distinct host:port; duplicate registrations add their weights). */
function toEndpoints(instances: readonly ServiceInstance[]): {
  endpoints: experimental.Endpoint[];
  weights: Map<string, number>;
} {
  const endpoints: experimental.Endpoint[] = [];
  const weights = new Map<string, number>();
  for (const instance of instances) {
    const endpoint = { addresses: [{ host: instance.host, port: instance.port }] };
    const key = experimental.endpointToString(endpoint);
    const known = weights.get(key);
    if (known === undefined) endpoints.push(endpoint);
    weights.set(key, (known ?? 0) + (instance.weight ?? 1));
  }
  return { endpoints, weights };
}

/** The per-registration state every resolver of the scheme shares: options, feeds, counters. */
class Hub {
  readonly feeds = new Map<string, ServiceFeed>();
  disposed = false;
  resolutions = 0;
  reresolutionRequests = 0;
  readonly serviceConfig: ServiceConfig;

  constructor(
    readonly discovery: ServiceDiscovery,
    readonly scheme: string,
    readonly policy: BalancingPolicy,
    readonly minIntervalMs: number,
    readonly logger: Logger,
  ) {
    this.serviceConfig = { loadBalancingConfig: [{ [policy]: {} }], methodConfig: [] };
  }

  feed(service: string): ServiceFeed {
    let feed = this.feeds.get(service);
    if (!feed) {
      feed = new ServiceFeed(this.discovery, service, this.logger, (idle) => {
        if (this.feeds.get(service) === idle) this.feeds.delete(service);
      });
      this.feeds.set(service, feed);
    }
    return feed;
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const feed of [...this.feeds.values()]) feed.close();
    if (active.get(this.scheme) === this) active.delete(this.scheme);
  }
}

type Listener = experimental.ResolverListener;

type ResolverConstructor = Parameters<typeof experimental.registerResolver>[1];

/** The grpc-js resolver class for one registration (grpc-js registers classes, not instances). */
function resolverClass(hub: Hub): ResolverConstructor {
  class RollcallResolver implements experimental.Resolver {
    private readonly target: string | InvalidTargetError;
    /** `null`: the channel's own `grpc.service_config` (or grpc-js's default) applies. */
    private readonly serviceConfig: experimental.StatusOr<ServiceConfig> | null;
    private unsubscribe: (() => void) | undefined;
    private feed: ServiceFeed | undefined;
    private immediate: NodeJS.Immediate | undefined;
    private timer: NodeJS.Timeout | undefined;
    private lastReportAt = Number.NEGATIVE_INFINITY;

    constructor(
      target: experimental.GrpcUri,
      private readonly listener: Listener,
      options: ChannelOptions,
    ) {
      this.target = serviceOfTarget(target, hub.scheme);
      const ownConfig = options['grpc.service_config'] || options['grpc.service_config_disable_resolution'];
      this.serviceConfig = ownConfig ? null : experimental.statusOrFromValue(hub.serviceConfig);
    }

    static getDefaultAuthority(target: experimental.GrpcUri): string {
      // TLS checks the server certificate against this name (unless grpc.ssl_target_name_override).
      const service = serviceOfTarget(target, hub.scheme);
      return typeof service === 'string' ? service : target.path.replace(/^\/+/, '') || hub.scheme;
    }

    updateResolution(): void {
      if (typeof this.target !== 'string' || hub.disposed) {
        this.schedule(false);
        return;
      }
      if (!this.feed) {
        // First resolution, or waking up from IDLE: follow the service's shared watch.
        const feed = hub.feed(this.target);
        this.feed = feed;
        this.unsubscribe = feed.subscribe(() => this.schedule(true));
        if (feed.latest) this.schedule(true);
        return;
      }
      // The load balancer asks again (a connection failed): the watch already pushes every change,
      // so answer with what it knows, at most once per interval, and revive the watch if it ended.
      hub.reresolutionRequests += 1;
      this.feed.ensureWatching();
      this.schedule(false);
    }

    destroy(): void {
      this.unsubscribe?.();
      this.unsubscribe = undefined;
      this.feed = undefined;
      if (this.immediate) clearImmediate(this.immediate);
      if (this.timer) clearTimeout(this.timer);
      this.immediate = undefined;
      this.timer = undefined;
    }

    /** Reports on a later tick (never inside updateResolution); `now` skips the rate limit. */
    private schedule(now: boolean): void {
      if (this.immediate) return;
      const wait = now ? 0 : this.lastReportAt + hub.minIntervalMs - performance.now();
      if (wait > 0) {
        this.timer ??= setTimeout(() => {
          this.timer = undefined;
          this.report();
        }, wait).unref();
        return;
      }
      if (this.timer) clearTimeout(this.timer);
      this.timer = undefined;
      this.immediate = setImmediate(() => {
        this.immediate = undefined;
        this.report();
      });
    }

    private report(): void {
      const resolution = this.resolution();
      if (!resolution) return;
      this.lastReportAt = performance.now();
      hub.resolutions += 1;
      if (!resolution.ok) {
        this.listener(
          experimental.statusOrFromError({ code: Status.UNAVAILABLE, details: resolution.reason }),
          {},
          this.serviceConfig,
          resolution.reason,
        );
        return;
      }
      const { endpoints, weights } = toEndpoints(resolution.instances);
      const service = this.target as string;
      if (endpoints.length === 0) {
        // The empty list drops every connection. round_robin then settles in IDLE, where each call
        // would wait for a new resolution; the error that follows at once leaves it in
        // TRANSIENT_FAILURE instead, so calls fail now with this status.
        const none = `rollcall: no instance of '${service}' is registered (${hub.scheme}:///${service})`;
        this.listener(experimental.statusOrFromValue([]), {}, this.serviceConfig, none);
        this.listener(
          experimental.statusOrFromError({ code: Status.UNAVAILABLE, details: none }),
          {},
          this.serviceConfig,
          none,
        );
        return;
      }
      const note = resolution.stale
        ? `rollcall: the registry is unreachable; using the last known instances of '${service}'`
        : '';
      this.listener(
        experimental.statusOrFromValue(endpoints),
        { [WEIGHTS_ATTRIBUTE]: weights },
        this.serviceConfig,
        note,
      );
    }

    private resolution(): Resolution | undefined {
      if (typeof this.target !== 'string') return { ok: false, reason: this.target.message };
      if (hub.disposed && !this.feed?.latest)
        return {
          ok: false,
          reason: `rollcall: the resolver for '${hub.scheme}:' was disposed; register it again to resolve ${expectedForm(hub.scheme)}`,
        };
      return this.feed?.latest;
    }
  }
  return RollcallResolver;
}

function checkGrpcVersion(): void {
  if (
    typeof experimental?.statusOrFromValue !== 'function' ||
    typeof experimental.registerResolver !== 'function' ||
    typeof experimental.LeafLoadBalancer !== 'function'
  ) {
    throw new ConfigError(
      '@rollcall/grpc needs @grpc/grpc-js 1.14 (its resolver listener and StatusOr helpers); the installed version lacks them',
    );
  }
}

function validateOptions(options: unknown): Required<ResolverOptions> {
  if (typeof options !== 'object' || options === null)
    throw new ValidationError('options', 'must be an object');
  const o = options as ResolverOptions;
  const scheme = validateScheme(o.scheme ?? DEFAULT_SCHEME);
  const policy = o.policy ?? 'round_robin';
  if (policy !== 'round_robin' && policy !== WEIGHTED_POLICY)
    throw new ValidationError(
      'options.policy',
      `must be 'round_robin' or '${WEIGHTED_POLICY}' (got ${JSON.stringify(policy)})`,
    );
  const interval = o.minReresolutionIntervalMs ?? DEFAULT_RERESOLUTION_INTERVAL_MS;
  if (typeof interval !== 'number' || !Number.isFinite(interval) || interval < 0 || interval > 60_000)
    throw new ValidationError(
      'options.minReresolutionIntervalMs',
      `must be a number of ms from 0 to 60000 (got ${JSON.stringify(interval)})`,
    );
  return { scheme, policy, minReresolutionIntervalMs: interval, logger: o.logger ?? silentLogger };
}

/**
 * Makes `@grpc/grpc-js` channels with the target `rollcall:///<service>` send their calls to that
 * service's registered instances, following every change of the list (`round_robin` by default).
 * Channels of one service share one discovery watch; a channel that goes IDLE releases it. A
 * stale list (registry outage) keeps the last known addresses; an empty list fails calls at once
 * with `UNAVAILABLE`; a malformed target fails calls with a status naming `rollcall:///<service>`.
 *
 * grpc-js cannot unregister a scheme: after disposal, channels already resolved keep their last
 * addresses (without updates), and new resolutions of the scheme fail with `UNAVAILABLE` until
 * `registerResolver` is called again. One live registration per scheme at a time.
 *
 * @throws ValidationError for a bad `discovery` or option, before anything is registered.
 * @throws ConfigError when the installed `@grpc/grpc-js` lacks the 1.14 resolver API.
 */
export function registerResolver(
  discovery: ServiceDiscovery,
  options: ResolverOptions = {},
): ResolverRegistration {
  if (typeof discovery?.watch !== 'function')
    throw new ValidationError('discovery', 'must be a ServiceDiscovery (with watch())');
  const o = validateOptions(options);
  checkGrpcVersion();
  if (active.has(o.scheme))
    throw new ValidationError(
      'options.scheme',
      `a resolver for '${o.scheme}' is already registered; dispose it first`,
    );
  const hub = new Hub(discovery, o.scheme, o.policy, o.minReresolutionIntervalMs, o.logger);
  registerWeightedPolicy();
  experimental.registerResolver(o.scheme, resolverClass(hub));
  active.set(o.scheme, hub);
  const close = () => hub.dispose();
  return {
    scheme: o.scheme,
    stats: () => ({
      services: [...hub.feeds.values()]
        .filter((f) => f.watching)
        .map((f) => ({
          service: f.service,
          channels: f.listenerCount,
          instances: f.latest?.ok ? f.latest.instances.length : 0,
          stale: f.isStale,
        })),
      resolutions: hub.resolutions,
      reresolutionRequests: hub.reresolutionRequests,
    }),
    close,
    [Symbol.dispose]: close,
  };
}
