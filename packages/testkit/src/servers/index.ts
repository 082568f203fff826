/**
 * Real-server test harnesses: etcd and Consul processes on free loopback ports with temp data dirs,
 * fault helpers (kill / restart / pause / TCP partitions) and small polling utilities.
 *
 * The binaries are found through `ROLLCALL_*_BIN`, `PATH` or the install cache filled by
 * `npx rollcall-testkit install-servers` (see `binaries.ts`).
 *
 * @packageDocumentation
 */
export {
  consulBinary,
  etcdBinary,
  etcdctlBinary,
  INSTALL_SERVERS_COMMAND,
  type LocatedBinary,
  locateBinary,
  type ServerBinaryName,
  serversDir,
} from './binaries.js';
export {
  type ConsulAgent,
  type ConsulPorts,
  type StartConsulOptions,
  startConsul,
} from './consul.js';
export { CONSUL_VERSIONS } from './consul-version.js';
export {
  type EtcdAuthOptions,
  type EtcdCluster,
  EtcdctlError,
  type EtcdctlOptions,
  type EtcdRestartOptions,
  type EtcdServer,
  type EtcdTlsFiles,
  type StartEtcdClusterOptions,
  type StartEtcdOptions,
  startEtcd,
  startEtcdCluster,
} from './etcd.js';
export {
  type CountingHttpProxy,
  type ProxyTarget,
  type RecordedRequest,
  startCountingHttpProxy,
  startTcpProxy,
  type TcpProxy,
} from './proxy.js';
export { freePort, repoRoot, type WaitForOptions, waitFor } from './util.js';
