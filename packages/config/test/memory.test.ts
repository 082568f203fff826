import { createMemoryBackend, type MemoryBackend, MemoryStore } from '@rollcall/memory';
import { describeLiveConfig } from './live-config-suite.js';

describeLiveConfig(
  'memory',
  async () => {
    const store = new MemoryStore();
    return {
      newClient: async () => createMemoryBackend({ store }),
      batch: (client, put, deleted) => (client as MemoryBackend).kv.batch(put, deleted),
      outage: async () => store.outage(),
      restore: async () => store.restore(),
      teardown: async () => store.dispose(),
    };
  },
  1000,
);
