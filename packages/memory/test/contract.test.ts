import { describeDiscoveryContract, describeKeyValueContract, describeLockContract } from '@rollcall/testkit';
import { createMemoryBackend, ManualClock, MemoryStore } from '../src/index.js';

/** Clients over one store with all fault hooks; with a manual clock TTLs expire when the test says so. */
function harness(clock?: ManualClock) {
  const store = new MemoryStore(clock ? { clock } : {});
  // A store in outage: any call that reached it would fail, so bad input must be refused before.
  const unreachable = new MemoryStore();
  unreachable.outage();
  return {
    newClient: async () => createMemoryBackend({ store }),
    unreachableClient: async () => createMemoryBackend({ store: unreachable }),
    crash: async (client: object) => store.crash(client),
    outage: async () => store.outage(),
    restore: async () => store.restore(),
    upstreams: (_client: object, service: string) => store.watcherCount(service),
    teardown: async () => {
      store.dispose();
      unreachable.dispose();
    },
    ...(clock
      ? {
          elapse: async (ms: number) => {
            clock.advance(ms);
            store.expire();
          },
        }
      : {}),
  };
}

const faults = { crash: true, outage: true, upstreamCount: true } as const;

describeDiscoveryContract('memory (manual clock)', () => harness(new ManualClock()), {
  ...faults,
  propagationMs: 200,
  expiryGraceMs: 0,
  recoveryMs: 500,
});

// With the system clock: expiry runs on the store's own timer, in real time.
describeDiscoveryContract('memory (system clock)', () => harness(), {
  ...faults,
  propagationMs: 500,
  expiryGraceMs: 500,
  recoveryMs: 1000,
});

describeKeyValueContract('memory', () => harness(), { outage: true, propagationMs: 200, recoveryMs: 1000 });

describeLockContract('memory', () => harness(new ManualClock()), {
  crash: true,
  outage: true,
  handoffMs: 500,
  expiryGraceMs: 500,
  list: true,
});
