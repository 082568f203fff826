import { createConsulBackend } from '@rollcall/consul';
import { type ConsulAgent, startConsul } from '@rollcall/testkit';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { soak } from './soak.js';

let agent: ConsulAgent;
beforeAll(async () => {
  agent = await startConsul();
});
afterAll(async () => {
  await agent?.stop();
});

it('consul soak: 6 processes registering, deregistering and crashing; 2 watchers fold every event and end up right', async () => {
  const observer = createConsulBackend({ host: agent.host, port: agent.port, pollIntervalMs: 5000 });
  try {
    const { events, kills } = await soak({
      backend: 'consul',
      address: agent.address,
      churnMs: 30_000,
      // A killed process's instances leave by their ttl (2 s) and the next poll (5 s).
      settleMs: 20_000,
      observer,
    });
    expect(kills).toBeGreaterThan(3);
    // Pollers merge the churn of a 5 s interval into one change.
    expect(events).toBeGreaterThan(5);
  } finally {
    await observer.close();
  }
}, 120_000);
