import type { FleetMember } from '../acks.js';
import type { MigratingBackend } from '../backend.js';
import type { ServiceComparison } from '../compare.js';
import type { MigrationPhase } from '../phases.js';
import { registryLabels, shortList, table } from './text.js';

/** What `rollcall migrate status` shows. */
export interface MigrationStatus {
  /** The phase the fleet follows (the phase key, else the configured phase). */
  phase: MigrationPhase;
  phaseKey: string;
  /** Backend names, e.g. `consul` and `etcd`. */
  from: string;
  to: string;
  threshold: number;
  /** Per service, sorted by name. */
  services: ServiceComparison[];
  /** Names of the services whose verdict is `blocked`. */
  blocked: string[];
  /** The clients that announce their phase, and which. */
  fleet: FleetMember[];
}

/** Reads the phase, the comparison (of every service, or only `service`) and the fleet list. */
export async function migrationStatus(backend: MigratingBackend, service?: string): Promise<MigrationStatus> {
  await backend.ready();
  const [services, fleet] = await Promise.all([backend.compare(service), backend.fleet()]);
  return {
    phase: backend.phase,
    phaseKey: backend.phaseKey,
    from: backend.from.name,
    to: backend.to.name,
    threshold: backend.threshold,
    services,
    blocked: services.filter((s) => s.verdict === 'blocked').map((s) => s.service),
    fleet,
  };
}

/** The fleet summary line: how many clients follow which phase. */
export function fleetLine(fleet: readonly FleetMember[]): string {
  if (fleet.length === 0) return 'fleet: no client announces its phase';
  const counts = new Map<string, number>();
  for (const m of fleet) counts.set(m.phase, (counts.get(m.phase) ?? 0) + 1);
  return `fleet: ${fleet.length} client(s): ${[...counts].map(([p, n]) => `${n} in ${p}`).join(', ')}`;
}

/** The comparison as a table (service, in each registry, ids only in each, verdict). */
export function comparisonTable(services: readonly ServiceComparison[], from: string, to: string): string[] {
  const l = registryLabels(from, to);
  return table([
    ['SERVICE', `IN ${l.from}`, `IN ${l.to}`, `ONLY IN ${l.from}`, `ONLY IN ${l.to}`, 'VERDICT'].map((h) =>
      h.toUpperCase(),
    ),
    ...services.map((s) => [
      s.service,
      String(s.from),
      String(s.to),
      shortList(s.onlyInFrom),
      shortList(s.onlyInTo),
      s.stale ? `${s.verdict} (stale)` : s.verdict,
    ]),
  ]);
}

/** `rollcall migrate status` as text lines. */
export function formatStatus(status: MigrationStatus): string[] {
  const lines = [
    `phase: ${status.phase} (key '${status.phaseKey}' in ${status.to}); from ${status.from} to ${status.to}, threshold ${status.threshold}`,
  ];
  if (status.services.length === 0) lines.push('no services in either registry');
  else lines.push(...comparisonTable(status.services, status.from, status.to));
  lines.push(
    status.blocked.length === 0
      ? 'every service may read from the new registry'
      : `${status.blocked.length} service(s) blocked: ${status.blocked.join(', ')}`,
  );
  lines.push(fleetLine(status.fleet));
  return lines;
}
