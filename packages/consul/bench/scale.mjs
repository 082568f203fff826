// Issue 10, item 8: 10,000 instances registered on one Consul agent from one process, at once,
// with the agent's default connection limit (200 per client address). Rollcall's bounded pools
// (16 connections for calls, 64 for blocking queries) against the raw `consul` client firing the
// same registrations with Node's default agent, on a fresh agent each. Counts successes, failures,
// the time to register them all and the time to close; then how many TTL passes per second the
// agent answers while it holds 10,000 services (its cost per pass grows with its service count).
//
// The ttl is 300 s: every instance's TTL check is passed every ttl/3, and an agent holding 10,000
// services answers a few hundred passes per second on these machines, so at the default ttl (10 s:
// 3,000 passes per second) no client could keep 10,000 instances on one agent alive.
// Usage: node packages/consul/bench/scale.mjs [--instances=N]  (run by bench/index.mjs)
import { startConsul } from '@rollcall/testkit';
import Consul from 'consul';
import { createConsulBackend } from '../dist/index.js';

const TTL_SECONDS = 300;
const PASSES = 2000;

/** Registers `count` instances at once through Rollcall; returns what happened. */
export async function benchScale(count = 10_000) {
  const rows = [];
  {
    const agent = await startConsul({ startTimeoutMs: 30_000 });
    const backend = createConsulBackend({ host: agent.host, port: agent.port });
    const started = performance.now();
    const outcomes = await Promise.allSettled(
      Array.from({ length: count }, (_, i) =>
        backend.discovery.register(
          { id: `s${i}`, service: `scale-${i % 100}`, host: '127.0.0.1', port: 10_000 + (i % 50_000) },
          { ttlSeconds: TTL_SECONDS },
        ),
      ),
    );
    const registerMs = performance.now() - started;
    const failed = outcomes.filter((o) => o.status === 'rejected');
    const raw = new Consul({ host: agent.host, port: agent.port });
    const listed = Object.keys(await raw.agent.service.list()).length;
    // The agent's heartbeat capacity at this size: PASSES TTL passes, 16 at a time.
    let next = 0;
    const passStarted = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < PASSES) await raw.agent.check.pass(`service:scale-${next % 100}:s${next++}`);
      }),
    );
    const passesPerSecond = Math.round(PASSES / ((performance.now() - passStarted) / 1000));
    const closeStarted = performance.now();
    await backend.close();
    const closeMs = performance.now() - closeStarted;
    const left = Object.keys(await raw.agent.service.list()).length;
    rows.push({
      client: 'Rollcall (bounded pools)',
      instances: count,
      registered: count - failed.length,
      failed: failed.length,
      firstError: failed[0]?.reason?.message?.slice(0, 80) ?? '',
      registerMs: Math.round(registerMs),
      perSecond: Math.round((count - failed.length) / (registerMs / 1000)),
      listedByAgent: listed,
      agentPassesPerSecond: passesPerSecond,
      closeMs: Math.round(closeMs),
      leftAfterClose: left,
    });
    await agent.stop();
  }
  {
    const agent = await startConsul({ startTimeoutMs: 30_000 });
    const raw = new Consul({ host: agent.host, port: agent.port });
    const started = performance.now();
    const outcomes = await Promise.allSettled(
      Array.from({ length: count }, (_, i) =>
        raw.agent.service.register({
          id: `s${i}`,
          name: `scale-${i % 100}`,
          address: '127.0.0.1',
          port: 10_000 + (i % 50_000),
          check: { ttl: `${TTL_SECONDS}s`, deregistercriticalserviceafter: '10m' },
        }),
      ),
    );
    const registerMs = performance.now() - started;
    const failed = outcomes.filter((o) => o.status === 'rejected');
    let listed = -1;
    try {
      listed = Object.keys(
        await new Consul({ host: agent.host, port: agent.port }).agent.service.list(),
      ).length;
    } catch {}
    rows.push({
      client: 'raw consul client (default agent)',
      instances: count,
      registered: count - failed.length,
      failed: failed.length,
      firstError: failed[0]?.reason?.message?.slice(0, 80) ?? '',
      registerMs: Math.round(registerMs),
      perSecond: Math.round((count - failed.length) / (registerMs / 1000)),
      listedByAgent: listed,
      agentPassesPerSecond: null,
      closeMs: null,
      leftAfterClose: null,
    });
    await agent.stop();
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const n = Number(process.argv.find((a) => a.startsWith('--instances='))?.slice(12) ?? 10_000);
  console.table(await benchScale(n));
}
