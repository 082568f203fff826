import { startConsul, startCountingHttpProxy } from '@rollcall/testkit';
import { createConsulBackend } from '../dist/index.js';

const agent = await startConsul({ startTimeoutMs: 30_000 });
const proxy = await startCountingHttpProxy({ host: agent.host, port: agent.port });
const backend = createConsulBackend({ host: '127.0.0.1', port: proxy.port });
const N = Number(process.argv[2] ?? 5000);
let ok = 0,
  bad = 0;
const t0 = performance.now();
let firstErr;
const iv = setInterval(() => {
  const kinds = {};
  for (const r of proxy.requests) {
    const k =
      r.method +
      ' ' +
      r.path.split('?')[0].split('/').slice(0, 4).join('/') +
      (r.path.includes('local') ? ' local' : '');
    kinds[k] = (kinds[k] ?? 0) + 1;
  }
  proxy.reset();
  console.log(Math.round((performance.now() - t0) / 1000), 's ok', ok, 'bad', bad, JSON.stringify(kinds));
}, 5000);
await Promise.allSettled(
  Array.from({ length: N }, (_, i) =>
    backend.discovery
      .register(
        { id: `s${i}`, service: `scale-${i % 100}`, host: '127.0.0.1', port: 10000 + i },
        { ttlSeconds: 30 },
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
await proxy.close();
