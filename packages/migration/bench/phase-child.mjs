// One process of the benchmark's fleet: a migrating client (Consul -> etcd) that prints, on stdout,
// `ready` once it follows the phase key, then `{ phase, at }` (ms epoch, high resolution) on each move.
import { createConsulBackend } from '@rollcall/consul';
import { createEtcdBackend } from '@rollcall/etcd';
import { createMigratingBackend } from '@rollcall/migration';

const [consulPort, etcdUrl, phaseKey] = process.argv.slice(2);
const backend = createMigratingBackend({
  from: createConsulBackend({ host: '127.0.0.1', port: Number(consulPort), watchMode: 'blocking' }),
  to: createEtcdBackend({ endpoints: [etcdUrl] }),
  phase: 'dual-write',
  phaseKey,
  acknowledge: false,
});
backend.on('phase', (phase) =>
  process.stdout.write(`${JSON.stringify({ phase, at: performance.timeOrigin + performance.now() })}\n`),
);
await backend.ready();
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
process.on('SIGTERM', async () => {
  await backend.close();
  process.exit(0);
});
