import { type ConsulBackend, simulateCrash as crashConsul, createConsulBackend } from '@rollcall/consul';
import { type Backend, type Logger } from '@rollcall/core';
import { simulateCrash as crashEtcd, createEtcdBackend, type EtcdBackend } from '@rollcall/etcd';
import {
  type ConsulAgent,
  describeDiscoveryContract,
  describeKeyValueContract,
  describeLockContract,
  type EtcdServer,
  freePort,
  startConsul,
  startEtcd,
  startTcpProxy,
  type TcpProxy,
} from '@rollcall/testkit';
import { afterAll, describe } from 'vitest';
import {
  createMigratingBackend,
  type MigratingBackend,
  type MigrationPhase,
  type Side,
} from '../src/index.js';

/** A real Consul agent and a real etcd (behind a TCP proxy that can refuse connections), one pair per test file. */
export interface RealServers {
  agent: ConsulAgent;
  etcd: EtcdServer;
  proxy: TcpProxy;
}

/**
 * Starts the servers on first use and stops them after the file. Clients reach etcd through the
 * proxy, so an etcd outage is immediate (connections refused and reset) rather than noticed by a
 * keepalive timeout.
 */
export function serversForFile(): () => Promise<RealServers> {
  let started: Promise<RealServers> | undefined;
  afterAll(async () => {
    const s = await started?.catch(() => undefined);
    await s?.proxy.close();
    await Promise.allSettled([s?.agent.stop(), s?.etcd.stop()]);
  });
  return () => {
    started ??= (async () => {
      const [agent, etcd] = await Promise.all([startConsul(), startEtcd({ tmpDir: '/dev/shm' })]);
      const proxy = await startTcpProxy({ host: '127.0.0.1', port: etcd.clientPort });
      return { agent, etcd, proxy };
    })();
    return started;
  };
}

/**
 * A Consul client as the fleet would make it: blocking queries (a change is seen at once, then at
 * most one request per 5 s), or `poll` (one plain read per 5 s). `resyncGraceMs`: how long
 * instances missing after the agent lost its state stay listed (default 10 s, core's).
 */
export function consulOn(
  s: RealServers,
  watchMode: 'blocking' | 'poll' = 'blocking',
  extra: { resyncGraceMs?: number } = {},
): ConsulBackend {
  return createConsulBackend({ host: s.agent.host, port: s.agent.port, watchMode, ...extra });
}

/** An etcd client, through the proxy. */
export function etcdOn(s: RealServers): EtcdBackend {
  return createEtcdBackend({ endpoints: [s.proxy.url] });
}

/** A migrating client, Consul -> etcd. */
export function migratingOn(
  s: RealServers,
  phase: MigrationPhase,
  extra: { phaseKey?: string; logger?: Logger; acknowledge?: boolean } = {},
): MigratingBackend {
  return createMigratingBackend({ from: consulOn(s), to: etcdOn(s), phase, ...extra });
}

/** Takes a registry down: Consul is killed (and restarts empty); etcd's proxy refuses and resets connections. */
export async function takeDown(s: RealServers, side: Side): Promise<void> {
  if (side === 'from') await s.agent.kill();
  else {
    s.proxy.refuse();
    s.proxy.reset();
  }
}

export async function bringBack(s: RealServers, side: Side): Promise<void> {
  if (side === 'from') await s.agent.restart();
  else await s.proxy.accept();
}

/**
 * The keys the migrating kv refuses on Consul -> etcd with default options: Consul's lock keys
 * (`lockPrefix` `rollcall/`) and etcd's registry, lock and election subtrees (namespace `/rollcall/`).
 */
export const RESERVED_KEYS = [
  'rollcall/services/',
  'rollcall/locks/',
  'rollcall/elections/',
  'rollcall/fencing-epoch',
] as const;

/**
 * The fault tests a phase runs on real servers. Every phase runs the three suites; the memory ->
 * memory suites run every fault in every phase, and here the slow ones (Consul's 5 s watch
 * interval, its 10 s session minimum) run where they prove something the other phases do not
 * (see the phase files).
 */
export interface PhaseFaults {
  /** Discovery: a client dying without closing (both registries). */
  crash?: boolean;
  /** Discovery and kv: the registry taken down by the outage tests, if they run. */
  outage?: Side;
  /** Locks: a holder (and a leader) dying without closing. */
  lockCrash?: boolean;
  /** Locks: the registry taken down under a held lock, if that test runs. */
  lockOutage?: Side;
}

/** A migrating client of a Consul agent and an etcd that cannot be reached (closed loopback ports). */
export async function unreachableMigrating(phase: MigrationPhase): Promise<MigratingBackend> {
  const [consulPort, etcdPort] = await Promise.all([freePort(), freePort()]);
  return createMigratingBackend({
    from: createConsulBackend({ host: '127.0.0.1', port: consulPort, callTimeoutMs: 500 }),
    to: createEtcdBackend({ endpoints: [`http://127.0.0.1:${etcdPort}`], callTimeoutMs: 500 }),
    phase,
  });
}

/**
 * The discovery, key/value and lock compliance suites for migrating clients in `phase`, Consul ->
 * etcd, on the servers `servers` gives (one Consul agent and one etcd per file, shared by the
 * phases the file runs).
 */
export function describePhaseOnRealServers(
  phase: MigrationPhase,
  faults: PhaseFaults,
  servers: () => Promise<RealServers>,
): void {
  const readsConsul = phase === 'dual-write' || phase === 'shadow' || phase === 'dual-read';
  const harness = (down: Side | undefined) => async () => {
    const s = await servers();
    return {
      newClient: async (): Promise<Backend> => migratingOn(s, phase),
      unreachableClient: async (): Promise<Backend> => unreachableMigrating(phase),
      crash: async (client: object) => {
        const m = client as MigratingBackend;
        crashConsul(m.from as ConsulBackend);
        crashEtcd(m.to);
      },
      outage: async () => takeDown(s, down ?? 'to'),
      restore: async () => bringBack(s, down ?? 'to'),
      // One backend watch per service in each registry the phase follows.
      upstreams: (client: object, service: string) => {
        const m = client as MigratingBackend;
        return Math.max(
          (m.from as ConsulBackend).pollerCount(service),
          (m.to as EtcdBackend).upstreams(service),
        );
      },
    };
  };
  describe(`consul -> etcd in ${phase}`, () => {
    describeDiscoveryContract(`migrating (${phase})`, harness(faults.outage), {
      ttlSeconds: 2,
      // A change in Consul reaches a blocking query at once, but the next one starts 5 s after the last.
      propagationMs: readsConsul ? 6000 : 1000,
      // A dead client's TTL check goes critical at its TTL; the next Consul poll (<= 5 s) drops it.
      expiryGraceMs: readsConsul ? 6000 : 2000,
      // Consul: restart, poller backoff (<= 5 s) and a confirming poll; etcd: reconnect and re-sync.
      recoveryMs: 25_000,
      eventPerWrite: !readsConsul,
      crash: faults.crash === true,
      outage: faults.outage !== undefined,
      upstreamCount: true,
    });
    describeKeyValueContract(`migrating (${phase})`, harness(faults.outage), {
      propagationMs: readsConsul ? 2500 : 1000,
      recoveryMs: 25_000,
      outage: faults.outage !== undefined,
      eventPerWrite: !readsConsul,
      reservedKeys: RESERVED_KEYS,
    });
    const consulLocks = phase !== 'done';
    describeLockContract(`migrating (${phase})`, harness(faults.lockOutage), {
      // Consul's session TTL is 10 s at least; `done` takes locks in etcd only.
      ttlSeconds: consulLocks ? 10 : 2,
      handoffMs: 1500,
      // A dead holder's Consul session is invalidated up to 2 x TTL after its last renewal.
      expiryGraceMs: consulLocks ? 11_000 : 1500,
      iterations: 40,
      crash: faults.lockCrash === true,
      outage: faults.lockOutage !== undefined,
    });
  });
}
