import { describePhaseOnRealServers } from './real-servers.js';

// Compliance suites in done on real Consul and etcd (only etcd is used now): etcd goes down in the outage
// tests, and the lock fault tests run with etcd's 2 s TTL.
describePhaseOnRealServers('done', { crash: true, outage: 'to', lockFaults: 'to' });
