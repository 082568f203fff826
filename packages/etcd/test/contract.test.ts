import {
  describeDiscoveryContract,
  describeKeyValueContract,
  describeLockContract,
  type EtcdServer,
  freePort,
  startEtcd,
} from '@rollcall/testkit';
import { createEtcdBackend, type EtcdBackend, simulateCrash } from '../src/index.js';

// The shared compliance suites against a real etcd (one server per suite), every capability on:
// crash = a client that stops its keepalive and drops its connection without revoking (a killed process);
// outage = the etcd process frozen with SIGSTOP (connections stay open, nothing answers), restore = SIGCONT.
async function harness() {
  const etcd: EtcdServer = await startEtcd();
  return {
    newClient: async () => createEtcdBackend({ endpoints: etcd.endpoints }),
    crash: async (client: object) => simulateCrash(client as EtcdBackend),
    outage: async () => etcd.pause(),
    restore: async () => etcd.resume(),
    upstreams: (client: object, service: string) => (client as EtcdBackend).upstreams(service),
    // A closed loopback port: any call would fail, so bad input must be refused before one.
    unreachableClient: async () =>
      createEtcdBackend({ endpoints: [`http://127.0.0.1:${await freePort()}`], callTimeoutMs: 500 }),
    teardown: () => etcd.stop(),
  };
}

describeDiscoveryContract('etcd', harness, {
  ttlSeconds: 2,
  // A watch event reaches another client in ~1 ms on loopback; 1 s leaves room for a loaded CI machine.
  propagationMs: 1000,
  // The lease expires at most ttl after the last keepalive; etcd's expiry loop runs every 500 ms.
  expiryGraceMs: 2000,
  // A frozen server is noticed by the gRPC keepalive (5 s ping + 5 s timeout); recovery backs off up to 5 s.
  recoveryMs: 15_000,
  crash: true,
  outage: true,
  upstreamCount: true,
});

describeKeyValueContract('etcd', harness, {
  outage: true,
  propagationMs: 1000,
  recoveryMs: 15_000,
  // The default namespace '/rollcall/' seen through the default kvPrefix '/'.
  reservedKeys: ['rollcall/services/', 'rollcall/locks/', 'rollcall/elections/'],
});

describeLockContract('etcd', harness, {
  ttlSeconds: 2,
  // A release reaches the next waiter as one watch event and one read (~2 ms on loopback); 1 s leaves room
  // for a loaded machine.
  handoffMs: 1000,
  // The lease expires at most ttl after the last keepalive; etcd's expiry loop runs every 500 ms.
  expiryGraceMs: 1500,
  crash: true,
  outage: true,
  list: true,
  // A lock's holder is its queue key's lease, in hex.
  lockHolder: /^lease [0-9a-f]+$/,
});
