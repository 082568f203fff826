import { type ConsulAgent, describeLockContract, startConsul } from '@rollcall/testkit';
import { afterAll, vi } from 'vitest';
import { type ConsulBackend, simulateCrash } from '../src/index.js';
import { backendOn } from './helpers.js';

// Real Consul sessions: the TTL is 10 s at least and a dead holder's session lives up to 2 x TTL.
// A crashed holder's session lives up to 2 x its 10 s TTL on Consul.
vi.setConfig({ testTimeout: 90_000 });

// One real Consul 1.8.7 dev agent for the lock contract. Outage = the agent is killed; restore = a
// new dev agent on the same ports: it has forgotten every session, so every held lock is lost.
let agent: Promise<ConsulAgent> | undefined;
const shared = () => {
  agent ??= startConsul();
  return agent;
};
afterAll(async () => {
  await (await agent)?.stop();
});

describeLockContract(
  'consul',
  async () => {
    const a = await shared();
    return {
      newClient: async () => backendOn(a),
      crash: async (client: unknown) => simulateCrash(client as ConsulBackend),
      outage: async () => a.kill(),
      restore: async () => a.restart(),
    };
  },
  {
    ttlSeconds: 10,
    // A release deletes the lock key and wakes the head waiter's blocking query at once (~5 ms measured).
    handoffMs: 1000,
    // Consul invalidates a session exactly 2 x TTL after its last renewal (measured: 20.04 s for a
    // 10 s TTL); renewals are ttl/2 apart, so a crashed holder's lock passes on 1.5-2 x TTL after the
    // crash: up to TTL + 10 s, plus the hand-off.
    expiryGraceMs: 11_000,
    iterations: 60,
    crash: true,
    outage: true,
  },
);
