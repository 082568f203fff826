#!/usr/bin/env node
// What publishing on the diagnostics channels costs: register -> watch propagation (memory and a
// real etcd) and cached getInstances, each with no subscriber, with plain diagnostics_channel
// subscribers, and with @rollcall/otel installed on the OpenTelemetry SDK. Modes are interleaved
// in blocks (a random order per block) so that each sees the same machine noise.
// Run after `npm run build`: node packages/otel/bench/index.mjs [--samples=N] [--etcd-samples=N] [--blocks=N]
//   [--backends=memory,etcd]
//   [--baseline=DIR]: DIR is another checkout, built (e.g. a git worktree of the commit before the
//   channels); its memory and etcd packages run the same rounds as a fourth mode, "baseline".
// Prints a table and writes bench-results/otel.json. Not a test: no assertions.
import diagnostics from 'node:diagnostics_channel';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';
import { ROLLCALL_CHANNELS } from '@rollcall/core';
import { createEtcdBackend } from '@rollcall/etcd';
import { createMemoryBackend, MemoryStore } from '@rollcall/memory';
import { instrumentRollcall } from '@rollcall/otel';
import { reportBench, startEtcd, summarize } from '@rollcall/testkit';

const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const MEMORY_SAMPLES = Number(args.get('samples') ?? 4000);
const ETCD_SAMPLES = Number(args.get('etcd-samples') ?? 1200);
const BLOCKS = Number(args.get('blocks') ?? 20);
const BASELINE = args.get('baseline');
const BACKENDS = new Set((args.get('backends') ?? 'memory,etcd').split(','));
const log = (...a) => process.stderr.write(`${a.join(' ')}\n`);

// ---------------------------------------------------------------- subscriber modes
class ManualReader extends MetricReader {
  async onShutdown() {}
  async onForceFlush() {}
}
const reader = new ManualReader();
const meterProvider = new MeterProvider({ readers: [reader] });
const tracerProvider = new BasicTracerProvider();

/** Plain subscribers: what any APM tool's no-op listener costs (message built and published). */
function subscribePlain() {
  let seen = 0;
  const onMessage = () => {
    seen += 1;
  };
  const names = Object.entries(ROLLCALL_CHANNELS)
    .filter(([key]) => key !== 'lockAcquire')
    .map(([, name]) => name);
  for (const name of names) diagnostics.subscribe(name, onMessage);
  const tracing = diagnostics.tracingChannel(ROLLCALL_CHANNELS.lockAcquire);
  const handlers = {
    start: onMessage,
    end: onMessage,
    asyncStart: onMessage,
    asyncEnd: onMessage,
    error: onMessage,
  };
  tracing.subscribe(handlers);
  return () => {
    for (const name of names) diagnostics.unsubscribe(name, onMessage);
    tracing.unsubscribe(handlers);
    return seen;
  };
}

const modes = {
  none: () => () => {},
  channels: subscribePlain,
  otel: () => {
    const installation = instrumentRollcall({ meterProvider, tracerProvider });
    return () => installation.uninstall();
  },
};

// ---------------------------------------------------------------- measures
/** Resolves with the first event `iterator` yields that matches. */
async function nextMatching(iterator, predicate) {
  for (;;) {
    const { value, done } = await iterator.next();
    if (done) throw new Error('watch ended');
    if (predicate(value)) return value;
  }
}

/**
 * A pair of clients (owner registers, watcher watches `bench`): `round(i)` registers an instance,
 * times until the watcher's event, then deregisters it and waits for the removal.
 */
async function propagation(owner, watcher) {
  const watch = watcher.discovery.watch('bench');
  const events = watch[Symbol.asyncIterator]();
  await nextMatching(events, (e) => e.type === 'sync');
  let serial = 0;
  return {
    async round() {
      const id = `i${++serial}`;
      const started = performance.now();
      const registration = await owner.discovery.register(
        { id, service: 'bench', host: '127.0.0.1', port: 8080 },
        { ttlSeconds: 10 },
      );
      await nextMatching(events, (e) => e.type === 'change' && e.added.some((x) => x.id === id));
      const ms = performance.now() - started;
      await registration.deregister();
      await nextMatching(events, (e) => e.type === 'change' && e.removed.some((x) => x.id === id));
      return ms;
    },
    close: () => watch.close(),
  };
}

/** Cached getInstances: operations per second over `ms`. */
async function getInstancesRate(discovery, ms = 150) {
  let ops = 0;
  const end = performance.now() + ms;
  while (performance.now() < end) {
    for (let i = 0; i < 1000; i++) await discovery.getInstances('cached');
    ops += 1000;
  }
  return (ops * 1000) / ms;
}

/** Clients of each implementation under test: the current packages, and the baseline's if given. */
async function implementations() {
  const list = [
    { name: 'current', createMemoryBackend, MemoryStore, createEtcdBackend, modes: Object.keys(modes) },
  ];
  if (BASELINE) {
    const load = (pkg) =>
      import(pathToFileURL(join(resolve(BASELINE), 'packages', pkg, 'dist', 'index.js')).href);
    const [memory, etcd] = await Promise.all([load('memory'), load('etcd')]);
    list.push({ name: 'baseline', ...memory, createEtcdBackend: etcd.createEtcdBackend, modes: ['none'] });
  }
  return list;
}

/**
 * Runs `samples` rounds per (implementation, mode) in `BLOCKS` blocks; each block visits the
 * (implementation, mode) pairs in a fresh random order, subscribing the mode around its rounds.
 */
async function interleaved(setups, samples, measure) {
  const results = new Map();
  const pairs = setups.flatMap((setup) => setup.impl.modes.map((mode) => ({ setup, mode })));
  const perBlock = Math.ceil(samples / BLOCKS);
  for (let block = 0; block < BLOCKS; block++) {
    const order = [...pairs].sort(() => Math.random() - 0.5);
    for (const { setup, mode } of order) {
      const key = setup.impl.name === 'current' ? mode : setup.impl.name;
      const unsubscribe = modes[mode]();
      const values = results.get(key) ?? [];
      for (let i = 0; i < perBlock; i++) values.push(await measure(setup));
      results.set(key, values);
      unsubscribe();
    }
  }
  return results;
}

// ---------------------------------------------------------------- run
const rows = [];
const impls = await implementations();
/** Results in table order: no subscriber, the baseline, plain subscribers, @rollcall/otel. */
const ordered = (results) =>
  ['none', 'baseline', 'channels', 'otel'].filter((m) => results.has(m)).map((m) => [m, results.get(m)]);
/** Median in µs, unrounded (summarize() rounds to 1 µs, too coarse for the memory backend). */
const medianUs = (samples) => {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] * 1000;
};
const addLatency = (backend, results) => {
  const none = medianUs(results.get('none'));
  for (const [mode, samples] of ordered(results)) {
    const s = summarize(samples);
    const p50Us = medianUs(samples);
    rows.push({
      measure: `register -> watch event, ${backend}`,
      mode,
      p50Us: Math.round(p50Us * 10) / 10,
      p99Us: Math.round(s.p99 * 1000),
      n: s.n,
      ratioP50: Math.round((p50Us / none) * 100) / 100,
      target: mode === 'otel' ? '<= 1.1' : '',
    });
  }
};
const addRate = (backend, results) => {
  const best = (values) => Math.max(...values);
  const none = best(results.get('none'));
  for (const [mode, values] of ordered(results))
    rows.push({
      measure: `cached getInstances, ${backend}`,
      mode,
      opsPerSec: Math.round(best(values)),
      ratio: Math.round((none / best(values)) * 100) / 100,
      target: mode === 'otel' ? '<= 1.1' : '',
    });
};

async function backendRun(backend, makePair, samples) {
  const setups = [];
  for (const impl of impls) {
    const [owner, watcher] = makePair(impl);
    await owner.discovery.register({ id: 'c1', service: 'cached', host: '127.0.0.1', port: 1 });
    await watcher.discovery.getInstances('cached');
    setups.push({ impl, owner, watcher, pair: await propagation(owner, watcher) });
  }
  // Warm-up: every setup, every mode, a few rounds.
  await interleaved(setups, BLOCKS * 10, (s) => s.pair.round());
  log(`${backend}: propagation`);
  addLatency(backend, await interleaved(setups, samples, (s) => s.pair.round()));
  log(`${backend}: cached getInstances`);
  addRate(backend, await interleaved(setups, BLOCKS, (s) => getInstancesRate(s.watcher.discovery)));
  for (const s of setups) {
    s.pair.close();
    await s.owner.close();
    await s.watcher.close();
  }
}

if (BACKENDS.has('memory'))
  await backendRun(
    'memory',
    (impl) => {
      const store = new impl.MemoryStore();
      return [impl.createMemoryBackend({ store }), impl.createMemoryBackend({ store })];
    },
    MEMORY_SAMPLES,
  );
if (BACKENDS.has('etcd')) {
  const etcd = await startEtcd({ name: 'bench-otel', tmpDir: '/dev/shm' }).catch(() =>
    startEtcd({ name: 'bench-otel' }),
  );
  try {
    await backendRun(
      'etcd',
      (impl) => [
        impl.createEtcdBackend({ endpoints: etcd.endpoints }),
        impl.createEtcdBackend({ endpoints: etcd.endpoints }),
      ],
      ETCD_SAMPLES,
    );
  } finally {
    await etcd.stop();
  }
}
const { resourceMetrics } = await reader.collect();
const recorded = resourceMetrics.scopeMetrics.flatMap((s) => s.metrics.map((m) => m.descriptor.name));
await meterProvider.shutdown();

reportBench(
  'otel',
  rows.map((r) => ({
    measure: r.measure,
    mode: r.mode,
    value:
      r.p50Us !== undefined
        ? `p50 ${r.p50Us} µs, p99 ${r.p99Us} µs`
        : `${r.opsPerSec.toLocaleString('en')} ops/s`,
    'ratio to none': r.ratioP50 ?? r.ratio,
    target: r.target,
    met: r.target ? ((r.ratioP50 ?? r.ratio) <= 1.1 ? 'yes' : 'NO') : '',
  })),
  {
    samples: { memory: MEMORY_SAMPLES, etcd: ETCD_SAMPLES, blocks: BLOCKS },
    baseline: BASELINE ?? null,
    details: rows,
    instrumentsRecordedDuringRun: recorded,
  },
);
