import { describeDiscoveryContract, describeKeyValueContract, describeLockContract } from '@rollcall/testkit';
import { describe } from 'vitest';
import { MIGRATION_PHASES, type MigratingBackend, type MigrationPhase, type Side } from '../src/index.js';
import { MemoryPair, readSide } from './harness.js';

/**
 * The three compliance suites in every phase, memory -> memory. Faults: a crash stops the client
 * in both registries (a killed process); an outage takes down the registry the phase reads (for
 * `dual-read`, where a read falls back to the registry still up, both).
 */
function harness(phase: MigrationPhase, outage: readonly Side[], manualClock = true) {
  const pair = new MemoryPair({ manualClock });
  return {
    newClient: async () => pair.client(phase),
    unreachableClient: async () => pair.unreachable(phase),
    crash: async (client: object) => pair.crash(client as MigratingBackend),
    outage: async () => pair.outage(outage),
    restore: async () => pair.restore(outage),
    // One backend watch per service in each registry the phase follows.
    upstreams: (_client: object, service: string) =>
      Math.max(pair.from.watcherCount(service), pair.to.watcherCount(service)),
    elapse: (ms: number) => pair.elapse(ms),
    teardown: async () => pair.dispose(),
  };
}

const faults = { crash: true, outage: true, upstreamCount: true } as const;

describe.each(MIGRATION_PHASES)('memory -> memory in %s', (phase) => {
  const reads = readSide(phase);
  // In `dual-read` one registry still answers a read: only both down leave a new service unknown.
  const down: Side[] = phase === 'dual-read' ? ['from', 'to'] : [reads];
  describeDiscoveryContract(`migrating (${phase})`, () => harness(phase, down), {
    ...faults,
    propagationMs: 500,
    expiryGraceMs: 0,
    recoveryMs: 1000,
  });
  describeKeyValueContract(`migrating (${phase})`, () => harness(phase, down, false), {
    outage: true,
    propagationMs: 500,
    recoveryMs: 1000,
  });
  describeLockContract(`migrating (${phase})`, () => harness(phase, [reads]), {
    crash: true,
    outage: true,
    handoffMs: 500,
    expiryGraceMs: 500,
  });
});
