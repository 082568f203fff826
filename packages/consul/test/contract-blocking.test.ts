import { type ConsulAgent, describeDiscoveryContract, startConsul } from '@rollcall/testkit';
import { afterAll } from 'vitest';
import { type ConsulBackend, simulateCrash } from '../src/index.js';
import { backendOn, POLL_MS } from './helpers.js';

// The discovery contract again with watchMode 'blocking' (blocking queries, still at most one
// request per 5 s per service), on its own agent so that it can run beside the poll-mode file.
let agent: Promise<ConsulAgent> | undefined;
afterAll(async () => {
  await (await agent)?.stop();
});

describeDiscoveryContract(
  'consul (blocking)',
  async () => {
    agent ??= startConsul();
    const a = await agent;
    return {
      newClient: async () => backendOn(a, { watchMode: 'blocking' }),
      crash: async (client: unknown) => simulateCrash(client as ConsulBackend),
      outage: async () => a.kill(),
      restore: async () => a.restart(),
      upstreams: (client: unknown, service: string) => (client as ConsulBackend).pollerCount(service),
    };
  },
  {
    ttlSeconds: 2,
    propagationMs: POLL_MS + 1000,
    expiryGraceMs: 0,
    recoveryMs: 20_000,
    eventPerWrite: false,
    crash: true,
    outage: true,
    upstreamCount: true,
  },
);
