import type { ConsulAgent, EtcdServer } from '@rollcall/testkit';

/**
 * A real etcd or Consul server as a Rollcall app meets it: the environment that points the
 * container at it (`ROLLCALL_BACKEND` and its address), its faults and its end.
 */
export interface RealServer {
  env: Record<string, string>;
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

export const etcdServer = (etcd: EtcdServer): RealServer => ({
  env: { ROLLCALL_BACKEND: 'etcd', ETCD_ENDPOINTS: etcd.endpoints.join(',') },
  pause: () => etcd.pause(),
  resume: () => etcd.resume(),
  stop: () => etcd.stop(),
});

export const consulServer = (agent: ConsulAgent): RealServer => ({
  env: { ROLLCALL_BACKEND: 'consul', CONSUL_HTTP_ADDR: agent.address },
  pause: () => agent.pause(),
  resume: () => agent.resume(),
  stop: () => agent.stop(),
});
