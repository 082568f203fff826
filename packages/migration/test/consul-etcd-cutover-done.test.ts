import { describePhaseOnRealServers, serversForFile } from './real-servers.js';

// cutover and done on one Consul agent and one etcd: both read etcd.
const servers = serversForFile();

// cutover still registers and writes in both: discovery and key/value with a client's crash and an
// etcd outage (a registration lost in one registry of two, then restored). Locks as in dual-write.
describePhaseOnRealServers('cutover', { crash: true, outage: 'to', locks: false }, servers);

// done uses etcd only: discovery (with a client's crash, now in one registry) and key/value (their
// outages are cutover's), and the lock suite with every fault on etcd's 2 s TTL.
describePhaseOnRealServers('done', { crash: true, lockCrash: true, lockOutage: 'to' }, servers);
