import { createEtcdBackend } from '@rollcall/etcd';
import { startEtcd } from '@rollcall/testkit';
import { describeResolverSuite } from './resolver-suite.js';

// Real etcd. Outage = the etcd process frozen with SIGSTOP (connections stay open, nothing answers).
// The client pings every 1 s (etcd told to accept that) so the freeze is noticed within ~2 s.
describeResolverSuite(
  'etcd',
  async () => {
    const etcd = await startEtcd({ name: 'grpc-resolver', extraArgs: ['--grpc-keepalive-min-time=500ms'] });
    const servers = createEtcdBackend({ endpoints: etcd.endpoints });
    const client = createEtcdBackend({ endpoints: etcd.endpoints, keepaliveMs: 1000 });
    return {
      servers,
      client,
      outage: async () => etcd.pause(),
      restore: async () => etcd.resume(),
      teardown: async () => {
        await Promise.all([servers.close(), client.close()]);
        await etcd.stop();
      },
    };
  },
  // The bound of the issue: a change reaches the channel within 1 s (a watch event takes ~1 ms).
  { propagationMs: 1000, staleMs: 10_000 },
);
