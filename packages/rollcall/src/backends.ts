import { createRequire } from 'node:module';
import { type Backend, ConfigError, type ConfigIssue, type Logger } from '@rollcall/core';
import { createMemoryBackend } from '@rollcall/memory';
import { createMigratingBackend, type MigratingBackend } from '@rollcall/migration';
import type { BackendName, RollcallConfig } from './config.js';

/** What a {@link BackendFactory} gets beside the configuration. */
export interface BackendFactoryOptions {
  /** The logger the backend reports to (the container's `TYPES.Logger` when bound). Default silent. */
  logger?: Logger;
}

/** Makes a backend from the configuration. */
export type BackendFactory = (config: RollcallConfig, options?: BackendFactoryOptions) => Backend;

/** Checks a backend's configuration section; returns its problems with paths inside the section. */
export type SectionValidator = (section: unknown) => readonly ConfigIssue[];

/** A backend that can be made: its factory, and the check of its configuration section. */
type Loaded = { factory: BackendFactory; validate?: SectionValidator } | { missing: string };

/** Runs a backend's own option resolver and turns its ConfigError into issues (one source of truth for options). */
function issuesFrom(resolve: (section: never) => unknown): SectionValidator {
  return (section) => {
    try {
      resolve(section as never);
      return [];
    } catch (error) {
      if (error instanceof ConfigError) return error.issues;
      throw error;
    }
  };
}

/** `section` with the factory's logger added, when one is given. */
function withLogger<T extends object>(section: T, options: BackendFactoryOptions | undefined): T {
  return options?.logger ? { ...section, logger: options.logger } : section;
}

type EtcdModule = typeof import('@rollcall/etcd');
type ConsulModule = typeof import('@rollcall/consul');

// The optional backends are loaded the first time they are used, not when `rollcall` is imported
// (etcd3 and its gRPC stack cost most of a second): synchronously, through `require` of the ES
// module (Node >= 20.19), so that the container and the CLI stay synchronous and no top-level
// await keeps CommonJS applications from `require('rollcall')`.
const load = createRequire(import.meta.url);

/** Whether an optional package is installed, without loading it. */
function installed(pkg: string): boolean {
  try {
    load.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

/** A built-in backend: how to load it, and the optional package it comes from (if any). */
interface BuiltIn {
  pkg?: string;
  load(): Loaded;
}

/** An optional backend package, loaded on first use; not installed is only an error once it is named. */
function optional(pkg: string, make: (module: never) => Exclude<Loaded, { missing: string }>): BuiltIn {
  let loaded: Loaded | undefined;
  return {
    pkg,
    load() {
      if (loaded) return loaded;
      if (!installed(pkg)) return { missing: `package ${pkg} is not installed (npm install ${pkg})` };
      loaded = make(load(pkg) as never);
      return loaded;
    },
  };
}

const builtIn: Record<BackendName, BuiltIn> = {
  memory: { load: () => ({ factory: (_config, options) => createMemoryBackend(withLogger({}, options)) }) },
  etcd: optional('@rollcall/etcd', ({ createEtcdBackend, resolveEtcdOptions }: EtcdModule) => ({
    factory: (config, options) => createEtcdBackend(withLogger(config.etcd ?? {}, options)),
    validate: issuesFrom(resolveEtcdOptions),
  })),
  consul: optional('@rollcall/consul', ({ createConsulBackend, resolveConsulOptions }: ConsulModule) => ({
    factory: (config, options) => createConsulBackend(withLogger(config.consul ?? {}, options)),
    validate: issuesFrom(resolveConsulOptions),
  })),
  migrating: {
    load: () => ({
      factory: (config, options) => createMigratingFromConfig(config, withLogger({}, options)),
    }),
  },
};

/** Factories plugged in by {@link registerBackend}: they win over the built-in ones. */
const registered: Partial<Record<BackendName, Loaded>> = {};

function backend(name: BackendName): Loaded {
  return registered[name] ?? builtIn[name]?.load() ?? { missing: 'not available in this version' };
}

/** Whether `name` can be made here, without loading its package. */
function canMake(name: BackendName): boolean {
  if (registered[name]) return true;
  const pkg = builtIn[name]?.pkg;
  return pkg === undefined || installed(pkg);
}

/** `cacheIdleMs` of the two registries under a migrating backend, unless their section sets one. */
const INNER_CACHE_IDLE_MS = 1000;

/** Options of {@link createMigratingFromConfig} beyond the configuration. */
export interface MigratingFromConfigOptions {
  /** Announce this process's phase in the fleet list. Default `true`; tools that only look pass `false`. */
  acknowledge?: boolean;
  logger?: Logger;
}

/** The factories of the two registries a `migrating` section names, or a ConfigError naming the field. */
function migrationFactories(config: RollcallConfig): { from: BackendFactory; to: BackendFactory } {
  const m = config.migrating;
  if (!m)
    throw new ConfigError([
      { path: 'migrating', message: "required with backend 'migrating': { from, to, phase, threshold? }" },
    ]);
  const factory = (side: 'from' | 'to') => {
    const loaded = backend(m[side]);
    if ('factory' in loaded) return loaded.factory;
    const why = loaded.missing;
    throw new ConfigError([
      { path: `migrating.${side}`, message: `backend '${m[side]}' cannot be used: ${why}` },
    ]);
  };
  return { from: factory('from'), to: factory('to') };
}

/**
 * The migrating backend a configuration describes: `migrating.from` and `migrating.to` made from
 * their own sections (`consul`, `etcd`), wrapped by `createMigratingBackend` with the section's
 * `phase`, `threshold` and `phaseKey`.
 */
export function createMigratingFromConfig(
  config: RollcallConfig,
  options: MigratingFromConfigOptions = {},
): MigratingBackend {
  const factories = migrationFactories(config);
  const m = config.migrating!;
  // The migrating backend keeps its own merged cache: the registries' caches only need to outlive
  // a watch it closes, so that a registry the phase stops reading (Consul at `done`) stops being
  // polled within a second instead of after the default 5 minutes.
  const inner = (name: 'memory' | 'etcd' | 'consul'): RollcallConfig => {
    const section = name === 'memory' ? undefined : config[name];
    return name === 'memory'
      ? { ...config, backend: name }
      : { ...config, backend: name, [name]: { cacheIdleMs: INNER_CACHE_IDLE_MS, ...section } };
  };
  const logger = options.logger ? { logger: options.logger } : {};
  const from = factories.from(inner(m.from), logger);
  const to = factories.to(inner(m.to), logger);
  return createMigratingBackend({
    from,
    to,
    phase: m.phase,
    ...(m.threshold !== undefined ? { threshold: m.threshold } : {}),
    ...(m.phaseKey !== undefined ? { phaseKey: m.phaseKey } : {}),
    ...options,
  });
}

/** Registers (or replaces) the factory for a backend name; e.g. to plug in a backend of your own in tests. */
export function registerBackend(name: BackendName, factory: BackendFactory): void {
  registered[name] = { factory };
}

/**
 * Checks every backend section present in `config` (`etcd`, `consul`) with that backend's own
 * option validation, when the backend is installed. Paths are prefixed with the section name.
 */
export function validateBackendSections(config: Record<string, unknown>): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const name of ['etcd', 'consul'] as const) {
    if (config[name] === undefined || !canMake(name)) continue;
    const loaded = backend(name);
    if (!('validate' in loaded) || !loaded.validate) continue;
    for (const issue of loaded.validate(config[name])) {
      const inner = issue.path.startsWith('[') || issue.path === '' ? issue.path : `.${issue.path}`;
      issues.push({ path: `${name}${inner}`, message: issue.message });
    }
  }
  return issues;
}

/** The backend names that can be created in this installation. */
export function availableBackends(): BackendName[] {
  return (Object.keys(builtIn) as BackendName[]).filter(canMake);
}

/** The factory for `config.backend`, or a {@link ConfigError} naming it and listing the valid ones. */
export function backendFactory(config: RollcallConfig): BackendFactory {
  // A migration can only start if both of its registries can be made.
  if (config.backend === 'migrating') migrationFactories(config);
  const loaded = backend(config.backend);
  if ('factory' in loaded) return loaded.factory;
  const why = loaded.missing;
  throw new ConfigError([
    {
      path: 'backend',
      message: `backend '${config.backend}' cannot be used: ${why}; valid backends: ${availableBackends().join(', ')}`,
    },
  ]);
}
