import type { Attributes, BatchObservableCallback, Meter, Observable } from '@opentelemetry/api';
import type {
  ConfigMessage,
  LockMessage,
  MembershipMessage,
  PhaseMessage,
  RegistrationMessage,
  SessionMessage,
  WatchMessage,
} from '@rollcall/core';
import { Connectivity } from './connectivity.js';
import { ATTRIBUTES, METRICS } from './names.js';
import { Series } from './series.js';

/** The `rollcall:*` channels (not the lock tracing channel) this module records, by `ROLLCALL_CHANNELS` key. */
export interface ChannelHandlers {
  registration(message: RegistrationMessage): void;
  session(message: SessionMessage): void;
  watch(message: WatchMessage): void;
  membership(message: MembershipMessage): void;
  lock(message: LockMessage): void;
  config(message: ConfigMessage): void;
  migrationPhase(message: PhaseMessage): void;
}

/** Bucket boundaries (s) for stale periods: from a blip to an hour-long outage. */
const STALE_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

/**
 * Creates the instruments on `meter` and returns the handlers that record each channel's
 * messages into them; `stop()` detaches the gauges' collection callback.
 */
export function recordChannels(meter: Meter): { handlers: ChannelHandlers; stop(): void } {
  const connected = meter.createObservableGauge(METRICS.backendConnected, {
    description: 'Whether the backend confirms this process liveness sessions (1) or not (0)',
  });
  const registrationState = meter.createObservableGauge(METRICS.registrationState, {
    description: 'Registrations of this process per state',
    unit: '{registration}',
  });
  const instances = meter.createObservableGauge(METRICS.serviceInstances, {
    description: 'Instances of the service the last list a watch of this process read holds',
    unit: '{instance}',
  });
  const lockHeld = meter.createObservableGauge(METRICS.lockHeld, {
    description: 'Locks and leaderships this process holds',
    unit: '{lock}',
  });
  const migrationPhase = meter.createObservableGauge(METRICS.migrationPhase, {
    description: 'The migration phase this process follows (1), and the phases it left (0)',
  });
  const registrationLosses = meter.createCounter(METRICS.registrationLosses, {
    description: 'Registrations the backend dropped (each is re-registered by itself)',
    unit: '{loss}',
  });
  const membershipChanges = meter.createCounter(METRICS.membershipChanges, {
    description: 'Instances added, removed or updated in the services this process watches',
    unit: '{instance}',
  });
  const watchSyncs = meter.createCounter(METRICS.watchSyncs, {
    description: 'Full lists read by service watches (the first read and every re-sync)',
    unit: '{sync}',
  });
  const watchReconnects = meter.createCounter(METRICS.watchReconnects, {
    description: 'Stale watches that came back',
    unit: '{reconnect}',
  });
  const staleDuration = meter.createHistogram(METRICS.watchStaleDuration, {
    description: 'How long a watch stayed stale (the backend unreachable), recorded when it comes back',
    unit: 's',
    advice: { explicitBucketBoundaries: STALE_BUCKETS },
  });
  const lockLost = meter.createCounter(METRICS.lockLost, {
    description: 'Held locks and leaderships lost',
    unit: '{lock}',
  });
  const configApplied = meter.createCounter(METRICS.configApplied, {
    description: 'Configuration updates applied',
    unit: '{update}',
  });
  const configRefused = meter.createCounter(METRICS.configRefused, {
    description: 'Configuration updates refused (the last good configuration stays)',
    unit: '{update}',
  });

  const connectivity = new Connectivity();
  const registrations = new Series();
  const instanceCounts = new Series();
  const locks = new Series();
  const phases = new Series();
  const series: [Observable, Series][] = [
    [registrationState, registrations],
    [instances, instanceCounts],
    [lockHeld, locks],
    [migrationPhase, phases],
  ];
  const observe: BatchObservableCallback = (result) => {
    for (const [backend, value] of connectivity.values())
      result.observe(connected, value, { [ATTRIBUTES.backend]: backend });
    for (const [gauge, points] of series)
      for (const { value, attributes } of points.values()) result.observe(gauge, value, attributes);
  };
  const gauges = [connected, registrationState, instances, lockHeld, migrationPhase];
  meter.addBatchObservableCallback(observe, gauges);

  const service = (backend: string, name: string): Attributes => ({
    [ATTRIBUTES.backend]: backend,
    [ATTRIBUTES.service]: name,
  });
  const watch = (m: WatchMessage): Attributes => ({
    [ATTRIBUTES.backend]: m.backend,
    [ATTRIBUTES.watchSubject]: m.subject,
  });
  const lock = (m: LockMessage): Attributes => ({
    [ATTRIBUTES.backend]: m.backend,
    [ATTRIBUTES.lockKind]: m.kind,
    [ATTRIBUTES.lockName]: m.name,
  });

  const handlers: ChannelHandlers = {
    registration(m) {
      const state = (s: string): Attributes => ({
        ...service(m.backend, m.service),
        [ATTRIBUTES.registrationState]: s,
      });
      if (m.previous && m.previous !== 'closed') registrations.add(state(m.previous), -1);
      if (m.state !== 'closed') registrations.add(state(m.state), 1);
      if (m.previous === 'active' && m.state === 'recovering')
        registrationLosses.add(1, service(m.backend, m.service));
    },
    session(m) {
      connectivity.apply(m);
    },
    watch(m) {
      if (m.stale) return;
      watchReconnects.add(1, watch(m));
      if (m.staleMs !== undefined) staleDuration.record(m.staleMs / 1000, watch(m));
    },
    membership(m) {
      const attributes = service(m.backend, m.service);
      instanceCounts.set(attributes, m.instances);
      if (m.kind === 'sync') {
        watchSyncs.add(1, attributes);
        return;
      }
      const change = (kind: string, n: number) => {
        if (n > 0) membershipChanges.add(n, { ...attributes, [ATTRIBUTES.membershipChange]: kind });
      };
      change('added', m.added);
      change('removed', m.removed);
      change('updated', m.updated);
    },
    lock(m) {
      if (m.event === 'held') locks.add(lock(m), 1);
      else if (m.event === 'released' || m.event === 'lost') locks.add(lock(m), -1);
      if (m.event === 'lost') lockLost.add(1, lock(m));
    },
    config(m) {
      const attributes = { [ATTRIBUTES.configPrefix]: m.prefix };
      if (m.outcome === 'applied') configApplied.add(1, attributes);
      else
        configRefused.add(1, m.error ? { ...attributes, [ATTRIBUTES.errorType]: m.error.name } : attributes);
    },
    migrationPhase(m) {
      phases.set({ [ATTRIBUTES.migrationPhase]: m.previous }, 0);
      phases.set({ [ATTRIBUTES.migrationPhase]: m.phase }, 1);
    },
  };
  return { handlers, stop: () => meter.removeBatchObservableCallback(observe, gauges) };
}
