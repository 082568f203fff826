export { createLiveConfig, type LiveConfig, LiveConfigError, type LiveConfigOptions } from '@rollcall/config';
export { TYPES } from '@rollcall/core';
export {
  availableBackends,
  type BackendFactory,
  type BackendFactoryOptions,
  backendFactory,
  createMigratingFromConfig,
  type MigratingFromConfigOptions,
  registerBackend,
  type SectionValidator,
  validateBackendSections,
} from './backends.js';
export {
  BACKEND_NAMES,
  type BackendName,
  type ConsulSection,
  configFileJsonSchema,
  ENV_VARIABLES,
  type EtcdSection,
  type LoadConfigOptions,
  loadConfig,
  MIGRATION_PHASES,
  parseConfig,
  type RollcallConfig,
} from './config.js';
export { createContainer, type LiveConfigFactory, rollcallModule } from './module.js';
