// Benchmark of @rollcall/migration on a real Consul agent and a real etcd started for the run.
// Run: npm run bench -- migration   (or: node packages/migration/bench/index.mjs)
// Prints tables and writes bench-results/migration.json. Not a test: no assertions.
// Options: --processes=N (phase propagation), --rounds=N, --reads-ms=N, --watch-samples=N,
//          --kv-keys=N, --cost-window-ms=N, --cost-clients=N, --cost-detail (requests by path),
//          --sections=propagation,reads,watch,kv,cost
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createConsulBackend } from '@rollcall/consul';
import { createEtcdBackend } from '@rollcall/etcd';
import {
  applyKvCopy,
  consulKvInspector,
  createMigratingBackend,
  MIGRATION_PHASES,
  planKvCopy,
} from '@rollcall/migration';
import { reportBench, startConsul, startCountingHttpProxy, startEtcd, summarize } from '@rollcall/testkit';
import { Etcd3 } from 'etcd3';

const here = dirname(fileURLToPath(import.meta.url));
const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const PROCESSES = Number(args.get('processes') ?? 10);
const ROUNDS = Number(args.get('rounds') ?? 20);
const READS_MS = Number(args.get('reads-ms') ?? 1500);
const WATCH_SAMPLES = Number(args.get('watch-samples') ?? 300);
const KV_KEYS = Number(args.get('kv-keys') ?? 10_000);
const COST_WINDOW_MS = Number(args.get('cost-window-ms') ?? 15_000);
const COST_CLIENTS = Number(args.get('cost-clients') ?? 10);
const SECTIONS = new Set((args.get('sections') ?? 'propagation,reads,watch,kv,cost').split(','));
const log = (...a) => process.stderr.write(`${a.join(' ')}\n`);
const round = (x, d = 2) => Number(x.toFixed(d));
const clock = () => performance.timeOrigin + performance.now();

const [agent, etcd] = await Promise.all([startConsul(), startEtcd({ tmpDir: '/dev/shm' })]);
// Under a migrating backend the registries' caches live 1 s (as `rollcall` configures them): the
// migrating backend keeps its own, and a registry a phase stops reading stops being polled.
const INNER = { cacheIdleMs: 1000 };
const consul = (options = {}) =>
  createConsulBackend({ host: agent.host, port: agent.port, watchMode: 'blocking', ...INNER, ...options });
const etcdClient = (options = {}) => createEtcdBackend({ endpoints: etcd.endpoints, ...options });
const migrating = (phase, phaseKey, from = consul()) =>
  createMigratingBackend({ from, to: etcdClient(INNER), phase, phaseKey, acknowledge: false });
const rows = [];
const extra = {
  settings: { PROCESSES, ROUNDS, READS_MS, WATCH_SAMPLES, KV_KEYS, COST_WINDOW_MS, COST_CLIENTS },
};

try {
  // ------------------------------------------------------------ phase propagation across processes
  if (SECTIONS.has('propagation')) {
    log(`propagation: ${PROCESSES} processes, ${ROUNDS} moves`);
    const phaseKey = 'bench/propagation/phase';
    const children = Array.from({ length: PROCESSES }, () => {
      const proc = spawn(
        process.execPath,
        [join(here, 'phase-child.mjs'), String(agent.port), etcd.clientUrl, phaseKey],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      const lines = [];
      createInterface({ input: proc.stdout }).on('line', (l) => lines.push(JSON.parse(l)));
      return { proc, lines };
    });
    const until = async (cond) => {
      while (!cond()) await new Promise((r) => setTimeout(r, 5));
    };
    await until(() => children.every((c) => c.lines.some((l) => l.ready)));
    const operator = migrating('dual-write', phaseKey);
    await operator.ready();
    const each = [];
    const all = [];
    for (let r = 0; r < ROUNDS; r++) {
      const phase = r % 2 === 0 ? 'shadow' : 'dual-write';
      const seen = children.map((c) => c.lines.length);
      const t0 = clock();
      await operator.setPhase(phase);
      await until(() => children.every((c, i) => c.lines.slice(seen[i]).some((l) => l.phase === phase)));
      const lags = children.map((c, i) => c.lines.slice(seen[i]).find((l) => l.phase === phase).at - t0);
      each.push(...lags);
      all.push(Math.max(...lags));
    }
    for (const c of children) c.proc.kill('SIGTERM');
    await operator.close();
    const e = summarize(each);
    const a = summarize(all);
    rows.push(
      {
        what: `phase propagation: setPhase -> each of ${PROCESSES} processes switched (ms)`,
        p50: e.p50,
        p99: e.p99,
        max: e.max,
      },
      {
        what: `phase propagation: setPhase -> all ${PROCESSES} switched (ms)`,
        p50: a.p50,
        p99: a.p99,
        max: a.max,
      },
    );
  }

  // ------------------------------------------------------------ cached getInstances
  if (SECTIONS.has('reads')) {
    log('reads: cached getInstances, migrating vs plain etcd');
    const service = 'bench-read';
    const writer = migrating('dual-write', 'bench/reads/writer');
    for (let i = 0; i < 10; i++)
      await writer.discovery.register({ id: `i${i}`, service, host: '127.0.0.1', port: 9000 + i });
    const plain = etcdClient();
    const readers = { 'etcd (plain)': plain };
    for (const phase of ['dual-read', 'cutover'])
      readers[`migrating ${phase}`] = migrating(phase, `bench/reads/${phase}`);
    const opsPerSec = {};
    for (const b of Object.values(readers)) {
      while ((await b.discovery.getInstances(service)).instances.length < 10)
        await new Promise((r) => setTimeout(r, 20));
    }
    for (let pass = 0; pass < 2; pass++) {
      for (const [name, b] of Object.entries(readers)) {
        let n = 0;
        const end = performance.now() + READS_MS;
        while (performance.now() < end) {
          for (let i = 0; i < 1000; i++) await b.discovery.getInstances(service);
          n += 1000;
        }
        opsPerSec[name] = Math.max(opsPerSec[name] ?? 0, n / (READS_MS / 1000));
      }
    }
    const base = opsPerSec['etcd (plain)'];
    for (const [name, ops] of Object.entries(opsPerSec))
      rows.push({
        what: `cached getInstances: ${name} (ops/s)`,
        value: Math.round(ops),
        'ratio vs etcd': round(base / ops),
      });
    await Promise.all([writer.close(), ...Object.values(readers).map((b) => b.close())]);
  }

  // ------------------------------------------------------------ watch event propagation in dual-read
  if (SECTIONS.has('watch')) {
    log(`watch: ${WATCH_SAMPLES} samples, dual-read vs plain etcd`);
    const service = 'bench-watch';
    const writer = etcdClient();
    const plain = etcdClient();
    const merged = migrating('dual-read', 'bench/watch/phase');
    await merged.ready();
    const arrivals = { plain: new Map(), merged: new Map() };
    const follow = async (name, backend) => {
      for await (const e of backend.discovery.watch(service)) {
        if (e.type !== 'change') continue;
        for (const i of [...e.added, ...e.removed])
          arrivals[name].set(`${e.added.includes(i) ? '+' : '-'}${i.id}`, performance.now());
      }
    };
    void follow('plain', plain);
    void follow('merged', merged);
    await new Promise((r) => setTimeout(r, 300));
    const lat = { plain: [], merged: [] };
    for (let s = 0; s < WATCH_SAMPLES; s++) {
      const id = `w${s}`;
      const t0 = performance.now();
      const reg = await writer.discovery.register(
        { id, service, host: '127.0.0.1', port: 9100 },
        { ttlSeconds: 30 },
      );
      while (!arrivals.plain.has(`+${id}`) || !arrivals.merged.has(`+${id}`))
        await new Promise((r) => setImmediate(r));
      lat.plain.push(arrivals.plain.get(`+${id}`) - t0);
      lat.merged.push(arrivals.merged.get(`+${id}`) - t0);
      await reg.deregister();
      while (!arrivals.plain.has(`-${id}`) || !arrivals.merged.has(`-${id}`))
        await new Promise((r) => setImmediate(r));
    }
    const p = summarize(lat.plain);
    const m = summarize(lat.merged);
    rows.push(
      { what: 'watch: register -> change event, plain etcd (ms)', p50: p.p50, p99: p.p99, max: p.max },
      {
        what: 'watch: register -> change event, migrating dual-read (ms)',
        p50: m.p50,
        p99: m.p99,
        max: m.max,
        'ratio p50': round(m.p50 / p.p50),
      },
    );
    await Promise.all([writer.close(), plain.close(), merged.close()]);
  }

  // ------------------------------------------------------------ migrate kv throughput
  if (SECTIONS.has('kv')) {
    log(`kv: ${KV_KEYS} keys Consul -> etcd`);
    const prefix = 'bench/kv/';
    const value = (i) => JSON.stringify({ key: i, text: 'value-'.repeat(12) });
    for (let i = 0; i < KV_KEYS; i += 64) {
      const ops = [];
      for (let j = i; j < Math.min(KV_KEYS, i + 64); j++)
        ops.push({
          KV: {
            Verb: 'set',
            Key: `${prefix}k${String(j).padStart(6, '0')}`,
            Value: Buffer.from(value(j)).toString('base64'),
          },
        });
      const r = await fetch(`${agent.url}/v1/txn`, { method: 'PUT', body: JSON.stringify(ops) });
      if (!r.ok) throw new Error(`seed: HTTP ${r.status}`);
    }
    const from = consul();
    const to = etcdClient();
    const copy = {
      from: from.kv,
      to: to.kv,
      prefix,
      inspect: consulKvInspector({ host: agent.host, port: agent.port }),
    };
    let t = performance.now();
    const plan = await planKvCopy(copy);
    const planMs = performance.now() - t;
    t = performance.now();
    const { result } = await applyKvCopy(copy);
    const applyMs = performance.now() - t;
    t = performance.now();
    const { result: again } = await applyKvCopy(copy);
    const againMs = performance.now() - t;
    // Reference: the raw etcd3 client writing the same keys, 128 puts per transaction.
    const raw = new Etcd3({ hosts: etcd.endpoints });
    t = performance.now();
    const all = [...(await from.kv.getAll(prefix))];
    for (let i = 0; i < all.length; i += 128) {
      const chunk = all.slice(i, i + 128);
      await raw
        .if(`raw/${chunk[0][0]}`, 'Create', '>', -1)
        .then(...chunk.map(([k, v]) => raw.put(`raw/${k}`).value(v)))
        .else()
        .commit();
    }
    const rawMs = performance.now() - t;
    raw.close();
    rows.push(
      { what: `migrate kv: dry run of ${plan.create.length} keys (ms)`, value: Math.round(planMs) },
      {
        what: `migrate kv --apply: ${result.created} keys in ${result.batches} batches (ms)`,
        value: Math.round(applyMs),
        'keys/s': Math.round((result.created / applyMs) * 1000),
        match: result.checksum.match,
      },
      {
        what: 'migrate kv --apply again (no-op) (ms)',
        value: Math.round(againMs),
        written: again.created + again.changed,
      },
      {
        what: `raw etcd3: the same ${all.length} keys in txns of 128 puts (ms)`,
        value: Math.round(rawMs),
        'keys/s': Math.round((all.length / rawMs) * 1000),
      },
    );
    await Promise.all([from.close(), to.close()]);
  }

  // ------------------------------------------------------------ cost per phase
  if (SECTIONS.has('cost')) {
    log(`cost: ${COST_CLIENTS} clients, ${COST_WINDOW_MS} ms per phase`);
    const proxy = await startCountingHttpProxy({ host: agent.host, port: agent.port });
    const etcdMessages = async () => {
      const text = await (await fetch(`${etcd.clientUrl}/metrics`)).text();
      let n = 0;
      for (const line of text.split('\n'))
        if (line.startsWith('grpc_server_msg_received_total{')) n += Number(line.split(' ').at(-1));
      return n;
    };
    const phaseKey = 'bench/cost/phase';
    const fleet = Array.from({ length: COST_CLIENTS }, () =>
      migrating('dual-write', phaseKey, consul({ host: '127.0.0.1', port: proxy.port })),
    );
    const services = ['bench-cost-a', 'bench-cost-b'];
    await Promise.all(
      fleet.map(async (c, i) => {
        await c.discovery.register(
          { id: `c${i}`, service: services[i % 2], host: '127.0.0.1', port: 9200 + i },
          { ttlSeconds: 10 },
        );
        for (const s of services) c.discovery.watch(s);
      }),
    );
    const operator = migrating('dual-write', phaseKey);
    for (const phase of MIGRATION_PHASES) {
      await operator.setPhase(phase, { force: true });
      // Let the move's own requests (re-reads, deregistrations) pass before counting.
      await new Promise((r) => setTimeout(r, 5000));
      proxy.reset();
      const before = await etcdMessages();
      await new Promise((r) => setTimeout(r, COST_WINDOW_MS));
      const consulRps = proxy.count() / (COST_WINDOW_MS / 1000);
      if (args.has('cost-detail')) {
        const byPath = {};
        for (const r of proxy.requests) {
          const key = `${r.method} ${r.path.split('?')[0]}`;
          byPath[key] = (byPath[key] ?? 0) + 1;
        }
        log(phase, JSON.stringify(byPath));
      }
      const etcdRps = ((await etcdMessages()) - before - 1) / (COST_WINDOW_MS / 1000);
      rows.push({
        what: `cost in ${phase}: ${COST_CLIENTS} clients, 1 instance and 2 watched services each (requests/s)`,
        consul: round(consulRps, 1),
        etcd: round(etcdRps, 1),
      });
    }
    await Promise.all([operator.close(), ...fleet.map((c) => c.close())]);
    await proxy.close();
  }
} finally {
  await Promise.allSettled([agent.stop(), etcd.stop()]);
}
reportBench('migration', rows, extra);
process.exit(0);
