import { ACK_SERVICE, type FleetMember, fleetOf } from '../acks.js';
import type { MigratingBackend } from '../backend.js';
import type { ServiceComparison } from '../compare.js';
import { MigrationBlockedError } from '../errors.js';
import { GATED_PHASES, type MigrationPhase, phaseIndex, validatePhase } from '../phases.js';
import { comparisonTable } from './status.js';

/** Options of {@link changePhase}. */
export interface ChangePhaseOptions {
  /** Move forward past blocked services (logged as a warning). Default `false`. */
  force?: boolean;
  /** How long to wait for the fleet to follow. Default 30000 ms. */
  waitMs?: number;
}

/** How the fleet followed a phase move. */
export interface FleetFollow {
  /** `followed`: every announcing client took the phase; `timeout`: some did not in time; `unknown`: no client announces its phase. */
  outcome: 'followed' | 'timeout' | 'unknown';
  /** Clients that announced the phase. */
  following: FleetMember[];
  /** Clients still announcing another phase when the wait ended. */
  lagging: FleetMember[];
  /** From the write to the last client following (or to the end of the wait), in ms. */
  elapsedMs: number;
}

/** What `rollcall migrate phase` did. */
export interface PhaseChange {
  previous: MigrationPhase;
  phase: MigrationPhase;
  /** Services that were blocked and overridden with `force`. */
  forcedPast: ServiceComparison[];
  fleet: FleetFollow;
}

/**
 * Moves the fleet to `phase`: runs the gate (throwing {@link MigrationBlockedError} with the
 * blocked services unless `force`), writes the phase key, then watches the fleet list until
 * every client announces the new phase, the wait ends, or it is clear nobody announces anything.
 */
export async function changePhase(
  backend: MigratingBackend,
  phase: MigrationPhase,
  options: ChangePhaseOptions = {},
): Promise<PhaseChange> {
  const target = validatePhase(phase);
  const waitMs = options.waitMs ?? 30_000;
  await backend.ready();
  const previous = backend.phase;
  let forcedPast: ServiceComparison[] = [];
  if (phaseIndex(target) > phaseIndex(previous) && GATED_PHASES.has(target)) {
    const comparison = await backend.compare().catch((error: unknown) => {
      if (!options.force) throw error;
      return [];
    });
    const blocked = comparison.filter((c) => c.verdict === 'blocked');
    if (blocked.length > 0 && !options.force) throw new MigrationBlockedError(target, blocked);
    forcedPast = blocked;
  }
  const started = performance.now();
  await backend.setPhase(target, { force: options.force === true });
  return { previous, phase: target, forcedPast, fleet: await waitForFleet(backend, target, started, waitMs) };
}

async function waitForFleet(
  backend: MigratingBackend,
  phase: MigrationPhase,
  started: number,
  waitMs: number,
): Promise<FleetFollow> {
  const result = (members: FleetMember[], outcome: FleetFollow['outcome']): FleetFollow => ({
    outcome,
    following: members.filter((m) => m.phase === phase),
    lagging: members.filter((m) => m.phase !== phase),
    elapsedMs: Math.round(performance.now() - started),
  });
  const watch = backend.to.discovery.watch(ACK_SERVICE, { signal: AbortSignal.timeout(waitMs) });
  let members: FleetMember[] = [];
  try {
    for await (const event of watch) {
      members = fleetOf(event.snapshot);
      if (event.type === 'sync' && members.length === 0) return result(members, 'unknown');
      if (members.length > 0 && members.every((m) => m.phase === phase)) return result(members, 'followed');
    }
  } finally {
    watch.close();
  }
  return result(members, members.length === 0 ? 'unknown' : 'timeout');
}

/** `rollcall migrate phase` as text lines. */
export function formatPhaseChange(change: PhaseChange): string[] {
  const lines = [
    change.previous === change.phase
      ? `phase: already ${change.phase} (key written again)`
      : `phase: ${change.previous} -> ${change.phase}`,
  ];
  if (change.forcedPast.length > 0)
    lines.push(
      `forced past ${change.forcedPast.length} blocked service(s): ${change.forcedPast.map((c) => `${c.service} (from ${c.from}, to ${c.to})`).join(', ')}`,
    );
  const f = change.fleet;
  const total = f.following.length + f.lagging.length;
  if (f.outcome === 'unknown')
    lines.push(
      'fleet: cannot tell whether it follows: no client announces its phase (none running, or all made with acknowledge: false)',
    );
  else if (f.outcome === 'followed')
    lines.push(`fleet: all ${total} client(s) follow '${change.phase}' (${f.elapsedMs} ms after the write)`);
  else
    lines.push(
      `fleet: ${f.following.length}/${total} client(s) follow '${change.phase}' after ${f.elapsedMs} ms; still elsewhere: ${f.lagging.map((m) => `${m.client} (${m.phase})`).join(', ')}`,
    );
  return lines;
}

/** What blocks a move, as text lines: the error's message and the blocked services' table. */
export function formatBlocked(error: MigrationBlockedError, from: string, to: string): string[] {
  return [
    `cannot move to '${error.phase}': ${error.blocked.length} service(s) are not ready in ${to}`,
    ...comparisonTable(error.blocked, from, to),
    'register them in the new registry (or bridge them: rollcall migrate bridge), or pass --force',
  ];
}
