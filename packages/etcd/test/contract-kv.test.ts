import { describeKeyValueContract, type EtcdServer, startEtcd } from '@rollcall/testkit';
import { createEtcdBackend } from '../src/index.js';

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
