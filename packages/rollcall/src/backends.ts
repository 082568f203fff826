import { type Backend, ConfigError } from '@rollcall/core';
import { createMemoryBackend } from '@rollcall/memory';
import type { BackendName, RollcallConfig } from './config.js';

/** Makes a backend from the configuration. */
export type BackendFactory = (config: RollcallConfig) => Backend;

type Loaded = { factory: BackendFactory } | { missing: string };

/**
 * Loads an optional backend package. A package that is not installed is not an error here:
 * only naming it in the configuration is (a ConfigError that says what to install).
 */
async function optional(pkg: string, load: () => Promise<BackendFactory>): Promise<Loaded> {
  try {
    return { factory: await load() };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND')
      return { missing: `package ${pkg} is not installed (npm install ${pkg})` };
    throw error;
  }
}

type EtcdModule = { createEtcdBackend(options: unknown): Backend };
type ConsulModule = { createConsulBackend(options: unknown): Backend };

// The module specifiers are held in variables so that the compiler does not require the optional packages.
const etcdPackage = '@rollcall/etcd';
const consulPackage = '@rollcall/consul';

const available: Partial<Record<BackendName, Loaded>> = {
  memory: { factory: () => createMemoryBackend() },
  etcd: await optional(etcdPackage, async () => {
    const { createEtcdBackend } = (await import(etcdPackage)) as EtcdModule;
    return (config) => createEtcdBackend(config.etcd ?? {});
  }),
  consul: await optional(consulPackage, async () => {
    const { createConsulBackend } = (await import(consulPackage)) as ConsulModule;
    return (config) => createConsulBackend(config.consul ?? {});
  }),
};

/** Registers (or replaces) the factory for a backend name; e.g. to plug in a backend of your own in tests. */
export function registerBackend(name: BackendName, factory: BackendFactory): void {
  available[name] = { factory };
}

/** The backend names that can be created in this installation. */
export function availableBackends(): BackendName[] {
  return (Object.entries(available) as [BackendName, Loaded][])
    .filter(([, l]) => 'factory' in l)
    .map(([n]) => n);
}

/** The factory for `config.backend`, or a {@link ConfigError} naming it and listing the valid ones. */
export function backendFactory(config: RollcallConfig): BackendFactory {
  const loaded = available[config.backend];
  if (loaded && 'factory' in loaded) return loaded.factory;
  const why = loaded && 'missing' in loaded ? loaded.missing : 'not available in this version';
  throw new ConfigError([
    {
      path: 'backend',
      message: `backend '${config.backend}' cannot be used: ${why}; valid backends: ${availableBackends().join(', ')}`,
    },
  ]);
}
