import { describePhaseOnRealServers } from './real-servers.js';

// Compliance suites in dual-write on real Consul and etcd; Consul (the registry read) goes down in the
// outage tests, and the lock fault tests run here (plain Consul clients still lock in this phase).
describePhaseOnRealServers('dual-write', { crash: true, outage: 'from', lockFaults: 'from' });
