import { describeLockContract, type EtcdServer, startEtcd } from '@rollcall/testkit';
import { createEtcdBackend, simulateCrash } from '../src/index.js';

// The shared lock compliance suite against a real etcd:
// crash = a client that stops its keepalive and drops its connection without revoking (a killed process);
// outage = the etcd process frozen with SIGSTOP longer than the TTL, restore = SIGCONT.
describeLockContract(
  'etcd',
  async () => {
    const etcd: EtcdServer = await startEtcd();
    return {
      newClient: async () => createEtcdBackend({ endpoints: etcd.endpoints }),
      crash: async (client) => simulateCrash(client),
      outage: async () => etcd.pause(),
      restore: async () => etcd.resume(),
      teardown: () => etcd.stop(),
    };
  },
  {
    ttlSeconds: 2,
    // A release reaches the next waiter as one watch event and one read (~2 ms on loopback); 1 s leaves room
    // for a loaded machine.
    handoffMs: 1000,
    // The lease expires at most ttl after the last keepalive; etcd's expiry loop runs every 500 ms.
    expiryGraceMs: 1500,
    crash: true,
    outage: true,
  },
);
