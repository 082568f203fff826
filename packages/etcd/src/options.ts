import { readFileSync } from 'node:fs';
import {
  type BackoffOptions,
  ConfigError,
  type ConfigIssue,
  type DiscoveryOptions,
  type Logger,
  type SharedBackendOptions,
} from '@rollcall/core';
import {
  checkSharedOptions,
  describeValue,
  type LivenessOptions,
  SHARED_OPTION_NAMES,
} from '@rollcall/core/driver';

/** Username and password for etcd's built-in authentication. The password never appears in errors or logs. */
export interface EtcdAuthOptions {
  username: string;
  password: string;
}

/** TLS material, as paths of PEM files read once when the backend is created. */
export interface EtcdTlsOptions {
  /** CA certificate(s) that signed the etcd server certificate. Default: the system's trusted roots. */
  ca?: string;
  /** Client certificate, for servers started with `--client-cert-auth`. Needs `key`. Default: none. */
  cert?: string;
  /** Private key of `cert`. Default: none. */
  key?: string;
}

/** Options of {@link createEtcdBackend}. Every field is optional; the defaults suit a local etcd. */
export interface EtcdOptions extends SharedBackendOptions {
  /** etcd client URLs, `http://host:port` or `https://host:port` (all one scheme). Default `['http://127.0.0.1:2379']`. */
  endpoints?: string[];
  /** Prefix of every discovery key: an instance is `<namespace>services/<service>/<id>`. Must end with `/`. Default `'/rollcall/'`. */
  namespace?: string;
  /** Prefix of key/value keys: key `configs/app/x` is etcd key `<kvPrefix>configs/app/x`. Empty or ending with `/`. Default `'/'`. */
  kvPrefix?: string;
  /** Username/password authentication. Default: none. */
  auth?: EtcdAuthOptions;
  /** TLS files. Needs `https://` endpoints. Default: none (plain TCP, or system roots for `https://` endpoints). */
  tls?: EtcdTlsOptions;
  /** Deadline in ms of the password-to-token exchange and cap on the delay between reconnection attempts. Default 5000. */
  dialTimeoutMs?: number;
  /** Deadline in ms of every unary call (get, put, delete, grant, revoke, ...); never applied to watch or keepalive streams. Default 5000. */
  callTimeoutMs?: number;
  /**
   * Interval in ms of gRPC keepalive pings on open streams; a ping unanswered within
   * min(keepaliveMs, callTimeoutMs) drops the connection, so a frozen or partitioned server turns
   * watches `stale` within about twice this. Keep it >= the server's `--grpc-keepalive-min-time`
   * (etcd's default is 5 s). Default 5000.
   */
  keepaliveMs?: number;
  /** Delays between re-registration and watch re-sync attempts (capped exponential, no retry limit). Default core's `Backoff` (100 ms doubling to 5000 ms). */
  backoff?: BackoffOptions;
}

/** {@link EtcdOptions} with defaults applied and files read. */
export interface ResolvedEtcdOptions {
  endpoints: string[];
  namespace: string;
  kvPrefix: string;
  auth: EtcdAuthOptions | undefined;
  tls: { ca?: Buffer; cert?: Buffer; key?: Buffer } | undefined;
  dialTimeoutMs: number;
  callTimeoutMs: number;
  keepaliveMs: number;
  backoff: BackoffOptions;
  logger: Logger;
  discovery: DiscoveryOptions;
  /** Options of the backend's liveness engine(s). */
  liveness: LivenessOptions;
}

/**
 * The etcd key prefixes Rollcall owns under `namespace`: the registry (`services/`), the lock
 * queues (`locks/`) and the election queues (`elections/`). The key/value API can never reach them.
 */
export function ownSubtrees(namespace: string): string[] {
  return [`${namespace}services/`, `${namespace}locks/`, `${namespace}elections/`];
}

/** Default values of {@link EtcdOptions}. */
export const ETCD_DEFAULTS = Object.freeze({
  endpoints: Object.freeze(['http://127.0.0.1:2379']) as readonly string[],
  namespace: '/rollcall/',
  kvPrefix: '/',
  dialTimeoutMs: 5000,
  callTimeoutMs: 5000,
  keepaliveMs: 5000,
});

/** Every option resolveEtcdOptions accepts (anything else is a ConfigError naming it). */
export const ETCD_OPTION_NAMES: readonly string[] = Object.freeze([
  'endpoints',
  'namespace',
  'kvPrefix',
  'auth',
  'tls',
  'dialTimeoutMs',
  'callTimeoutMs',
  'keepaliveMs',
  ...SHARED_OPTION_NAMES,
]);
const KNOWN = new Set(ETCD_OPTION_NAMES);

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point
const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f]/;
const MAX_MS = 3_600_000;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Checks every option and applies the defaults. Throws one {@link ConfigError} listing every bad
 * field; messages never echo the password or file contents.
 */
export function resolveEtcdOptions(input: EtcdOptions | undefined): ResolvedEtcdOptions {
  const issues: ConfigIssue[] = [];
  const bad = (path: string, message: string) => issues.push({ path, message });
  if (input !== undefined && !isObject(input))
    throw new ConfigError([
      { path: '', message: `etcd options must be an object, got ${describeValue(input)}` },
    ]);
  const o: Record<string, unknown> = input ?? {};
  for (const key of Object.keys(o)) if (!KNOWN.has(key) && o[key] !== undefined) bad(key, 'unknown option');

  let endpoints = [...ETCD_DEFAULTS.endpoints];
  if (o.endpoints !== undefined) {
    if (!Array.isArray(o.endpoints) || o.endpoints.length === 0)
      bad('endpoints', 'must be a non-empty array of http(s)://host:port URLs');
    else {
      endpoints = [];
      o.endpoints.forEach((e: unknown, i) => {
        const url = typeof e === 'string' ? parseUrl(e) : undefined;
        if (!url)
          bad(
            `endpoints[${i}]`,
            `must be an http://host:port or https://host:port URL, got ${describeValue(e)}`,
          );
        else endpoints.push(url);
      });
      const schemes = new Set(endpoints.map((e) => e.split(':')[0]));
      if (schemes.size > 1) bad('endpoints', 'must all use the same scheme (all http:// or all https://)');
    }
  }

  const namespace = pathOption(o, 'namespace', ETCD_DEFAULTS.namespace, false, bad);
  const kvPrefix = pathOption(o, 'kvPrefix', ETCD_DEFAULTS.kvPrefix, true, bad);
  const inside = ownSubtrees(namespace).find((subtree) => kvPrefix.startsWith(subtree));
  if (inside)
    bad(
      'kvPrefix',
      `must not lie inside Rollcall's own subtree ${describeValue(inside)} (registry, locks, elections): configuration keys would overwrite them`,
    );

  let auth: EtcdAuthOptions | undefined;
  if (o.auth !== undefined) {
    if (!isObject(o.auth)) bad('auth', 'must be an object { username, password }');
    else {
      const { username, password, ...rest } = o.auth;
      for (const key of Object.keys(rest)) bad(`auth.${key}`, 'unknown option');
      if (typeof username !== 'string' || username.length === 0 || CONTROL_RE.test(username))
        bad('auth.username', 'must be a non-empty string');
      // Never describe the password: not even its type or length.
      if (typeof password !== 'string' || password.length === 0)
        bad('auth.password', 'must be a non-empty string');
      if (typeof username === 'string' && typeof password === 'string') auth = { username, password };
    }
  }

  let tls: ResolvedEtcdOptions['tls'];
  if (o.tls !== undefined) {
    if (!isObject(o.tls)) bad('tls', 'must be an object { ca?, cert?, key? } of PEM file paths');
    else {
      const { ca, cert, key, ...rest } = o.tls;
      for (const k of Object.keys(rest)) bad(`tls.${k}`, 'unknown option');
      tls = {};
      for (const [name, path] of [
        ['ca', ca],
        ['cert', cert],
        ['key', key],
      ] as const) {
        if (path === undefined) continue;
        if (typeof path !== 'string' || path.length === 0) {
          bad(`tls.${name}`, `must be the path of a PEM file, got ${describeValue(path)}`);
          continue;
        }
        try {
          tls[name] = readFileSync(path);
        } catch (error) {
          bad(
            `tls.${name}`,
            `cannot read ${describeValue(path)}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`,
          );
        }
      }
      if ((cert === undefined) !== (key === undefined))
        bad(cert === undefined ? 'tls.cert' : 'tls.key', 'tls.cert and tls.key must be given together');
      if (endpoints.some((e) => e.startsWith('http://')))
        bad('endpoints', 'must use https:// when tls is set');
    }
  }

  const dialTimeoutMs = msOption(o, 'dialTimeoutMs', ETCD_DEFAULTS.dialTimeoutMs, bad);
  const callTimeoutMs = msOption(o, 'callTimeoutMs', ETCD_DEFAULTS.callTimeoutMs, bad);
  const keepaliveMs = msOption(o, 'keepaliveMs', ETCD_DEFAULTS.keepaliveMs, bad, 1000);
  const shared = checkSharedOptions(o, bad, 'etcd');
  if (issues.length > 0) throw new ConfigError(issues);

  return {
    endpoints,
    namespace,
    kvPrefix,
    auth,
    tls,
    dialTimeoutMs,
    callTimeoutMs,
    keepaliveMs,
    backoff: shared.backoff,
    logger: shared.logger,
    discovery: shared.discovery,
    liveness: shared.liveness,
  };
}

function parseUrl(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  if (!url.hostname || url.username || url.password || url.search || url.hash) return undefined;
  if (url.pathname !== '/' && url.pathname !== '') return undefined;
  const port = url.port || (url.protocol === 'https:' ? '443' : '2379');
  return `${url.protocol}//${url.hostname}:${port}`;
}

function pathOption(
  o: Record<string, unknown>,
  name: string,
  fallback: string,
  allowEmpty: boolean,
  bad: (path: string, message: string) => void,
): string {
  const value = o[name];
  if (value === undefined) return fallback;
  const rule = allowEmpty ? "must be empty or end with '/'" : "must end with '/'";
  if (typeof value !== 'string') {
    bad(name, `${rule}, got ${describeValue(value)}`);
    return fallback;
  }
  if (value === '' && allowEmpty) return value;
  if (!value.endsWith('/')) bad(name, `${rule}, got ${describeValue(value)}`);
  else if (CONTROL_RE.test(value) || /\p{Cs}/u.test(value))
    bad(name, 'must not contain control characters or lone surrogates');
  else if (value.includes('//')) bad(name, `must not contain '//', got ${describeValue(value)}`);
  else if (value.split('/').some((s) => s === '.' || s === '..'))
    bad(name, `must not contain '.' or '..' segments, got ${describeValue(value)}`);
  return value;
}

function msOption(
  o: Record<string, unknown>,
  name: string,
  fallback: number,
  bad: (path: string, message: string) => void,
  min = 1,
  max = MAX_MS,
): number {
  const value = o[name];
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    bad(name, `must be an integer number of milliseconds from ${min} to ${max}, got ${describeValue(value)}`);
    return fallback;
  }
  return value;
}
