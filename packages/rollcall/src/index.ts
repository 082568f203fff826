export { createLiveConfig, type LiveConfig, LiveConfigError, type LiveConfigOptions } from '@rollcall/config';
export { TYPES } from '@rollcall/core';
export { availableBackends, type BackendFactory, backendFactory, registerBackend } from './backends.js';
export {
  BACKEND_NAMES,
  type BackendName,
  type ConsulConfig,
  consulOptionsSchema,
  ENV_VARIABLES,
  type EtcdConfig,
  etcdOptionsSchema,
  type LoadConfigOptions,
  loadConfig,
  MIGRATION_PHASES,
  parseConfig,
  type RollcallConfig,
} from './config.js';
export { createContainer, type LiveConfigFactory, rollcallModule } from './module.js';
