import type { BatchObservableCallback, Meter, Observable } from '@opentelemetry/api';
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
 * messages; `stop()` detaches the collection callback. Gauges and counters are kept in
 * {@link Series} and handed over when the SDK collects; the stale-period histogram records
 * directly (a rare event: a watch coming back).
 */
export function recordChannels(meter: Meter): { handlers: ChannelHandlers; stop(): void } {
  const { backend, service, watchSubject, lockKind, lockName, configPrefix, errorType } = ATTRIBUTES;
  const observed: [Observable, Series][] = [];
  /** An observable instrument reporting `series`. */
  const observe = (instrument: Observable, names: string[]): Series => {
    const series = new Series(names);
    observed.push([instrument, series]);
    return series;
  };
  const gauge = (name: string, description: string, unit: string | undefined, names: string[]) =>
    observe(meter.createObservableGauge(name, { description, ...(unit ? { unit } : {}) }), names);
  const counter = (name: string, description: string, unit: string, names: string[]) =>
    observe(meter.createObservableCounter(name, { description, unit }), names);

  const connected = meter.createObservableGauge(METRICS.backendConnected, {
    description: 'Whether the backend confirms this process liveness sessions (1) or not (0)',
  });
  const registrations = gauge(
    METRICS.registrationState,
    'Registrations of this process per state',
    '{registration}',
    [backend, service, ATTRIBUTES.registrationState],
  );
  const instances = gauge(
    METRICS.serviceInstances,
    'Instances of the service in the last list a watch of this process read',
    '{instance}',
    [backend, service],
  );
  const locksHeld = gauge(METRICS.lockHeld, 'Locks and leaderships this process holds', '{lock}', [
    backend,
    lockKind,
    lockName,
  ]);
  const phases = gauge(
    METRICS.migrationPhase,
    'The migration phase this process follows (1), and the phases it left (0)',
    undefined,
    [ATTRIBUTES.migrationPhase],
  );
  const losses = counter(
    METRICS.registrationLosses,
    'Registrations the backend dropped (each is re-registered by itself)',
    '{loss}',
    [backend, service],
  );
  const changes = counter(
    METRICS.membershipChanges,
    'Instances added, removed or updated in the services this process watches',
    '{instance}',
    [backend, service, ATTRIBUTES.membershipChange],
  );
  const syncs = counter(
    METRICS.watchSyncs,
    'Full lists read by service watches (the first read and every re-sync)',
    '{sync}',
    [backend, service],
  );
  const reconnects = counter(METRICS.watchReconnects, 'Stale watches that came back', '{reconnect}', [
    backend,
    watchSubject,
  ]);
  const locksLost = counter(METRICS.lockLost, 'Held locks and leaderships lost', '{lock}', [
    backend,
    lockKind,
    lockName,
  ]);
  const applied = counter(METRICS.configApplied, 'Configuration updates applied', '{update}', [configPrefix]);
  const refused = counter(
    METRICS.configRefused,
    'Configuration updates refused (the last good configuration stays)',
    '{update}',
    [configPrefix, errorType],
  );
  const staleDuration = meter.createHistogram(METRICS.watchStaleDuration, {
    description: 'How long a watch stayed stale (the backend unreachable), recorded when it comes back',
    unit: 's',
    advice: { explicitBucketBoundaries: STALE_BUCKETS },
  });

  const connectivity = new Connectivity();
  const collect: BatchObservableCallback = (result) => {
    for (const [name, value] of connectivity.values()) result.observe(connected, value, { [backend]: name });
    for (const [instrument, series] of observed)
      for (const { value, attributes } of series.values()) result.observe(instrument, value, attributes);
  };
  const instruments = [connected, ...observed.map(([instrument]) => instrument)];
  meter.addBatchObservableCallback(collect, instruments);

  const handlers: ChannelHandlers = {
    registration(m) {
      if (m.previous && m.previous !== 'closed') registrations.add(-1, m.backend, m.service, m.previous);
      if (m.state !== 'closed') registrations.add(1, m.backend, m.service, m.state);
      if (m.previous === 'active' && m.state === 'recovering') losses.add(1, m.backend, m.service);
    },
    session(m) {
      connectivity.apply(m);
    },
    watch(m) {
      if (m.stale) return;
      reconnects.add(1, m.backend, m.subject);
      if (m.staleMs !== undefined)
        staleDuration.record(m.staleMs / 1000, { [backend]: m.backend, [watchSubject]: m.subject });
    },
    membership(m) {
      instances.set(m.instances, m.backend, m.service);
      if (m.kind === 'sync') syncs.add(1, m.backend, m.service);
      if (m.added > 0) changes.add(m.added, m.backend, m.service, 'added');
      if (m.removed > 0) changes.add(m.removed, m.backend, m.service, 'removed');
      if (m.updated > 0) changes.add(m.updated, m.backend, m.service, 'updated');
    },
    lock(m) {
      if (m.event === 'held') locksHeld.add(1, m.backend, m.kind, m.name);
      else if (m.event === 'released' || m.event === 'lost') locksHeld.add(-1, m.backend, m.kind, m.name);
      if (m.event === 'lost') locksLost.add(1, m.backend, m.kind, m.name);
    },
    config(m) {
      if (m.outcome === 'applied') applied.add(1, m.prefix);
      // `_OTHER`: the semantic conventions' error.type when the error is not known.
      else refused.add(1, m.prefix, m.error?.name ?? '_OTHER');
    },
    migrationPhase(m) {
      phases.set(0, m.previous);
      phases.set(1, m.phase);
    },
  };
  return { handlers, stop: () => meter.removeBatchObservableCallback(collect, instruments) };
}
