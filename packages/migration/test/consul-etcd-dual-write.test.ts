import { describePhaseOnRealServers, serversForFile } from './real-servers.js';

// The three compliance suites in dual-write on real Consul and etcd. Reads come from Consul, so its
// outage runs here (discovery, kv, and a held lock whose Consul session is lost: the etcd half is
// given up too). A dead holder's lock passing on is each engine's own (the Consul and etcd suites),
// composed by the migrating lease the same way in every phase (memory -> memory; etcd in `done`):
// with Consul's 10 s session minimum it would cost 40 s here and prove nothing more.
describePhaseOnRealServers(
  'dual-write',
  { crash: true, outage: 'from', lockOutage: 'from' },
  serversForFile(),
);
