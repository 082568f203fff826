/**
 * `@rollcall/migration`: move a live fleet from one registry to another (Consul to etcd) without
 * a moment where a caller finds nobody to call. See the runbook in the package README.
 *
 * @packageDocumentation
 */
export { ACK_SERVICE, ACK_TTL_SECONDS, type FleetMember, fleetOf } from './acks.js';
export { createMigratingBackend, type MigratingBackend, type PhaseListener } from './backend.js';
export { compareRegistries, type ServiceComparison, verdictOf } from './compare.js';
export { MigrationBlockedError } from './errors.js';
export { DEFAULT_PHASE_KEY, type MigratingOptions, resolveMigratingOptions } from './options.js';
export {
  GATED_PHASES,
  isPhase,
  MIGRATION_PHASES,
  type MigrationPhase,
  PHASE_RULES,
  type PhaseRules,
  type ReadMode,
  type Side,
  validatePhase,
} from './phases.js';
export type { ShadowDifference } from './shadow.js';
