import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, type ConfigIssue, FORBIDDEN_KEYS } from '@rollcall/core';
import { describeValue } from '@rollcall/core/driver';
import { MIGRATION_PHASES } from '@rollcall/migration';
import type { ZodError } from 'zod';
import { availableBackends, validateBackendSections } from './backends.js';
import { BACKEND_NAMES, configSchemas, type RollcallConfig } from './config-schema.js';
import { jsonErrorOffset, positionOf } from './json-position.js';

export {
  BACKEND_NAMES,
  type BackendName,
  type ConsulSection,
  configFileJsonSchema,
  type EtcdSection,
  type RollcallConfig,
} from './config-schema.js';

/** The phases of a Consul-to-etcd migration (from `@rollcall/migration`). */
export { MIGRATION_PHASES };

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Section of the file to use (a non-empty string). Default `ROLLCALL_ENV`, else `NODE_ENV`, else `development` (empty variables count as unset). */
  environment?: string;
  /** Path of the configuration file (a non-empty string). Default `rollcall.config.json` in the working directory (optional there; required when given). */
  file?: string;
  /** Environment variables: an object of strings. Default `process.env`. */
  env?: Record<string, string | undefined>;
}

/** Environments in which, with nothing configured, the in-memory backend is used. */
const MEMORY_BY_DEFAULT = new Set(['development', 'test']);

function issuesOf(error: ZodError, prefix = ''): ConfigIssue[] {
  return error.issues.map((issue) => ({
    path: [prefix, ...issue.path.map(String)].filter(Boolean).join('.'),
    message: issue.message,
  }));
}

/** An unknown backend name lists the backends this installation can create (not every name the schema knows). */
function unknownBackend(issue: ConfigIssue, value: unknown): ConfigIssue {
  if (issue.path !== 'backend' || typeof value !== 'object' || value === null) return issue;
  const name = (value as { backend?: unknown }).backend;
  if (name === undefined || (BACKEND_NAMES as readonly unknown[]).includes(name)) return issue;
  return {
    path: 'backend',
    message: `unknown backend ${describeValue(name)}; valid backends: ${availableBackends().join(', ')}`,
  };
}

/** Parses `value` as a config object, throwing {@link ConfigError} with every bad field. */
export function parseConfig(value: unknown): RollcallConfig {
  const result = configSchemas().config.safeParse(value);
  const issues = result.success ? [] : issuesOf(result.error).map((i) => unknownBackend(i, value));
  if (typeof value === 'object' && value !== null)
    issues.push(...validateBackendSections(value as Record<string, unknown>));
  if (!result.success || issues.length > 0) throw new ConfigError(issues);
  return result.data as RollcallConfig;
}

function setIn(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path.at(-1)!] = value;
}

/**
 * Splits `ETCD_ENDPOINTS`. An endpoint without a scheme (`localhost:2379`, as etcdctl takes it)
 * gets `https://` when a TLS file variable is set, else `http://`; URLs are kept as given.
 */
function etcdEndpoints(value: string, env: Record<string, string | undefined>): string[] {
  const tls = Boolean(env.ETCD_CA_FILE || env.ETCD_CERT_FILE || env.ETCD_KEY_FILE);
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((e) => (/^[a-z][a-z0-9+.-]*:\/\//i.test(e) ? e : `${tls ? 'https' : 'http'}://${e}`));
}

/** Environment variables read by {@link loadConfig}, with the config path each sets. */
export const ENV_VARIABLES: Record<
  string,
  {
    path: string[];
    /** Turns the variable's text into the config value; `env` is every variable (some depend on others). */
    parse?: (v: string, env: Record<string, string | undefined>) => unknown;
    description: string;
  }
> = {
  ROLLCALL_BACKEND: { path: ['backend'], description: 'backend name: memory, etcd, consul or migrating' },
  ETCD_ENDPOINTS: {
    path: ['etcd', 'endpoints'],
    parse: etcdEndpoints,
    description:
      'comma-separated etcd endpoints: URLs, or host:port as etcdctl takes them (https:// when ETCD_CA_FILE, ETCD_CERT_FILE or ETCD_KEY_FILE is set, else http://)',
  },
  ETCD_NAMESPACE: { path: ['etcd', 'namespace'], description: 'key namespace, e.g. /rollcall/' },
  ETCD_USERNAME: { path: ['etcd', 'auth', 'username'], description: 'etcd user' },
  ETCD_PASSWORD: { path: ['etcd', 'auth', 'password'], description: 'etcd password (never logged)' },
  ETCD_CA_FILE: {
    path: ['etcd', 'tls', 'ca'],
    description: 'PEM file of the CA that signed the etcd server certificate',
  },
  ETCD_CERT_FILE: { path: ['etcd', 'tls', 'cert'], description: 'PEM client certificate file' },
  ETCD_KEY_FILE: { path: ['etcd', 'tls', 'key'], description: 'PEM client key file' },
  CONSUL_HTTP_TOKEN: { path: ['consul', 'token'], description: 'Consul ACL token (never logged)' },
  CONSUL_HTTP_SSL: {
    path: ['consul', 'secure'],
    parse: (v) => v === 'true' || v === '1',
    description: 'true to use HTTPS',
  },
  ROLLCALL_CONSUL_POLL_INTERVAL_MS: {
    path: ['consul', 'pollIntervalMs'],
    parse: Number,
    description: 'Consul poll interval in ms (>= 5000)',
  },
  ROLLCALL_MIGRATION_PHASE: {
    path: ['migrating', 'phase'],
    description: `the phase to start in when the phase key is not set: ${MIGRATION_PHASES.join(', ')}`,
  },
};

/** Splits `CONSUL_HTTP_ADDR` (`host:port`, `http://host:port` or `https://host:port`) into options. */
function consulAddress(value: string): Record<string, unknown> {
  const match = /^(?:(https?):\/\/)?(\[[^\]]+\]|[^:/]+)(?::(\d+))?\/?$/.exec(value.trim());
  if (!match)
    throw new ConfigError([
      { path: 'CONSUL_HTTP_ADDR', message: `must be host:port or http(s)://host:port` },
    ]);
  const [, scheme, host, port] = match;
  return {
    host: host!.replace(/^\[|\]$/g, ''),
    ...(port ? { port: Number(port) } : {}),
    ...(scheme ? { secure: scheme === 'https' } : {}),
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks the options of {@link loadConfig} themselves, listing every bad one. */
function checkLoadOptions(options: unknown): {
  environment: string | undefined;
  file: string | undefined;
  env: Record<string, string | undefined>;
} {
  if (!isObject(options))
    throw new ConfigError([
      { path: '', message: `loadConfig options must be an object, got ${describeValue(options)}` },
    ]);
  const issues: ConfigIssue[] = [];
  const { environment, file } = options;
  if (environment !== undefined && (typeof environment !== 'string' || environment.length === 0))
    issues.push({
      path: 'environment',
      message: `must be a non-empty string, got ${describeValue(environment)}`,
    });
  if (file !== undefined && (typeof file !== 'string' || file.length === 0 || file.includes('\0')))
    issues.push({ path: 'file', message: `must be the path of a JSON file, got ${describeValue(file)}` });
  const env = options.env === undefined ? process.env : options.env;
  if (!isObject(env))
    issues.push({ path: 'env', message: `must be an object of strings, got ${describeValue(env)}` });
  // Never describe the value: it may be a secret.
  else
    for (const [name, value] of Object.entries(env))
      if (value !== undefined && typeof value !== 'string')
        issues.push({ path: `env.${name}`, message: `must be a string, got ${typeof value}` });
  if (issues.length > 0) throw new ConfigError(issues);
  return {
    environment: environment as string | undefined,
    file: file as string | undefined,
    env: env as Record<string, string | undefined>,
  };
}

/** Reads the configuration file: its text, or `undefined` when the default file is absent. */
function readConfigFile(path: string, required: boolean): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'error';
    if (code === 'ENOENT') {
      if (!required) return undefined;
      throw new ConfigError([{ path, message: 'file not found' }]);
    }
    throw new ConfigError([{ path, message: `cannot read the file (${code})` }]);
  }
}

/** Parses the file's JSON; the error names the line and column, never the text (it may hold a password). */
function parseConfigFile(path: string, text: string): Record<string, unknown> {
  let file: unknown;
  try {
    file = JSON.parse(text);
  } catch {
    const offset = jsonErrorOffset(text);
    const where =
      offset < 0
        ? ''
        : ` at line ${positionOf(text, offset).line}, column ${positionOf(text, offset).column}`;
    throw new ConfigError([
      {
        path,
        message: `cannot read JSON: not valid JSON${where} (the text is not repeated: it may hold secrets)`,
      },
    ]);
  }
  if (!isObject(file))
    throw new ConfigError([{ path, message: 'must hold an object with one section per environment' }]);
  return file;
}

/**
 * A fresh copy of JSON data. Object keys that could reach `Object.prototype` when assigned
 * (`__proto__`, `constructor`, `prototype`) are reported as issues at their path and left out.
 */
function cleanCopy(value: unknown, path: string, issues: ConfigIssue[]): unknown {
  if (Array.isArray(value)) return value.map((v, i) => cleanCopy(v, `${path}[${i}]`, issues));
  if (!isObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [key, inner] of Object.entries(value)) {
    const at = path ? `${path}.${key}` : key;
    if (FORBIDDEN_KEYS.has(key)) issues.push({ path: at, message: `the key '${key}' is refused` });
    else out[key] = cleanCopy(inner, at, issues);
  }
  return out;
}

/**
 * Reads `rollcall.config.json` (one section per environment, plus an optional `default`
 * section underneath them all), then environment variables on top, and validates the result.
 * Throws {@link ConfigError} listing every bad field (a malformed file is reported by line and
 * column, never quoted). With nothing configured, `development` and `test` use the memory
 * backend; other environments must name one.
 */
export function loadConfig(options: LoadConfigOptions = {}): RollcallConfig {
  const { env, ...o } = checkLoadOptions(options);
  const environment = o.environment || env.ROLLCALL_ENV || env.NODE_ENV || 'development';
  const path = resolve(o.file ?? 'rollcall.config.json');
  let merged: Record<string, unknown> = {};
  const text = readConfigFile(path, o.file !== undefined);
  if (text !== undefined) {
    const sections = parseConfigFile(path, text);
    const issues: ConfigIssue[] = [];
    // Own sections only: an environment named `constructor` or `valueOf` is just absent.
    const section = (name: string): Record<string, unknown> => {
      const found = Object.hasOwn(sections, name) ? sections[name] : undefined;
      if (found === undefined) return {};
      if (!isObject(found)) {
        issues.push({
          path: name,
          message: `must be an object (the '${name}' section), got ${describeValue(found)}`,
        });
        return {};
      }
      return cleanCopy(found, '', issues) as Record<string, unknown>;
    };
    merged = deepMerge(section('default'), section(environment));
    if (issues.length > 0) throw new ConfigError(issues);
  }
  for (const [name, spec] of Object.entries(ENV_VARIABLES)) {
    const value = env[name];
    if (value !== undefined && value !== '')
      setIn(merged, spec.path, spec.parse ? spec.parse(value, env) : value);
  }
  if (env.CONSUL_HTTP_ADDR)
    merged.consul = { ...((merged.consul as object) ?? {}), ...consulAddress(env.CONSUL_HTTP_ADDR) };
  if (merged.backend === undefined) {
    if (!MEMORY_BY_DEFAULT.has(environment)) {
      throw new ConfigError([
        {
          path: 'backend',
          message: `no backend configured for environment ${describeValue(environment)} (set ROLLCALL_BACKEND or that section of ${path})`,
        },
      ]);
    }
    merged.backend = 'memory';
  }
  return parseConfig(merged);
}

/** Merges `over` into `base` (both fresh copies made by cleanCopy: no refused keys). */
function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  for (const [key, value] of Object.entries(over)) {
    const current = base[key];
    base[key] = isObject(value) && isObject(current) ? deepMerge(current, value) : value;
  }
  return base;
}
