import { describePhaseOnRealServers, serversForFile } from './real-servers.js';

// The three compliance suites in dual-write on real Consul and etcd: reads come from Consul, so its
// outage runs here (discovery, kv, and a held lock whose Consul session is lost: the etcd half is
// given up too). A dead holder's lock passing on is the engines' own business (Consul's and etcd's
// suites) composed by the migrating lease (memory -> memory, every phase; etcd in `done` here):
// with Consul's 10 s session minimum it would cost 40 s here for nothing new.
describePhaseOnRealServers(
  'dual-write',
  { crash: true, outage: 'from', lockOutage: 'from' },
  serversForFile(),
);
