import { RollcallError } from '@rollcall/core';
import type { ServiceComparison } from './compare.js';
import type { MigrationPhase } from './phases.js';

/** How many blocked services a {@link MigrationBlockedError} message names before summarizing. */
const LISTED = 20;

/**
 * A forward phase move was refused: some services are not (fully) in `to` yet. `blocked` lists
 * them with their counts; `force: true` overrides (and is logged as a warning).
 */
export class MigrationBlockedError extends RollcallError {
  /** The phase the move was refused into. */
  readonly phase: MigrationPhase;
  /** The services whose verdict is `blocked`, with their counts. */
  readonly blocked: readonly ServiceComparison[];

  constructor(phase: MigrationPhase, blocked: readonly ServiceComparison[]) {
    const listed = blocked
      .slice(0, LISTED)
      .map((c) => `${c.service} (from ${c.from}, to ${c.to})`)
      .join(', ');
    const more = blocked.length > LISTED ? ` and ${blocked.length - LISTED} more` : '';
    super(
      'MIGRATION_BLOCKED',
      `cannot move to '${phase}': ${blocked.length} service(s) not ready in the new registry: ${listed}${more} (force to override)`,
    );
    this.phase = phase;
    this.blocked = blocked;
  }
}
