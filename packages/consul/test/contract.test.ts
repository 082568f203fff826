import {
  type ConsulAgent,
  describeDiscoveryContract,
  describeKeyValueContract,
  startConsul,
} from '@rollcall/testkit';
import { afterAll, vi } from 'vitest';
import { type ConsulBackend, simulateCrash } from '../src/index.js';
import { backendOn, POLL_MS } from './helpers.js';

// Real servers and 5 s polls: the per-test default of 5 s is too short (the root config's 60 s is not inherited by projects).
vi.setConfig({ testTimeout: 60_000, hookTimeout: 60_000 });

// One real Consul 1.8.7 dev agent for this file. Outage = the agent is killed; restore = a new dev
// agent on the same ports: everything it held is lost, so registrations must come back by themselves.
let agent: Promise<ConsulAgent> | undefined;
const shared = () => {
  agent ??= startConsul();
  return agent;
};
afterAll(async () => {
  await (await agent)?.stop();
});

const harness = async () => {
  const a = await shared();
  return {
    newClient: async () => backendOn(a),
    crash: async (client: unknown) => simulateCrash(client as ConsulBackend),
    outage: async () => a.kill(),
    restore: async () => a.restart(),
    upstreams: (client: unknown, service: string) => (client as ConsulBackend).pollerCount(service),
  };
};

describeDiscoveryContract('consul (poll)', harness, {
  ttlSeconds: 2,
  // A write is seen by the next poll: at most one poll interval plus the request.
  propagationMs: POLL_MS + 1000,
  // Consul marks a TTL check critical exactly at its TTL; ?passing drops it at once.
  expiryGraceMs: 0,
  // Poll interval + error backoff (<= 5 s) + one confirming poll after an agent restart.
  recoveryMs: 20_000,
  eventPerWrite: false,
  crash: true,
  outage: true,
  upstreamCount: true,
});

describeKeyValueContract(
  'consul',
  async () => {
    const a = await shared();
    return {
      newClient: async () => backendOn(a),
      outage: async () => a.kill(),
      restore: async () => a.restart(),
    };
  },
  { propagationMs: 2500, recoveryMs: 15_000, outage: true },
);
