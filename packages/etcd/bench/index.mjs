// Benchmark of @rollcall/etcd against the raw etcd3 client, on one etcd started for the run.
// Run: npx tsc -b packages/etcd packages/testkit && node packages/etcd/bench/index.mjs
// Prints a table and writes bench-results/etcd.json at the repository root. Not a test: no assertions.
// Options: --samples=N (propagation), --lock-samples=N, --sections=propagation,scale,locks (default: all).
import { mkdirSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { cpus, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createEtcdBackend } from '@rollcall/etcd';
import { startEtcd } from '@rollcall/testkit';
import { Etcd3, EtcdLockFailedError } from 'etcd3';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const args = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const SAMPLES = Number(args.get('samples') ?? 3000);
const INSTANCES = Number(args.get('instances') ?? 10_000);
const SERVICES = Number(args.get('services') ?? 1000);
const KEEPALIVE_WINDOW_MS = Number(args.get('keepalive-window-ms') ?? 20_000);
const OPS_WINDOW_MS = Number(args.get('ops-window-ms') ?? 2000);
const LOCK_SAMPLES = Number(args.get('lock-samples') ?? 1000);
const SECTIONS = new Set((args.get('sections') ?? 'propagation,scale,locks').split(','));
const TTL = 10;

const now = () => performance.now();
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const stats = (samples) => {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    mean: samples.reduce((s, x) => s + x, 0) / samples.length,
  };
};
const round = (x, d = 3) => Number(x.toFixed(d));
const log = (...a) => process.stderr.write(`${a.join(' ')}\n`);

/** Resolves with the first value `iterator` yields that matches. */
async function nextMatching(iterator, predicate) {
  for (;;) {
    const { value, done } = await iterator.next();
    if (done) throw new Error('watch ended');
    if (predicate(value)) return value;
  }
}

const etcd = await startEtcd({ tmpDir: '/dev/shm' }).catch(() => startEtcd());
log(`etcd ${etcd.clientUrl}`);
const results = {
  date: new Date().toISOString(),
  machine: {},
  propagation: {},
  scale: {},
  reads: {},
  locks: {},
};
results.machine = {
  cpus: cpus().length,
  cpu: cpus()[0]?.model,
  memoryGiB: round(totalmem() / 2 ** 30, 1),
  node: process.version,
};

try {
  // ---------------------------------------------------------------- 1. propagation
  if (SECTIONS.has('propagation')) {
    const raw = new Etcd3({ hosts: etcd.endpoints });
    const rawWatcherClient = new Etcd3({ hosts: etcd.endpoints });
    const a = createEtcdBackend({ endpoints: etcd.endpoints });
    const b = createEtcdBackend({ endpoints: etcd.endpoints });
    const rawPrefix = '/bench/raw/';
    const rawWatcher = await rawWatcherClient.watch().prefix(rawPrefix).create();
    let rawWaiter;
    rawWatcher.on('put', (kv) => rawWaiter?.(`put ${kv.key.toString()}`));
    rawWatcher.on('delete', (kv) => rawWaiter?.(`delete ${kv.key.toString()}`));
    // A raw watcher of the registry itself, to time Rollcall's write side alone.
    const registryPrefix = '/rollcall/services/bench-propagation/';
    const registryWatcher = await rawWatcherClient.watch().prefix(registryPrefix).create();
    let registryWaiter;
    registryWatcher.on('put', (kv) => registryWaiter?.(`put ${kv.key.toString()}`));
    registryWatcher.on('delete', (kv) => registryWaiter?.(`delete ${kv.key.toString()}`));
    const watch = b.discovery.watch('bench-propagation');
    const it = watch[Symbol.asyncIterator]();
    await nextMatching(it, (e) => e.type === 'sync');
    const value = JSON.stringify({ id: 'x', service: 'bench-propagation', host: '127.0.0.1', port: 8080 });
    // Every side does the same work per round (write, see it, remove, see that), in a random order each
    // iteration, so etcd's own rhythm (WAL syncs, batching) weighs on all alike. Only the write -> event time is kept.
    const rawLease = await raw.lease(TTL).grant();
    // kind: 'put' (no lease), 'leased' (a put with a lease), 'txn' (a leased put only if the key is
    // absent: the cheapest write that cannot overwrite another client's instance, as a registration must not).
    const rawRound = async (i, kind) => {
      const key = `${rawPrefix}${kind}${i}`;
      const seen = new Promise((resolve) => {
        rawWaiter = (what) => what === `put ${key}` && resolve();
      });
      const t0 = now();
      if (kind === 'put') await raw.put(key).value(value);
      else if (kind === 'leased') await raw.put(key).value(value).lease(rawLease);
      else await raw.if(key, 'Create', '==', 0).then(raw.put(key).value(value).lease(rawLease)).commit();
      await seen;
      const ms = now() - t0;
      const gone = new Promise((resolve) => {
        rawWaiter = (what) => what === `delete ${key}` && resolve();
      });
      await raw.delete().key(key);
      await gone;
      return ms;
    };
    const rollcallRound = async (i) => {
      const id = `i${i}`;
      const t0 = now();
      const registration = await a.discovery.register(
        { id, service: 'bench-propagation', host: '127.0.0.1', port: 8080 },
        { ttlSeconds: TTL },
      );
      await nextMatching(it, (e) => e.type === 'change' && e.added.some((x) => x.id === id));
      const ms = now() - t0;
      await registration.deregister();
      await nextMatching(it, (e) => e.type === 'change' && e.removed.some((x) => x.id === id));
      return ms;
    };
    // Write side alone: register -> the raw watcher sees the key.
    const writeSideRound = async (i) => {
      const id = `w${i}`;
      const key = `${registryPrefix}${id}`;
      const seen = new Promise((resolve) => {
        registryWaiter = (what) => what === `put ${key}` && resolve();
      });
      const t0 = now();
      const registration = await a.discovery.register(
        { id, service: 'bench-propagation', host: '127.0.0.1', port: 8080 },
        { ttlSeconds: TTL },
      );
      await seen;
      const ms = now() - t0;
      await nextMatching(it, (e) => e.type === 'change' && e.added.some((x) => x.id === id));
      await registration.deregister();
      await nextMatching(it, (e) => e.type === 'change' && e.removed.some((x) => x.id === id));
      return ms;
    };
    // Watch side alone: a raw put with a lease of a valid instance -> Rollcall's watch sees it.
    const watchSideRound = async (i) => {
      const id = `r${i}`;
      const t0 = now();
      await raw
        .put(`${registryPrefix}${id}`)
        .value(JSON.stringify({ id, service: 'bench-propagation', host: '127.0.0.1', port: 8080 }))
        .lease(rawLease);
      await nextMatching(it, (e) => e.type === 'change' && e.added.some((x) => x.id === id));
      const ms = now() - t0;
      await raw.delete().key(`${registryPrefix}${id}`);
      await nextMatching(it, (e) => e.type === 'change' && e.removed.some((x) => x.id === id));
      return ms;
    };
    const rawSamples = [];
    const leasedSamples = [];
    const txnSamples = [];
    const rcSamples = [];
    const writeSamples = [];
    const watchSamples = [];
    const warmup = Math.min(100, SAMPLES / 10);
    const rounds = [
      ['raw', (i) => rawRound(i, 'put'), rawSamples],
      ['leased', (i) => rawRound(i, 'leased'), leasedSamples],
      ['txn', (i) => rawRound(i, 'txn'), txnSamples],
      ['rollcall', rollcallRound, rcSamples],
      ['write side', writeSideRound, writeSamples],
      ['watch side', watchSideRound, watchSamples],
    ];
    for (let i = 0; i < SAMPLES + warmup; i++) {
      // A fresh random order each iteration: no side always runs right after the same other side.
      const order = [...rounds];
      for (let j = order.length - 1; j > 0; j--) {
        const k = Math.floor(Math.random() * (j + 1));
        [order[j], order[k]] = [order[k], order[j]];
      }
      for (const [, round, samples] of order) {
        const ms = await round(i);
        if (i >= warmup) samples.push(ms);
      }
    }
    const r = stats(rawSamples);
    const l = stats(leasedSamples);
    const x = stats(txnSamples);
    const c = stats(rcSamples);
    const ws = stats(writeSamples);
    const wt = stats(watchSamples);
    results.propagation = {
      registerToRawWatch: { p50Ms: round(ws.p50), p99Ms: round(ws.p99) },
      rawLeasedPutToRollcallWatch: { p50Ms: round(wt.p50), p99Ms: round(wt.p99) },
      samples: SAMPLES,
      rawPutToWatch: { p50Ms: round(r.p50), p99Ms: round(r.p99) },
      rawLeasedPutToWatch: { p50Ms: round(l.p50), p99Ms: round(l.p99) },
      registerToWatch: { p50Ms: round(c.p50), p99Ms: round(c.p99) },
      p50Ratio: round(c.p50 / r.p50, 2),
      p99Ratio: round(c.p99 / r.p99, 2),
      p50RatioVsLeasedPut: round(c.p50 / l.p50, 2),
      rawLeasedTxnToWatch: { p50Ms: round(x.p50), p99Ms: round(x.p99) },
      p50RatioVsLeasedTxn: round(c.p50 / x.p50, 2),
      leasedTxnVsLeasedPut: round(x.p50 / l.p50, 2),
    };
    log('propagation', JSON.stringify(results.propagation));
    watch.close();
    await rawWatcher.cancel();
    await registryWatcher.cancel();
    raw.close();
    rawWatcherClient.close();
    await a.close();
    await b.close();
  }

  // ---------------------------------------------------------------- 2. scale: 10,000 instances over 1,000 services
  if (SECTIONS.has('scale')) {
    const leasesBefore = JSON.parse(await etcd.etcdctl(['lease', 'list', '-w', 'json'])).leases?.length ?? 0;
    const owner = createEtcdBackend({ endpoints: etcd.endpoints });
    const service = (s) => `bench-svc-${s}`;
    const scaleInstance = (i) => ({
      id: `instance-${i}`,
      service: service(i % SERVICES),
      host: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
      port: 8080,
      version: '1.4.2',
      tags: ['blue'],
      metadata: { zone: `zone-${i % 3}` },
    });
    const t0 = now();
    await Promise.all(
      Array.from({ length: INSTANCES }, (_, i) =>
        owner.discovery.register(scaleInstance(i), { ttlSeconds: TTL }),
      ),
    );
    const registerMs = now() - t0;
    const leasesAfter = JSON.parse(await etcd.etcdctl(['lease', 'list', '-w', 'json'])).leases?.length ?? 0;
    log(
      `registered ${INSTANCES} in ${round(registerMs, 0)} ms; leases ${owner.stats().leases} (server: +${leasesAfter - leasesBefore})`,
    );

    // The keepalive window is also the idle cost of holding the registrations: renewals and the
    // periodic reconcile (every 10 s by default) are all this process does meanwhile.
    const k0 = owner.stats().keepalives;
    const cpu0 = process.cpuUsage();
    const tk = now();
    await new Promise((r) => setTimeout(r, KEEPALIVE_WINDOW_MS));
    const windowMs = now() - tk;
    const keepalivesPerMinute = ((owner.stats().keepalives - k0) * 60_000) / windowMs;
    const cpu = process.cpuUsage(cpu0);
    const idleCpuPercent = (cpu.user + cpu.system) / 10 / windowMs;

    // A fresh client syncs every service (one etcd watch per service), measured for time and heap.
    gc();
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const fresh = createEtcdBackend({ endpoints: etcd.endpoints, cacheIdleMs: 3_600_000 });
    const ts = now();
    const snapshots = await Promise.all(
      Array.from({ length: SERVICES }, (_, s) => fresh.discovery.getInstances(service(s))),
    );
    const syncMs = now() - ts;
    const synced = snapshots.reduce((n, s) => n + s.instances.length, 0);
    gc();
    gc();
    const heapAfter = process.memoryUsage().heapUsed;
    const bytesPerInstance = (heapAfter - heapBefore) / synced;

    results.scale = {
      instances: INSTANCES,
      services: SERVICES,
      ttlSeconds: TTL,
      registerAllMs: round(registerMs, 0),
      registrationsPerSecond: round((INSTANCES * 1000) / registerMs, 0),
      leasesClientSide: owner.stats().leases,
      leasesServerSide: leasesAfter - leasesBefore,
      keepaliveRequestsPerMinute: round(keepalivesPerMinute, 1),
      idleCpuPercentOfOneCore: round(idleCpuPercent, 2),
      freshClientSyncAllMs: round(syncMs, 0),
      freshClientInstancesSynced: synced,
      freshClientEtcdWatches: Object.keys(fresh.stats().serviceWatches).length,
      heapBytesPerCachedInstance: round(bytesPerInstance, 0),
    };
    log('scale', JSON.stringify(results.scale));

    // ---------------------------------------------------------------- 3. cached reads vs a raw range per call
    const raw = new Etcd3({ hosts: etcd.endpoints });
    let i = 0;
    let cachedOps = 0;
    const tc = now();
    while (now() - tc < OPS_WINDOW_MS) {
      for (let j = 0; j < 1000; j++) await fresh.discovery.getInstances(service(i++ % SERVICES));
      cachedOps += 1000;
    }
    const cachedPerSecond = (cachedOps * 1000) / (now() - tc);
    let rawOps = 0;
    const tr = now();
    while (now() - tr < OPS_WINDOW_MS) {
      await raw
        .getAll()
        .prefix(`/rollcall/services/${service(i++ % SERVICES)}/`)
        .strings();
      rawOps += 1;
    }
    const rawPerSecond = (rawOps * 1000) / (now() - tr);
    results.reads = {
      cachedGetInstancesOpsPerSecond: round(cachedPerSecond, 0),
      rawGetAllPrefixOpsPerSecond: round(rawPerSecond, 0),
      speedup: round(cachedPerSecond / rawPerSecond, 0),
    };
    log('reads', JSON.stringify(results.reads));
    raw.close();
    await fresh.close();
    const tclose = now();
    await owner.close();
    results.scale.closeMs = round(now() - tclose, 0);

    // The same 10,000 values written raw, in transactions of 128 leased puts (what the first wave's
    // code sent), and in transactions that put each key only if it is absent (the least a write
    // that must not overwrite another client's instance needs): Rollcall's bulk path against both.
    // Measured after the fresh client's sync and the reads: deleting these 40,000 keys leaves etcd
    // busy for a while (it slowed that sync 3-4x when measured before it).
    const rawBulk = new Etcd3({ hosts: etcd.endpoints });
    const bulk = rawBulk.lease(TTL * 3);
    const bulkLease = await bulk.grant();
    const bulkWrite = async (prefix, ifAbsent) => {
      const started = now();
      const jobs = [];
      for (let s = 0; s < INSTANCES; s += 128) {
        const writes = [];
        for (let i = s; i < Math.min(INSTANCES, s + 128); i++) {
          const key = Buffer.from(`${prefix}${service(i % SERVICES)}/instance-${i}`);
          // The value Rollcall stores for the same instance (its fields in the order Rollcall writes them).
          const value = Buffer.from(JSON.stringify(scaleInstance(i)));
          writes.push({ key, value });
        }
        const success = writes.map(({ key, value }) => ({ request_put: { key, value, lease: bulkLease } }));
        jobs.push(
          rawBulk.kv.txn(
            ifAbsent
              ? {
                  compare: writes.map(({ key }) => ({
                    key,
                    target: 'Create',
                    result: 'Equal',
                    create_revision: 0,
                  })),
                  success,
                  failure: writes.map(({ key }) => ({ request_range: { key } })),
                }
              : {
                  compare: [{ key: writes[0].key, target: 'Create', result: 'Greater', create_revision: -1 }],
                  success,
                  failure: [],
                },
          ),
        );
      }
      await Promise.all(jobs);
      return now() - started;
    };
    // Two rounds each, alternating; the faster of each kind is kept.
    const plainRuns = [];
    const ifAbsentRuns = [];
    for (let r = 0; r < 2; r++) {
      plainRuns.push(await bulkWrite(`/bench/bulk/plain${r}/`, false));
      ifAbsentRuns.push(await bulkWrite(`/bench/bulk/absent${r}/`, true));
    }
    await bulk.revoke();
    rawBulk.close();
    const rawPlainMs = Math.min(...plainRuns);
    const rawIfAbsentMs = Math.min(...ifAbsentRuns);
    log(
      `raw bulk: ${plainRuns.map((x) => round(x, 0))} ms plain, ${ifAbsentRuns.map((x) => round(x, 0))} ms if absent`,
    );

    results.scale.rawBulkPutMs = round(rawPlainMs, 0);
    results.scale.rawBulkPutIfAbsentMs = round(rawIfAbsentMs, 0);

    // Bytes allocated per registration (V8's sampling heap profiler, every 512 B, objects collected
    // since included), against a raw leased put of the same value, both warmed up first. One at a
    // time: concurrent registrations share transactions, which would hide the cost of one.
    const ALLOC_SAMPLES = 2000;
    const profiler = new Session();
    profiler.connect();
    const allocatedPerOp = async (op) => {
      for (let k = 0; k < 500; k++) await op(`warm-${k}`);
      await profiler.post('HeapProfiler.startSampling', {
        samplingInterval: 512,
        includeObjectsCollectedByMajorGC: true,
        includeObjectsCollectedByMinorGC: true,
      });
      for (let k = 0; k < ALLOC_SAMPLES; k++) await op(`alloc-${k}`);
      const { profile } = await profiler.post('HeapProfiler.stopSampling');
      const total = (node) => node.selfSize + node.children.reduce((sum, c) => sum + total(c), 0);
      return total(profile.head) / ALLOC_SAMPLES;
    };
    const body = (id) => ({
      id,
      service: 'bench-alloc',
      host: '10.0.0.1',
      port: 8080,
      version: '1.4.2',
      tags: ['blue'],
      metadata: { zone: 'zone-1' },
    });
    const registrant = createEtcdBackend({ endpoints: etcd.endpoints });
    const rawClient = new Etcd3({ hosts: etcd.endpoints });
    const rawLeaseId = await rawClient.lease(TTL).grant();
    const rollcallBytes = await allocatedPerOp((id) =>
      registrant.discovery.register(body(id), { ttlSeconds: TTL }),
    );
    const rawBytes = await allocatedPerOp((id) =>
      rawClient
        .put(`/rollcall-raw/services/bench-alloc/${id}`)
        .value(JSON.stringify(body(id)))
        .lease(rawLeaseId),
    );
    profiler.disconnect();
    await registrant.close();
    rawClient.close();
    results.scale.allocatedBytesPerRegistration = round(rollcallBytes, 0);
    results.scale.rawAllocatedBytesPerLeasedPut = round(rawBytes, 0);
    log('allocation', JSON.stringify({ rollcallBytes, rawBytes }));
  }

  // ---------------------------------------------------------------- 4. locks: Rollcall vs etcd3's own client.lock()
  if (SECTIONS.has('locks')) {
    const shuffled = (items) => {
      const order = [...items];
      for (let j = order.length - 1; j > 0; j--) {
        const k = Math.floor(Math.random() * (j + 1));
        [order[j], order[k]] = [order[k], order[j]];
      }
      return order;
    };

    // Two Rollcall clients and two raw etcd3 clients; every lock on its own name per side.
    const a = createEtcdBackend({ endpoints: etcd.endpoints });
    const b = createEtcdBackend({ endpoints: etcd.endpoints });
    const rawA = new Etcd3({ hosts: etcd.endpoints });
    const rawB = new Etcd3({ hosts: etcd.endpoints });

    // Uncontended: acquire + release of a free lock, one after the other.
    const rollcallUncontended = async () => {
      const t0 = now();
      const lease = await a.locks.acquire('bench-uncontended', { ttlSeconds: TTL });
      await lease.release();
      return now() - t0;
    };
    const rawUncontended = async () => {
      const t0 = now();
      const lock = rawA.lock('/bench/raw-uncontended').ttl(TTL);
      await lock.acquire();
      await lock.release();
      return now() - t0;
    };

    // Hand-off: the holder releases while the other client waits; measured from the release call to the
    // waiter holding the lock. Before the release, the waiter's connection makes two round trips (a read each),
    // so its watch request has gone out, on both sides alike (no idle pause: after an idle gap every etcd call
    // on this machine is ~2x slower, which would favour etcd3's busy-retrying waiter).
    // Rollcall's waiter is queued in etcd and woken by the delete; etcd3's lock() does not queue (acquire fails
    // with EtcdLockFailedError while the lock is held), so its waiter retries at once, back to back.
    const rc = { holder: await a.locks.acquire('bench-handoff', { ttlSeconds: TTL }), from: a, to: b };
    const rollcallHandoff = async () => {
      let queued;
      const isQueued = new Promise((r) => {
        queued = r;
      });
      const waiting = rc.to.locks.acquire('bench-handoff', { ttlSeconds: TTL, onQueued: queued });
      await isQueued;
      await rc.to.kv.get('bench-handoff-probe');
      await rc.to.kv.get('bench-handoff-probe');
      const t0 = now();
      const released = rc.holder.release();
      rc.holder = await waiting;
      const ms = now() - t0;
      await released;
      [rc.from, rc.to] = [rc.to, rc.from];
      return ms;
    };
    const rawState = { holder: rawA.lock('/bench/raw-handoff').ttl(TTL), from: rawA, to: rawB, retries: 0 };
    await rawState.holder.acquire();
    const rawHandoff = async () => {
      let stop = false;
      const waiting = (async () => {
        for (;;) {
          const lock = rawState.to.lock('/bench/raw-handoff').ttl(TTL);
          try {
            await lock.acquire();
            return lock;
          } catch (error) {
            if (!(error instanceof EtcdLockFailedError) || stop) throw error;
            rawState.retries += 1;
          }
        }
      })();
      await rawState.to.get('/bench-handoff-probe');
      await rawState.to.get('/bench-handoff-probe');
      const t0 = now();
      const released = rawState.holder.release();
      rawState.holder = await waiting;
      const ms = now() - t0;
      stop = true;
      await released;
      [rawState.from, rawState.to] = [rawState.to, rawState.from];
      return ms;
    };

    const samples = { rcUnc: [], rawUnc: [], rcHand: [], rawHand: [] };
    const warmup = Math.min(50, Math.ceil(LOCK_SAMPLES / 10));
    const handoffSamples = Math.max(1, Math.round(LOCK_SAMPLES / 4));
    for (let i = 0; i < LOCK_SAMPLES + warmup; i++) {
      for (const [round, into] of shuffled([
        [rollcallUncontended, samples.rcUnc],
        [rawUncontended, samples.rawUnc],
      ])) {
        const ms = await round();
        if (i >= warmup) into.push(ms);
      }
    }
    rawState.retries = 0;
    for (let i = 0; i < handoffSamples + warmup; i++) {
      if (i === warmup) rawState.retries = 0;
      for (const [round, into] of shuffled([
        [rollcallHandoff, samples.rcHand],
        [rawHandoff, samples.rawHand],
      ])) {
        const ms = await round();
        if (i >= warmup) into.push(ms);
      }
    }
    const uc = stats(samples.rcUnc);
    const ur = stats(samples.rawUnc);
    const hc = stats(samples.rcHand);
    const hr = stats(samples.rawHand);
    results.locks = {
      uncontendedSamples: samples.rcUnc.length,
      handoffSamples: samples.rcHand.length,
      ttlSeconds: TTL,
      uncontendedAcquireRelease: { p50Ms: round(uc.p50), p99Ms: round(uc.p99) },
      etcd3LockUncontendedAcquireRelease: { p50Ms: round(ur.p50), p99Ms: round(ur.p99) },
      uncontendedRatio: { p50: round(uc.p50 / ur.p50, 2), p99: round(uc.p99 / ur.p99, 2) },
      handoff: { p50Ms: round(hc.p50), p99Ms: round(hc.p99) },
      etcd3LockHandoffRetrying: { p50Ms: round(hr.p50), p99Ms: round(hr.p99) },
      handoffRatio: { p50: round(hc.p50 / hr.p50, 2), p99: round(hc.p99 / hr.p99, 2) },
      etcd3FailedAttemptsPerHandoff: round(rawState.retries / samples.rawHand.length, 1),
      rollcallLeasesPerClient: a.stats().leasesGranted,
    };
    log('locks', JSON.stringify(results.locks));
    await rc.holder.release();
    await rawState.holder.release();
    rawA.close();
    rawB.close();
    await a.close();
    await b.close();
  }
} finally {
  await etcd.stop();
}

const p = results.propagation;
const s = results.scale;
const r = results.reads;
const k = results.locks;
const rows = [];
if (SECTIONS.has('propagation'))
  rows.push(
    ['register -> watch event, p50 / p99', `${p.registerToWatch.p50Ms} / ${p.registerToWatch.p99Ms} ms`],
    ['raw etcd3 put -> watch event, p50 / p99', `${p.rawPutToWatch.p50Ms} / ${p.rawPutToWatch.p99Ms} ms`],
    [
      'raw etcd3 put with a lease -> watch event, p50 / p99',
      `${p.rawLeasedPutToWatch.p50Ms} / ${p.rawLeasedPutToWatch.p99Ms} ms`,
    ],
    ['ratio vs raw put, p50 / p99', `${p.p50Ratio} / ${p.p99Ratio}`],
    ['ratio vs raw put with a lease, p50 (target <= 1.15)', `${p.p50RatioVsLeasedPut}`],
    [
      'raw etcd3 leased put if absent (transaction) -> watch event, p50 / p99',
      `${p.rawLeasedTxnToWatch.p50Ms} / ${p.rawLeasedTxnToWatch.p99Ms} ms`,
    ],
    ['that transaction vs raw put with a lease, p50', `${p.leasedTxnVsLeasedPut}`],
    ['ratio vs that transaction, p50', `${p.p50RatioVsLeasedTxn}`],
    [
      'write side: register -> raw watch event, p50 / p99',
      `${p.registerToRawWatch.p50Ms} / ${p.registerToRawWatch.p99Ms} ms`,
    ],
    [
      'watch side: raw leased put -> Rollcall watch event, p50 / p99',
      `${p.rawLeasedPutToRollcallWatch.p50Ms} / ${p.rawLeasedPutToRollcallWatch.p99Ms} ms`,
    ],
  );
if (SECTIONS.has('scale'))
  rows.push(
    [
      `register ${s.instances} instances over ${s.services} services (one client)`,
      `${s.registerAllMs} ms (${s.registrationsPerSecond}/s)`,
    ],
    [
      `raw etcd3: the same number of leased puts, transactions of 128 / each put only if absent (best of 2)`,
      `${s.rawBulkPutMs} / ${s.rawBulkPutIfAbsentMs} ms`,
    ],
    [
      'register ratio vs those raw transactions (plain / if absent)',
      `${round(s.registerAllMs / s.rawBulkPutMs, 2)} / ${round(s.registerAllMs / s.rawBulkPutIfAbsentMs, 2)}`,
    ],
    ['leases (client / server)', `${s.leasesClientSide} / ${s.leasesServerSide}`],
    [`keepalive requests per minute (ttl ${s.ttlSeconds} s)`, `${s.keepaliveRequestsPerMinute}`],
    [
      `CPU while holding ${s.instances} registrations, nothing else to do (renewals, reconcile)`,
      `${s.idleCpuPercentOfOneCore}% of one core`,
    ],
    [
      `fresh client syncs all ${s.services} services`,
      `${s.freshClientSyncAllMs} ms (${s.freshClientInstancesSynced} instances, ${s.freshClientEtcdWatches} watches)`,
    ],
    ['heap per cached instance (target <= 1 KB)', `${s.heapBytesPerCachedInstance} B`],
    ['cached getInstances', `${r.cachedGetInstancesOpsPerSecond} ops/s`],
    ['raw getAll().prefix() per call', `${r.rawGetAllPrefixOpsPerSecond} ops/s (x${r.speedup})`],
    [`close (deregister ${s.instances} + revoke)`, `${s.closeMs} ms`],
    [
      'allocated per registration vs a raw leased put (sampling heap profiler)',
      `${s.allocatedBytesPerRegistration} B vs ${s.rawAllocatedBytesPerLeasedPut} B (x${round(s.allocatedBytesPerRegistration / s.rawAllocatedBytesPerLeasedPut, 2)})`,
    ],
  );
if (SECTIONS.has('locks'))
  rows.push(
    [
      'lock: uncontended acquire + release, p50 / p99',
      `${k.uncontendedAcquireRelease.p50Ms} / ${k.uncontendedAcquireRelease.p99Ms} ms`,
    ],
    [
      'etcd3 client.lock(): uncontended acquire + release, p50 / p99',
      `${k.etcd3LockUncontendedAcquireRelease.p50Ms} / ${k.etcd3LockUncontendedAcquireRelease.p99Ms} ms`,
    ],
    [
      'lock: uncontended ratio vs etcd3 lock(), p50 / p99',
      `${k.uncontendedRatio.p50} / ${k.uncontendedRatio.p99}`,
    ],
    ['lock: hand-off to a waiting client, p50 / p99', `${k.handoff.p50Ms} / ${k.handoff.p99Ms} ms`],
    [
      'etcd3 client.lock(): hand-off to a client retrying acquire, p50 / p99',
      `${k.etcd3LockHandoffRetrying.p50Ms} / ${k.etcd3LockHandoffRetrying.p99Ms} ms (${k.etcd3FailedAttemptsPerHandoff} failed attempts each)`,
    ],
    ['lock: hand-off ratio vs etcd3 lock(), p50 / p99', `${k.handoffRatio.p50} / ${k.handoffRatio.p99}`],
  );
const width = Math.max(...rows.map(([k]) => k.length));
const table = [`| measure | result |`, `| --- | --- |`, ...rows.map(([k, v]) => `| ${k} | ${v} |`)].join(
  '\n',
);
console.log(
  `\n@rollcall/etcd benchmark, ${results.date.slice(0, 10)}, ${results.machine.cpus} cores (${results.machine.cpu}), Node ${results.machine.node}\n`,
);
console.log(rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n'));
console.log(`\n${table}\n`);
// A partial run (--sections) must not replace the full run's results.
const file = SECTIONS.size === 3 ? 'etcd.json' : `etcd-${[...SECTIONS].sort().join('-')}.json`;
mkdirSync(join(root, 'bench-results'), { recursive: true });
writeFileSync(join(root, 'bench-results', file), `${JSON.stringify({ ...results, table }, null, 2)}\n`);
console.log(`wrote ${join('bench-results', file)}`);
