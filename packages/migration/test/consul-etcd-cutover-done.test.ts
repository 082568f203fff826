import { describePhaseOnRealServers, serversForFile } from './real-servers.js';

// The three compliance suites in cutover and done on one Consul agent and one etcd: both read etcd.
const servers = serversForFile();

// cutover still registers and writes in both: a client's crash and an etcd outage (a registration
// lost in one registry of two, then restored).
describePhaseOnRealServers('cutover', { crash: true, outage: 'to' }, servers);

// done uses etcd only: a client's crash (reads and the etcd outage are cutover's), and every lock
// fault on etcd's 2 s TTL.
describePhaseOnRealServers('done', { crash: true, lockCrash: true, lockOutage: 'to' }, servers);
