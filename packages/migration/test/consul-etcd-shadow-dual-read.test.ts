import { describePhaseOnRealServers, serversForFile } from './real-servers.js';

// shadow and dual-read on one Consul agent and one etcd.
const servers = serversForFile();

// shadow reads Consul as dual-write does, and follows etcd beside it without publishing it: the
// discovery suite runs here. Its key/value and lock rules are dual-write's (phases.test.ts checks
// the table), whose file runs those suites, the crash and the outages.
describePhaseOnRealServers('shadow', { crash: true, kv: false, locks: false }, servers);

// dual-read merges both registries: discovery (with a client's crash, which must leave both lists)
// and key/value. One registry down keeps answering from the other (outages.test.ts); the suites'
// outage tests want both down, which the memory -> memory suites cover. Locks as in dual-write.
describePhaseOnRealServers('dual-read', { crash: true, locks: false }, servers);
