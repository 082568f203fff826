/**
 * `@rollcall/migration`: move a live fleet from one registry to another (Consul to etcd) without
 * a moment where a caller finds nobody to call. See the runbook in the package README.
 *
 * @packageDocumentation
 */
export { ACK_SERVICE, ACK_TTL_SECONDS, type FleetMember, fleetOf } from './acks.js';
export { createMigratingBackend, type MigratingBackend, type PhaseListener } from './backend.js';
export {
  BRIDGE_ELECTION,
  BRIDGE_META,
  type Bridge,
  type BridgeEvent,
  type BridgeOptions,
  formatBridgeEvent,
  SOURCE_META,
  startBridge,
} from './commands/bridge.js';
export {
  type ChangePhaseOptions,
  changePhase,
  type FleetFollow,
  formatBlocked,
  formatPhaseChange,
  type PhaseChange,
} from './commands/change-phase.js';
export {
  type ConsulAgentAddress,
  consulKvInspector,
  type KvInspector,
  type RawKeyInfo,
} from './commands/consul-kv.js';
export {
  applyKvCopy,
  checksum,
  ETCD_MAX_REQUEST_BYTES,
  ETCD_MAX_TXN_OPS,
  formatKvPlan,
  formatKvResult,
  type KvApplyOptions,
  type KvBatchWriter,
  type KvCopyOptions,
  type KvCopyPlan,
  type KvCopyProgress,
  type KvCopyResult,
  planKvCopy,
  RESERVED_KV_PREFIX,
  type SkippedKey,
} from './commands/kv-copy.js';
export { type ProgressOutput, progressReporter } from './commands/progress.js';
export { formatStatus, type MigrationStatus, migrationStatus } from './commands/status.js';
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
