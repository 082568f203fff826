import { describePhaseOnRealServers, serversForFile } from './real-servers.js';

// The three compliance suites in shadow and dual-read on one Consul agent and one etcd.
const servers = serversForFile();

// shadow reads Consul as dual-write does (whose file runs the outages) and follows etcd beside it
// without publishing it: a client's crash only.
describePhaseOnRealServers('shadow', { crash: true }, servers);

// dual-read merges both registries: a client's crash must leave both lists. One registry down keeps
// answering from the other (outages.test.ts); the suites' outage tests want both down, which the
// memory -> memory suites cover.
describePhaseOnRealServers('dual-read', { crash: true }, servers);
