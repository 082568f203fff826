import { describePhaseOnRealServers } from './real-servers.js';

// Compliance suites in cutover on real Consul and etcd; etcd (the registry read) goes down in the outage tests.
describePhaseOnRealServers('cutover', { crash: true, outage: 'to' });
