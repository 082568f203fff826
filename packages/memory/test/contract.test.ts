import { describeDiscoveryContract, describeKeyValueContract, describeLockContract } from '@rollcall/testkit';
import { createMemoryBackend, ManualClock, MemoryStore } from '../src/index.js';

// With a manual clock: TTLs expire when the test says so, without sleeping.
describeDiscoveryContract(
  'memory (manual clock)',
  () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    return {
      newClient: async () => createMemoryBackend({ store }),
      crash: async (client) => store.crash(client),
      outage: async () => store.outage(),
      restore: async () => store.restore(),
      elapse: async (ms) => {
        clock.advance(ms);
        store.expire();
      },
      upstreams: (_client, service) => store.watcherCount(service),
      teardown: async () => store.dispose(),
    };
  },
  { crash: true, outage: true, upstreamCount: true, propagationMs: 200, expiryGraceMs: 0, recoveryMs: 500 },
);

// With the system clock: expiry runs on the store's own timer, in real time.
describeDiscoveryContract(
  'memory (system clock)',
  () => {
    const store = new MemoryStore();
    return {
      newClient: async () => createMemoryBackend({ store }),
      crash: async (client) => store.crash(client),
      outage: async () => store.outage(),
      restore: async () => store.restore(),
      upstreams: (_client, service) => store.watcherCount(service),
      teardown: async () => store.dispose(),
    };
  },
  {
    crash: true,
    outage: true,
    upstreamCount: true,
    propagationMs: 500,
    expiryGraceMs: 500,
    recoveryMs: 1000,
  },
);

describeKeyValueContract(
  'memory',
  () => {
    const store = new MemoryStore();
    return {
      newClient: async () => createMemoryBackend({ store }),
      outage: async () => store.outage(),
      restore: async () => store.restore(),
      teardown: async () => store.dispose(),
    };
  },
  { outage: true, propagationMs: 200, recoveryMs: 1000 },
);

describeLockContract(
  'memory',
  () => {
    const clock = new ManualClock();
    const store = new MemoryStore({ clock });
    return {
      newClient: async () => createMemoryBackend({ store }),
      crash: async (client) => store.crash(client),
      outage: async () => store.outage(),
      restore: async () => store.restore(),
      elapse: async (ms) => {
        clock.advance(ms);
        store.expire();
      },
      teardown: async () => store.dispose(),
    };
  },
  { crash: true, outage: true, handoffMs: 500, expiryGraceMs: 500 },
);
