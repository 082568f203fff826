import { describePhaseOnRealServers } from './real-servers.js';

// Compliance suites in dual-read on real Consul and etcd, with a client's crash. One registry down in
// this phase keeps answering from the other (tested in outages.test.ts); the suites' outage tests want
// both down, which the memory -> memory suites cover.
describePhaseOnRealServers('dual-read', { crash: true });
