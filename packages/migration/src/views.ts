import type { KvEvent } from '@rollcall/core';
import type { MirrorView } from '@rollcall/core/driver';

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
