import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ConsulOptions } from '@rollcall/consul';
import { ConfigError, type ConfigIssue, normalizeKey, ValidationError } from '@rollcall/core';
import type { EtcdOptions } from '@rollcall/etcd';
import { MIGRATION_PHASES } from '@rollcall/migration';
import { z } from 'zod';
import { validateBackendSections } from './backends.js';

/** Backends `rollcallModule` knows by name. */
export const BACKEND_NAMES = ['memory', 'etcd', 'consul', 'migrating'] as const;
/** A backend name. */
export type BackendName = (typeof BACKEND_NAMES)[number];

/** The phases of a Consul-to-etcd migration (from `@rollcall/migration`). */
export { MIGRATION_PHASES };

/** Registries a migration may go from or to. */
const REGISTRY_NAMES = ['memory', 'etcd', 'consul'] as const;

/** The `migrating` section: which configured backends the move goes between, and where it stands. */
const migratingSchema = z
  .object({
    from: z.enum(REGISTRY_NAMES),
    to: z.enum(REGISTRY_NAMES),
    phase: z.enum(MIGRATION_PHASES),
    threshold: z.number().positive().finite().optional(),
    phaseKey: z.string().optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (m.from === m.to)
      ctx.addIssue({
        code: 'custom',
        path: ['to'],
        message: `must be another registry than from ('${m.from}')`,
      });
    if (m.phaseKey !== undefined) {
      try {
        normalizeKey(m.phaseKey, 'phaseKey');
      } catch (error) {
        if (!(error instanceof ValidationError)) throw error;
        ctx.addIssue({ code: 'custom', path: ['phaseKey'], message: error.reason });
      }
    }
  });

const configSchema = z
  .object({
    backend: z.enum(BACKEND_NAMES),
    // Checked by the backends' own option validation (validateBackendSections): one source of truth.
    etcd: z.record(z.string(), z.unknown()).optional(),
    consul: z.record(z.string(), z.unknown()).optional(),
    migrating: migratingSchema.optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.backend === 'migrating' && c.migrating === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['migrating'],
        message: "required with backend 'migrating': { from, to, phase, threshold? }",
      });
  });

/** Which backend a process uses, and its options (`etcd` / `consul`: the options of `createEtcdBackend` / `createConsulBackend`). */
export type RollcallConfig = Omit<z.infer<typeof configSchema>, 'etcd' | 'consul'> & {
  etcd?: EtcdOptions;
  consul?: ConsulOptions;
};

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Section of the file to use. Default `ROLLCALL_ENV`, else `NODE_ENV`, else `development`. */
  environment?: string;
  /** Path of the configuration file. Default `rollcall.config.json` in the working directory (optional there; required when given). */
  file?: string;
  /** Environment variables. Default `process.env`. */
  env?: Record<string, string | undefined>;
}

/** Environments in which, with nothing configured, the in-memory backend is used. */
const MEMORY_BY_DEFAULT = new Set(['development', 'test']);

function issuesOf(error: z.ZodError, prefix = ''): ConfigIssue[] {
  return error.issues.map((issue) => ({
    path: [prefix, ...issue.path.map(String)].filter(Boolean).join('.'),
    message: issue.message,
  }));
}

/** Parses `value` as a config object, throwing {@link ConfigError} with every bad field. */
export function parseConfig(value: unknown): RollcallConfig {
  const result = configSchema.safeParse(value);
  const issues = result.success ? [] : issuesOf(result.error);
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

/** Environment variables read by {@link loadConfig}, with the config path each sets. */
export const ENV_VARIABLES: Record<
  string,
  { path: string[]; parse?: (v: string) => unknown; description: string }
> = {
  ROLLCALL_BACKEND: { path: ['backend'], description: 'backend name: memory, etcd, consul or migrating' },
  ETCD_ENDPOINTS: {
    path: ['etcd', 'endpoints'],
    parse: (v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    description: 'comma-separated etcd URLs',
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

/**
 * Reads `rollcall.config.json` (one section per environment, plus an optional `default`
 * section underneath them all), then environment variables on top, and validates the result.
 * Throws {@link ConfigError} listing every bad field. With nothing configured, `development`
 * and `test` use the memory backend; other environments must name one.
 */
export function loadConfig(options: LoadConfigOptions = {}): RollcallConfig {
  const env = options.env ?? process.env;
  const environment = options.environment ?? env.ROLLCALL_ENV ?? env.NODE_ENV ?? 'development';
  const path = resolve(options.file ?? 'rollcall.config.json');
  let merged: Record<string, unknown> = {};
  if (existsSync(path)) {
    let file: unknown;
    try {
      file = JSON.parse(readFileSync(path, 'utf8'));
    } catch (error) {
      throw new ConfigError([{ path, message: `cannot read JSON: ${(error as Error).message}` }]);
    }
    if (typeof file !== 'object' || file === null || Array.isArray(file)) {
      throw new ConfigError([{ path, message: 'must hold an object with one section per environment' }]);
    }
    const sections = file as Record<string, unknown>;
    const section = (name: string) => structuredClone((sections[name] ?? {}) as Record<string, unknown>);
    merged = deepMerge(section('default'), section(environment));
  } else if (options.file) {
    throw new ConfigError([{ path, message: 'file not found' }]);
  }
  for (const [name, spec] of Object.entries(ENV_VARIABLES)) {
    const value = env[name];
    if (value !== undefined && value !== '') setIn(merged, spec.path, spec.parse ? spec.parse(value) : value);
  }
  if (env.CONSUL_HTTP_ADDR)
    merged.consul = { ...((merged.consul as object) ?? {}), ...consulAddress(env.CONSUL_HTTP_ADDR) };
  if (merged.backend === undefined) {
    if (!MEMORY_BY_DEFAULT.has(environment)) {
      throw new ConfigError([
        {
          path: 'backend',
          message: `no backend configured for environment '${environment}' (set ROLLCALL_BACKEND or the '${environment}' section of ${path})`,
        },
      ]);
    }
    merged.backend = 'memory';
  }
  return parseConfig(merged);
}

function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  for (const [key, value] of Object.entries(over)) {
    const current = base[key];
    base[key] =
      typeof value === 'object' &&
      value !== null &&
      !Array.isArray(value) &&
      typeof current === 'object' &&
      current !== null &&
      !Array.isArray(current)
        ? deepMerge(current as Record<string, unknown>, value as Record<string, unknown>)
        : value;
  }
  return base;
}
