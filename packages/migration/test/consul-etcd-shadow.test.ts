import { describePhaseOnRealServers } from './real-servers.js';

// Compliance suites in shadow on real Consul and etcd. Reads come from Consul as in dual-write, whose
// file runs the outage and lock fault tests: here only a client's crash.
describePhaseOnRealServers('shadow', { crash: true });
