import 'reflect-metadata';
import { createRequire } from 'node:module';
import { createLiveConfig, type LiveConfig, type LiveConfigOptions } from '@rollcall/config';
import {
  type Backend,
  type KeyValueSource,
  type LockService,
  type Logger,
  type ServiceDiscovery,
  TYPES,
} from '@rollcall/core';
import type { Container, ContainerModule } from 'inversify';
import type { z } from 'zod';
import { backendFactory } from './backends.js';
import { loadConfig, parseConfig, type RollcallConfig } from './config.js';

// inversify is the application's (a peer dependency), loaded when a container is first made:
// importing `rollcall` alone does not load it.
const load = createRequire(import.meta.url);
const inversify = () => load('inversify') as typeof import('inversify');

/** Makes a {@link LiveConfig} over the container's backend: `options` are those of `createLiveConfig` without `source`. */
export type LiveConfigFactory = <S extends z.ZodType>(
  options: Omit<LiveConfigOptions<S>, 'source'>,
) => Promise<LiveConfig<z.output<S>>>;

/**
 * An inversify module binding `TYPES.RollcallConfig`, `TYPES.Backend`, `TYPES.ServiceDiscovery`,
 * `TYPES.KeyValueSource` and `TYPES.LockService` as singletons, and `TYPES.LiveConfigFactory`, for the backend `config.backend`
 * names. When the application binds `TYPES.Logger` (a pino or bunyan instance, or any
 * {@link Logger}), the backend, every backend under a migration, and live configs report to it.
 * The config is validated (and the backend looked up) now, so a bad one fails at start with a
 * {@link ConfigError}; the backend itself is created on first resolution and closed when its
 * binding is deactivated (`await container.unbindAllAsync()`).
 */
export function rollcallModule(config: RollcallConfig): ContainerModule {
  const valid = parseConfig(config);
  const create = backendFactory(valid);
  return new (inversify().ContainerModule)(({ bind }) => {
    bind<RollcallConfig>(TYPES.RollcallConfig).toConstantValue(valid);
    bind<Backend>(TYPES.Backend)
      .toDynamicValue((ctx) => {
        const logger = ctx.get<Logger>(TYPES.Logger, { optional: true });
        return create(valid, logger ? { logger } : {});
      })
      .inSingletonScope()
      .onDeactivation((backend) => backend.close());
    bind<ServiceDiscovery>(TYPES.ServiceDiscovery)
      .toDynamicValue((ctx) => ctx.get<Backend>(TYPES.Backend).discovery)
      .inSingletonScope();
    bind<KeyValueSource>(TYPES.KeyValueSource)
      .toDynamicValue((ctx) => ctx.get<Backend>(TYPES.Backend).kv)
      .inSingletonScope();
    bind<LiveConfigFactory>(TYPES.LiveConfigFactory)
      .toDynamicValue((ctx) => {
        const source = ctx.get<Backend>(TYPES.Backend).kv;
        const logger = ctx.get<Logger>(TYPES.Logger, { optional: true });
        return (options) => createLiveConfig({ ...(logger ? { logger } : {}), ...options, source });
      })
      .inSingletonScope();
    bind<LockService>(TYPES.LockService)
      .toDynamicValue((ctx) => ctx.get<Backend>(TYPES.Backend).locks)
      .inSingletonScope();
  });
}

/** A new inversify `Container` with {@link rollcallModule} loaded for `config` (default: {@link loadConfig}()). */
export function createContainer(config?: RollcallConfig): Container {
  const container = new (inversify().Container)();
  container.load(rollcallModule(config ?? loadConfig()));
  return container;
}
