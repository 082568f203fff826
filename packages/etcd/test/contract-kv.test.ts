import { describeKeyValueContract, type EtcdServer, startEtcd } from '@rollcall/testkit';
import { vi } from 'vitest';
import { createEtcdBackend } from '../src/index.js';

// Real servers and real timeouts: the root config's 60 s limits do not reach workspace projects.
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

// The shared key/value compliance suite against a real etcd; outage = SIGSTOP of the etcd process.
describeKeyValueContract(
  'etcd',
  async () => {
    const etcd: EtcdServer = await startEtcd();
    return {
      newClient: async () => createEtcdBackend({ endpoints: etcd.endpoints }),
      outage: async () => etcd.pause(),
      restore: async () => etcd.resume(),
      teardown: () => etcd.stop(),
    };
  },
  { outage: true, propagationMs: 1000, recoveryMs: 15_000 },
);
