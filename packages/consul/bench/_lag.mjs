import { startConsul } from '@rollcall/testkit';
import Consul from 'consul';

const agent = await startConsul({ startTimeoutMs: 30_000 });
const raw = new Consul({ host: agent.host, port: agent.port });
const N = Number(process.argv[2] ?? 4000),
  C = 16;
let next = 0,
  ok = 0,
  fails = 0;
const timers = [];
const t0 = performance.now();
const lags = [];
const iv = setInterval(() => {
  const l = lags.splice(0);
  l.sort((a, b) => a - b);
  console.log(
    Math.round((performance.now() - t0) / 1000),
    's ok',
    ok,
    'lag p50',
    l[l.length >> 1],
    'max',
    l[l.length - 1],
    'passfails',
    fails,
  );
}, 5000);
async function worker() {
  while (next < N) {
    const i = next++;
    await raw.agent.service.register({
      id: `s${i}`,
      name: `scale-${i % 100}`,
      address: '127.0.0.1',
      port: 10000 + i,
      check: { ttl: '30s', status: 'passing', deregistercriticalserviceafter: '10m' },
    });
    const p = performance.now();
    for (;;) {
      const r = await raw.health.service({
        service: `scale-${i % 100}`,
        passing: true,
        filter: `Service.ID == "s${i}"`,
      });
      if (r.length) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    lags.push(Math.round(performance.now() - p));
    ok++;
    const t = setInterval(() => raw.agent.check.pass(`service:s${i}`).catch(() => fails++), 10000);
    timers.push(t);
  }
}
await Promise.all(Array.from({ length: C }, worker));
clearInterval(iv);
console.log('done', Math.round(performance.now() - t0));
timers.forEach(clearInterval);
await agent.stop();
