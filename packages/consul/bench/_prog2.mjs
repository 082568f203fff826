import dc from 'node:diagnostics_channel';
import { startConsul } from '@rollcall/testkit';
import { createConsulBackend } from '../dist/index.js';

const agent = await startConsul({ startTimeoutMs: 30_000 });
const backend = createConsulBackend({ host: agent.host, port: agent.port });
const N = Number(process.argv[2] ?? 5000);
const TTL = Number(process.argv[3] ?? 30);
const states = {};
dc.subscribe('rollcall:session', (m) => {
  const k = `${m.previous}>${m.state}`;
  states[k] = (states[k] ?? 0) + 1;
});
const regs = {};
dc.subscribe('rollcall:registration', (m) => {
  const k = m.state;
  regs[k] = (regs[k] ?? 0) + 1;
});
let ok = 0,
  bad = 0;
const t0 = performance.now();
let firstErr;
const iv = setInterval(() => {
  console.log(
    Math.round((performance.now() - t0) / 1000),
    's ok',
    ok,
    'bad',
    bad,
    JSON.stringify(states),
    JSON.stringify(regs),
  );
  for (const k in states) delete states[k];
  for (const k in regs) delete regs[k];
}, 5000);
await Promise.allSettled(
  Array.from({ length: N }, (_, i) =>
    backend.discovery
      .register(
        { id: `s${i}`, service: `scale-${i % 100}`, host: '127.0.0.1', port: 10000 + i },
        { ttlSeconds: TTL },
      )
      .then(
        () => ok++,
        (e) => {
          bad++;
          firstErr ??= e.message;
        },
      ),
  ),
);
clearInterval(iv);
console.log('done', Math.round(performance.now() - t0), 'ok', ok, 'bad', bad, firstErr);
const c0 = performance.now();
await backend.close();
console.log('close', Math.round(performance.now() - c0));
await agent.stop();
