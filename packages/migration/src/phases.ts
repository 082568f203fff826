import { ValidationError } from '@rollcall/core';
import { describeValue } from '@rollcall/core/driver';

/** The phases of a move from `from` to `to`, in order. See the table in the package README. */
export const MIGRATION_PHASES = ['dual-write', 'shadow', 'dual-read', 'cutover', 'done'] as const;

/** A phase of the migration. */
export type MigrationPhase = (typeof MIGRATION_PHASES)[number];

/** One of the two registries a migrating backend spans. */
export type Side = 'from' | 'to';

/** Where reads are answered from: one registry, or both merged by key (`to` winning). */
export type ReadMode = 'from' | 'union' | 'to';

/** The registries a read mode needs answers from. */
export const READ_SOURCES: Readonly<Record<ReadMode, readonly Side[]>> = {
  from: ['from'],
  union: ['from', 'to'],
  to: ['to'],
};

/** What one phase does: the contract's table, row by row. */
export interface PhaseRules {
  /** Registries a registration is written to (and kept in). */
  readonly register: readonly Side[];
  /** Where discovery reads come from. */
  readonly discovery: ReadMode;
  /** Registries watched beside the read source (`shadow` watches `to` to report differences). */
  readonly watch: readonly Side[];
  /** Where key/value reads come from (`union`: `to`, else `from`). */
  readonly kvRead: ReadMode;
  /** Registries key/value writes go to. */
  readonly kvWrite: readonly Side[];
  /** Registries a lock is taken on, in this order. */
  readonly locks: readonly Side[];
}

const BOTH: readonly Side[] = ['from', 'to'];
const TO: readonly Side[] = ['to'];

/** The rules of every phase. */
export const PHASE_RULES: Readonly<Record<MigrationPhase, PhaseRules>> = {
  'dual-write': {
    register: BOTH,
    discovery: 'from',
    watch: ['from'],
    kvRead: 'from',
    kvWrite: BOTH,
    locks: BOTH,
  },
  shadow: { register: BOTH, discovery: 'from', watch: BOTH, kvRead: 'from', kvWrite: BOTH, locks: BOTH },
  'dual-read': {
    register: BOTH,
    discovery: 'union',
    watch: BOTH,
    kvRead: 'union',
    kvWrite: BOTH,
    locks: BOTH,
  },
  cutover: { register: BOTH, discovery: 'to', watch: TO, kvRead: 'to', kvWrite: BOTH, locks: BOTH },
  done: { register: TO, discovery: 'to', watch: TO, kvRead: 'to', kvWrite: TO, locks: TO },
};

/** Phases whose reads depend on `to`: a forward move into one of them is gated by the comparison. */
export const GATED_PHASES: ReadonlySet<MigrationPhase> = new Set(['dual-read', 'cutover', 'done']);

/** True when `value` names a phase. */
export function isPhase(value: unknown): value is MigrationPhase {
  return typeof value === 'string' && (MIGRATION_PHASES as readonly string[]).includes(value);
}

/** Checks a phase name; throws a {@link ValidationError} naming `field` otherwise. */
export function validatePhase(value: unknown, field = 'phase'): MigrationPhase {
  if (isPhase(value)) return value;
  throw new ValidationError(
    field,
    `must be one of ${MIGRATION_PHASES.join(', ')} (got ${describeValue(value)})`,
  );
}

/** Position of a phase in {@link MIGRATION_PHASES}: a move to a higher one is forward. */
export function phaseIndex(phase: MigrationPhase): number {
  return MIGRATION_PHASES.indexOf(phase);
}
