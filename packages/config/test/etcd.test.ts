import { createEtcdBackend } from '@rollcall/etcd';
import { startEtcd } from '@rollcall/testkit';
import { Etcd3 } from 'etcd3';
import { describeLiveConfig } from './live-config-suite.js';

// Real etcd: "backend down" is etcd killed (SIGKILL), "back" is etcd restarted on its data dir.
describeLiveConfig('etcd', async () => {
  const server = await startEtcd();
  const raw = new Etcd3({ hosts: server.endpoints });
  return {
    newClient: async () =>
      createEtcdBackend({ endpoints: server.endpoints, dialTimeoutMs: 1000, callTimeoutMs: 1000 }),
    // One etcd transaction (the default kvPrefix '/' maps key k to etcd key '/k').
    batch: async (_client, put, deleted = []) => {
      const etcdKey = (k: string) => `/${k.replace(/^\//, '')}`;
      await raw
        .if(etcdKey(Object.keys(put)[0] ?? deleted[0]!), 'Version', '>', -1)
        .then(
          ...Object.entries(put).map(([k, v]) => raw.put(etcdKey(k)).value(v)),
          ...deleted.map((k) => raw.delete().key(etcdKey(k))),
        )
        .commit();
    },
    outage: () => server.kill(),
    restore: async () => {
      if (!(await server.isHealthy())) await server.restart();
    },
    teardown: async () => {
      raw.close();
      await server.stop();
    },
  };
});
