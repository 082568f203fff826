import {
  type BackoffOptions,
  ConfigError,
  type ConfigIssue,
  type DiscoveryOptions,
  isValidHost,
  type Logger,
  type SharedBackendOptions,
} from '@rollcall/core';
import {
  checkSharedOptions,
  describeValue,
  type LivenessOptions,
  SHARED_OPTION_NAMES,
} from '@rollcall/core/driver';

/** How discovery follows a service. */
export type ConsulWatchMode = 'poll' | 'blocking';

/**
 * Options of {@link createConsulBackend}. Every field is optional; the default is given beside it.
 * Bad options throw a `ConfigError` listing every bad field before anything is sent.
 */
export interface ConsulOptions extends SharedBackendOptions {
  /** Agent host name or IP address. Default `'127.0.0.1'`. */
  host?: string;
  /** Agent HTTP(S) port. Default `8500`. */
  port?: number;
  /** Talk HTTPS to the agent. Default `false`. */
  secure?: boolean;
  /**
   * ACL token, sent as the `X-Consul-Token` header on every request. Default: none (the agent's
   * default token applies). It never appears in an error message or a log line.
   */
  token?: string;
  /**
   * Milliseconds between two requests for one watched service (in `poll` mode: one
   * `GET /v1/health/service/<name>?passing` per interval; in `blocking` mode: the least time between
   * two blocking queries). Default `5000`; minimum `5000` (a lower value is a `ConfigError`).
   */
  pollIntervalMs?: number;
  /**
   * How long a registration's TTL check may stay critical before Consul removes the service (the
   * check's `DeregisterCriticalServiceAfter`): a Go duration string (`'90s'`, `'1m30s'`) or a number
   * of milliseconds. Default `'1m'`. Consul raises any value below 1 minute to 1 minute (and its
   * reaper runs every 30 s), so a crashed process's entry is removed from the catalog 1-1.5 min
   * after its check went critical; it leaves every `?passing` watcher at once when the check fails.
   */
  deregisterCriticalAfter?: string | number;
  /**
   * Datacenter for discovery reads, `listServices` and key/value calls (the `dc` query parameter).
   * Default: the agent's own datacenter. Registrations always go to the local agent, hence its datacenter.
   */
  datacenter?: string;
  /**
   * `'poll'`: one plain request per `pollIntervalMs` per watched service. `'blocking'`: Consul
   * blocking queries (`index` + `wait`), answered at once on a change, but still never more than one
   * request per `pollIntervalMs` per service. Default `'poll'`.
   */
  watchMode?: ConsulWatchMode;
  /** Deadline in ms of every non-blocking HTTP call (blocking queries get their wait time on top). Default `5000`. */
  callTimeoutMs?: number;
  /**
   * Most connections to the agent for ordinary calls (registrations, heartbeats, reads, locks);
   * more requests wait for a free one. Consul allows 200 per client address by default, shared by
   * every process on a host. Also how many registrations are written at once (each is a few
   * requests in a row). Default 16.
   */
  maxConnections?: number;
  /** Most connections for blocking queries (watches, kv watches, lock waits), a separate pool. Default 64. */
  maxBlockingConnections?: number;
  /**
   * Delays between retries after errors (pollers, key/value watches, re-registration). Default
   * `{ initialMs: 100, maxMs: 5000, multiplier: 2 }` with equal jitter. Heartbeat retries are
   * additionally capped at 1 s (and at the heartbeat interval) so that registrations come back quickly.
   */
  backoff?: BackoffOptions;
  /**
   * Key prefix of the lock and election keys (`<lockPrefix>locks/<name>/...`,
   * `<lockPrefix>elections/<name>/...`, `<lockPrefix>fencing-epoch`). Default `'rollcall/'`.
   * One or more segments of `[A-Za-z0-9._-]`, each followed by `/`.
   */
  lockPrefix?: string;
  /**
   * `LockDelay` of the sessions that hold locks: how long Consul refuses to hand a lock on after its
   * holder's session was invalidated (not after a release). A Go duration string or a number of ms,
   * from 0 to 60 s. Default `'0s'`: fencing tokens make a lock-delay unnecessary (see the README).
   */
  lockDelay?: string | number;
}

/** Options after validation, with defaults applied. */
export interface ResolvedConsulOptions {
  host: string;
  port: number;
  secure: boolean;
  token: string | undefined;
  pollIntervalMs: number;
  /** As sent to Consul (a Go duration string). */
  deregisterCriticalAfter: string;
  /** Milliseconds, for the warning below 1 minute. */
  deregisterCriticalAfterMs: number;
  datacenter: string | undefined;
  watchMode: ConsulWatchMode;
  callTimeoutMs: number;
  maxConnections: number;
  maxBlockingConnections: number;
  backoff: BackoffOptions;
  lockPrefix: string;
  /** As sent to Consul (a Go duration string). */
  lockDelay: string;
  discovery: DiscoveryOptions;
  logger: Logger;
  /** Options of the backend's liveness engines. */
  liveness: LivenessOptions;
}

/** The smallest `pollIntervalMs`: the contract allows at most one request per 5 s per watched service. */
export const MIN_POLL_INTERVAL_MS = 5000;
/** Consul raises `DeregisterCriticalServiceAfter` values below this to it. */
export const CONSUL_MIN_DEREGISTER_MS = 60_000;

/** Every option resolveConsulOptions accepts (anything else is a ConfigError naming it). */
export const CONSUL_OPTION_NAMES: readonly string[] = Object.freeze([
  'host',
  'port',
  'secure',
  'token',
  'pollIntervalMs',
  'deregisterCriticalAfter',
  'datacenter',
  'watchMode',
  'callTimeoutMs',
  'maxConnections',
  'maxBlockingConnections',
  'lockPrefix',
  'lockDelay',
  ...SHARED_OPTION_NAMES,
]);
const KNOWN = new Set(CONSUL_OPTION_NAMES);

const UNIT_NS: Record<string, number> = {
  ns: 1,
  us: 1e3,
  µs: 1e3,
  μs: 1e3,
  ms: 1e6,
  s: 1e9,
  m: 60e9,
  h: 3600e9,
};
const DURATION_RE =
  /^(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h)(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))*$/;
const PART_RE = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g;
// biome-ignore lint/suspicious/noControlCharactersInRegex: a token holding control characters cannot go in a header
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;
const DC_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const LOCK_PREFIX_RE = /^(?:[A-Za-z0-9._-]+\/)+$/;
/** Consul applies at most this lock-delay. */
export const CONSUL_MAX_LOCK_DELAY_MS = 60_000;

/** Parses a Go duration string (`'1m30s'`, `'250ms'`) into milliseconds, or `undefined` when it is not one. */
export function parseGoDuration(text: string): number | undefined {
  if (!DURATION_RE.test(text)) return undefined;
  let ns = 0;
  for (const [, amount, unit] of text.matchAll(PART_RE))
    ns += Number(amount) * (UNIT_NS[unit as string] as number);
  return ns / 1e6;
}

function integer(value: unknown, min: number, max: number): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

/**
 * Validates {@link ConsulOptions} and applies the defaults. Throws one `ConfigError` listing every
 * bad field. The token's value is never echoed.
 */
export function resolveOptions(input: ConsulOptions | undefined): ResolvedConsulOptions {
  const issues: ConfigIssue[] = [];
  const bad = (path: string, message: string) => issues.push({ path, message });
  if (input !== undefined && (typeof input !== 'object' || input === null || Array.isArray(input))) {
    throw new ConfigError([
      { path: '', message: `Consul options must be an object, got ${describeValue(input)}` },
    ]);
  }
  const o = (input ?? {}) as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!KNOWN.has(key) && o[key] !== undefined) bad(key, 'unknown option');
  }

  const host = o.host === undefined ? '127.0.0.1' : o.host;
  if (typeof host !== 'string' || !isValidHost(host))
    bad('host', `must be a host name or IP address (got ${describeValue(host)})`);
  const port = o.port === undefined ? 8500 : o.port;
  if (!integer(port, 1, 65_535))
    bad('port', `must be an integer from 1 to 65535 (got ${describeValue(port)})`);
  const secure = o.secure === undefined ? false : o.secure;
  if (typeof secure !== 'boolean') bad('secure', `must be a boolean (got ${describeValue(secure)})`);
  const token = o.token;
  if (token !== undefined) {
    // Never describe the value: it is a secret.
    if (typeof token !== 'string') bad('token', `must be a string (got ${typeof token})`);
    else if (token.length === 0)
      bad('token', 'must not be empty (leave it out to use the agent default token)');
    else if (CONTROL_RE.test(token) || token.trim() !== token)
      bad('token', 'must not contain control characters or surrounding spaces');
    // It goes in an HTTP header: anything outside printable ASCII would fail at the first request.
    else if (!/^[\x20-\x7e]+$/.test(token)) bad('token', 'must be printable ASCII');
  }
  const pollIntervalMs = o.pollIntervalMs === undefined ? 5000 : o.pollIntervalMs;
  if (typeof pollIntervalMs !== 'number' || !Number.isInteger(pollIntervalMs)) {
    bad(
      'pollIntervalMs',
      `must be an integer number of milliseconds, at least ${MIN_POLL_INTERVAL_MS} (got ${describeValue(pollIntervalMs)})`,
    );
  } else if (pollIntervalMs < MIN_POLL_INTERVAL_MS) {
    bad(
      'pollIntervalMs',
      `must be at least ${MIN_POLL_INTERVAL_MS} ms: Consul is asked at most once per 5 s per watched service (got ${pollIntervalMs})`,
    );
  } else if (pollIntervalMs > 3_600_000) {
    bad('pollIntervalMs', `must be at most 3600000 (one hour) (got ${pollIntervalMs})`);
  }

  let deregisterCriticalAfter = '1m';
  let deregisterCriticalAfterMs = 60_000;
  const dca = o.deregisterCriticalAfter;
  if (dca !== undefined) {
    if (typeof dca === 'string') {
      const ms = parseGoDuration(dca);
      if (ms === undefined || ms <= 0)
        bad(
          'deregisterCriticalAfter',
          `must be a positive Go duration such as '90s' or '1m30s' (got ${describeValue(dca)})`,
        );
      else {
        deregisterCriticalAfter = dca;
        deregisterCriticalAfterMs = ms;
      }
    } else if (typeof dca === 'number' && Number.isInteger(dca) && dca > 0) {
      deregisterCriticalAfter = `${dca}ms`;
      deregisterCriticalAfterMs = dca;
    } else {
      bad(
        'deregisterCriticalAfter',
        `must be a Go duration string or a positive integer number of milliseconds (got ${describeValue(dca)})`,
      );
    }
  }

  const datacenter = o.datacenter;
  if (datacenter !== undefined && (typeof datacenter !== 'string' || !DC_RE.test(datacenter))) {
    bad('datacenter', `must be 1-64 characters of [A-Za-z0-9_.-] (got ${describeValue(datacenter)})`);
  }
  const watchMode = o.watchMode === undefined ? 'poll' : o.watchMode;
  if (watchMode !== 'poll' && watchMode !== 'blocking')
    bad('watchMode', `must be 'poll' or 'blocking' (got ${describeValue(watchMode)})`);
  const maxConnections = o.maxConnections === undefined ? 16 : o.maxConnections;
  if (!integer(maxConnections, 1, 1000))
    bad('maxConnections', `must be an integer from 1 to 1000 (got ${describeValue(maxConnections)})`);
  const maxBlockingConnections = o.maxBlockingConnections === undefined ? 64 : o.maxBlockingConnections;
  if (!integer(maxBlockingConnections, 1, 1000))
    bad(
      'maxBlockingConnections',
      `must be an integer from 1 to 1000 (got ${describeValue(maxBlockingConnections)})`,
    );
  const callTimeoutMs = o.callTimeoutMs === undefined ? 5000 : o.callTimeoutMs;
  if (!integer(callTimeoutMs, 100, 600_000))
    bad('callTimeoutMs', `must be an integer from 100 to 600000 (got ${describeValue(callTimeoutMs)})`);
  const shared = checkSharedOptions(o, bad, 'consul');
  const lockPrefix = o.lockPrefix === undefined ? 'rollcall/' : o.lockPrefix;
  if (
    typeof lockPrefix !== 'string' ||
    lockPrefix.length > 256 ||
    !LOCK_PREFIX_RE.test(lockPrefix) ||
    lockPrefix.split('/').some((segment) => segment === '.' || segment === '..')
  ) {
    bad(
      'lockPrefix',
      `must be one or more segments of [A-Za-z0-9._-] each followed by '/', such as 'rollcall/' (got ${describeValue(lockPrefix)})`,
    );
  }
  let lockDelay = '0s';
  const ld = o.lockDelay;
  if (ld !== undefined) {
    const ms =
      typeof ld === 'string'
        ? parseGoDuration(ld)
        : typeof ld === 'number' && Number.isInteger(ld)
          ? ld
          : undefined;
    if (ms === undefined || ms < 0 || ms > CONSUL_MAX_LOCK_DELAY_MS)
      bad(
        'lockDelay',
        `must be a Go duration string or an integer number of ms from 0 to 60 s (got ${describeValue(ld)})`,
      );
    else lockDelay = typeof ld === 'string' ? ld : `${ld}ms`;
  }
  if (issues.length > 0) throw new ConfigError(issues);

  return {
    host: host as string,
    port: port as number,
    secure: secure as boolean,
    token: token as string | undefined,
    pollIntervalMs: pollIntervalMs as number,
    deregisterCriticalAfter,
    deregisterCriticalAfterMs,
    datacenter: datacenter as string | undefined,
    watchMode: watchMode as ConsulWatchMode,
    callTimeoutMs: callTimeoutMs as number,
    maxConnections: maxConnections as number,
    maxBlockingConnections: maxBlockingConnections as number,
    backoff: shared.backoff,
    lockPrefix: lockPrefix as string,
    lockDelay,
    discovery: shared.discovery,
    liveness: shared.liveness,
    logger: shared.logger,
  };
}
