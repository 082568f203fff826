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

/** Runs `registerOne(i)` for `count` instances at once; what succeeded, and how fast. */
async function burst(client, count, registerOne) {
  const started = performance.now();
  const outcomes = await Promise.allSettled(Array.from({ length: count }, (_, i) => registerOne(i)));
  const registerMs = performance.now() - started;
  const failed = outcomes.filter((o) => o.status === 'rejected');
  return {
    client,
    instances: count,
    registered: count - failed.length,
    failed: failed.length,
    firstError: failed[0]?.reason?.message?.slice(0, 80) ?? '',
    registerMs: Math.round(registerMs),
    perSecond: Math.round((count - failed.length) / (registerMs / 1000)),
  };
}

const instance = (i) => ({ id: `s${i}`, service: `scale-${i % 100}`, port: 10_000 + (i % 50_000) });

/** The agent's heartbeat capacity at its current size: PASSES TTL passes, 16 at a time. */
async function passesPerSecond(raw) {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < PASSES) await raw.agent.check.pass(`service:scale-${next % 100}:s${next++}`);
    }),
  );
  return Math.round(PASSES / ((performance.now() - started) / 1000));
}

/** Registers `count` instances at once through Rollcall, then through the raw client; returns what happened. */
export async function benchScale(count = 10_000) {
  const rows = [];
  {
    const agent = await startConsul({ startTimeoutMs: 30_000 });
    const backend = createConsulBackend({ host: agent.host, port: agent.port });
    const row = await burst('Rollcall (bounded pools)', count, (i) =>
      backend.discovery.register({ ...instance(i), host: '127.0.0.1' }, { ttlSeconds: TTL_SECONDS }),
    );
    const raw = new Consul({ host: agent.host, port: agent.port });
    const listedByAgent = Object.keys(await raw.agent.service.list()).length;
    const agentPassesPerSecond = await passesPerSecond(raw);
    const closeStarted = performance.now();
    await backend.close();
    const closeMs = Math.round(performance.now() - closeStarted);
    const leftAfterClose = Object.keys(await raw.agent.service.list()).length;
    rows.push({ ...row, listedByAgent, agentPassesPerSecond, closeMs, leftAfterClose });
    await agent.stop();
  }
  {
    const agent = await startConsul({ startTimeoutMs: 30_000 });
    const raw = new Consul({ host: agent.host, port: agent.port });
    const row = await burst('raw consul client (default agent)', count, (i) => {
      const { id, service, port } = instance(i);
      return raw.agent.service.register({
        id,
        name: service,
        address: '127.0.0.1',
        port,
        check: { ttl: `${TTL_SECONDS}s`, deregistercriticalserviceafter: '10m' },
      });
    });
    let listedByAgent = -1;
    try {
      listedByAgent = Object.keys(
        await new Consul({ host: agent.host, port: agent.port }).agent.service.list(),
      ).length;
    } catch {}
    rows.push({ ...row, listedByAgent, agentPassesPerSecond: null, closeMs: null, leftAfterClose: null });
    await agent.stop();
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const n = Number(process.argv.find((a) => a.startsWith('--instances='))?.slice(12) ?? 10_000);
  console.table(await benchScale(n));
}
