import { type DiscoveryEvent, type KvEvent, type ServiceInstance, type Snapshot } from '@rollcall/core';
import {
  instanceEquals,
  type MirrorState,
  type MirrorView,
  makeSnapshot,
  patchSorted,
} from '@rollcall/core/driver';

/**
 * Turns a merged service's state into discovery events. Snapshots are cached by state version,
 * and a change patches the previous sorted list instead of re-sorting it (as core's own view does).
 */
export class SnapshotView implements MirrorView<ServiceInstance, DiscoveryEvent> {
  private cached: { version: number; entriesVersion: number; snapshot: Snapshot } | undefined;

  constructor(private readonly service: string) {}

  snapshot(state: MirrorState<ServiceInstance>): Snapshot {
    const cached = this.cached;
    if (cached?.version === state.version) return cached.snapshot;
    const instances =
      cached?.entriesVersion === state.entriesVersion
        ? cached.snapshot.instances
        : makeSnapshot(this.service, state.entries.values(), false, 0).instances;
    return this.keep(state, instances);
  }

  equals = instanceEquals;

  sync: MirrorView<ServiceInstance, DiscoveryEvent>['sync'] = (state) => ({
    type: 'sync',
    snapshot: this.snapshot(state),
  });

  change: MirrorView<ServiceInstance, DiscoveryEvent>['change'] = (state, added, updated, removed) => {
    const addedInstances = added.map(([, v]) => v);
    const updatedInstances = updated.map(([, v]) => v);
    const previous = this.cached;
    if (previous?.entriesVersion === state.entriesVersion - 1) {
      const instances = patchSorted(
        previous.snapshot.instances,
        [...addedInstances, ...updatedInstances],
        removed.map(([id]) => id),
      );
      this.keep(state, instances);
    }
    return {
      type: 'change',
      snapshot: this.snapshot(state),
      added: addedInstances,
      removed: removed.map(([, v]) => v),
      updated: updatedInstances,
    };
  };

  stale: MirrorView<ServiceInstance, DiscoveryEvent>['stale'] = (state, error) => ({
    type: 'stale',
    snapshot: this.snapshot(state),
    error,
  });

  private keep(state: MirrorState<ServiceInstance>, instances: readonly ServiceInstance[]): Snapshot {
    const snapshot = Object.freeze({
      service: this.service,
      instances,
      stale: state.stale,
      syncedAt: state.syncedAt,
    });
    this.cached = { version: state.version, entriesVersion: state.entriesVersion, snapshot };
    return snapshot;
  }
}

/** Turns a merged prefix's state into key/value events. */
export const kvView: MirrorView<string, KvEvent> = {
  equals: (a, b) => a === b,
  sync: (state) => ({ type: 'sync', entries: new Map(state.entries) }),
  change: (_state, added, updated, removed) => ({
    type: 'change',
    put: new Map([...added, ...updated]),
    deleted: removed.map(([key]) => key),
  }),
  stale: (_state, error) => ({ type: 'stale', error }),
};
