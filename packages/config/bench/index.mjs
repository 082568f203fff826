#!/usr/bin/env node
// Live-config update propagation (put -> `change` callback), against the raw client's own watch
// in the same run. Run after `npm run build`: node packages/config/bench/index.mjs.
import { createLiveConfig } from '@rollcall/config';
import { createConsulBackend } from '@rollcall/consul';
import { createEtcdBackend } from '@rollcall/etcd';
import { reportBench, startConsul, startEtcd, summarize } from '@rollcall/testkit';
import Consul from 'consul';
import { Etcd3 } from 'etcd3';
import { z } from 'zod';

const schema = z.object({ counter: z.number() });
const ETCD_SAMPLES = 300;
const CONSUL_SAMPLES = 12;

/** Resolves with the time `event` takes to follow `action`, in ms. */
async function timed(action, arrived) {
  const start = performance.now();
  const seen = arrived();
  await action();
  await seen;
  return performance.now() - start;
}

async function etcdRun() {
  const server = await startEtcd({ name: 'bench-config-etcd' });
  const writer = new Etcd3({ hosts: server.endpoints });
  const rawWatcherClient = new Etcd3({ hosts: server.endpoints });
  const backend = createEtcdBackend({ endpoints: server.endpoints });
  try {
    const rawWatch = await rawWatcherClient.watch().key('/bench/raw/counter').create();
    let rawNext;
    rawWatch.on('put', () => rawNext?.());
    const config = await createLiveConfig({
      source: backend.kv,
      prefix: '/bench/live/',
      schema,
      defaults: { counter: 0 },
    });
    let liveNext;
    config.on('change', () => liveNext?.());
    const raw = [];
    const live = [];
    // Interleaved, so both see the same machine noise.
    for (let i = 1; i <= ETCD_SAMPLES; i++) {
      raw.push(
        await timed(
          () => writer.put('/bench/raw/counter').value(String(i)),
          () => new Promise((r) => (rawNext = r)),
        ),
      );
      live.push(
        await timed(
          () => writer.put('/bench/live/counter').value(String(i)),
          () => new Promise((r) => (liveNext = r)),
        ),
      );
    }
    await config.close();
    await rawWatch.cancel();
    return { raw: summarize(raw.slice(20)), live: summarize(live.slice(20)) };
  } finally {
    await backend.close();
    writer.close();
    rawWatcherClient.close();
    await server.stop();
  }
}

async function consulRun() {
  const agent = await startConsul({ nodeName: 'bench-config-consul' });
  const raw = new Consul({ host: agent.host, port: agent.port });
  const backend = createConsulBackend({ host: agent.host, port: agent.port });
  try {
    await raw.kv.set('bench/raw/counter', '0');
    const watch = raw.watch({ method: raw.kv.get, options: { key: 'bench/raw/counter' } });
    let rawNext;
    watch.on('change', () => rawNext?.());
    await new Promise((r) => watch.once('change', r));
    const config = await createLiveConfig({
      source: backend.kv,
      prefix: 'bench/live/',
      schema,
      defaults: { counter: 0 },
    });
    let liveNext;
    config.on('change', () => liveNext?.());
    const rawSamples = [];
    const liveSamples = [];
    for (let i = 1; i <= CONSUL_SAMPLES; i++) {
      rawSamples.push(
        await timed(
          () => raw.kv.set('bench/raw/counter', String(i)),
          () => new Promise((r) => (rawNext = r)),
        ),
      );
      // Rollcall spaces requests per prefix by at least 1 s; a write right after an answer waits for that.
      await new Promise((r) => setTimeout(r, 1100));
      liveSamples.push(
        await timed(
          () => raw.kv.set('bench/live/counter', String(i)),
          () => new Promise((r) => (liveNext = r)),
        ),
      );
    }
    watch.end();
    await config.close();
    return { raw: summarize(rawSamples), live: summarize(liveSamples) };
  } finally {
    await backend.close();
    await agent.stop();
  }
}

const etcd = await etcdRun();
const consul = await consulRun();
const ratio = (a, b) => Math.round((a / b) * 100) / 100;
reportBench(
  'config',
  [
    { backend: 'etcd', path: 'raw etcd3 watch', ...etcd.raw },
    {
      backend: 'etcd',
      path: 'LiveConfig change',
      ...etcd.live,
      p50_ratio: ratio(etcd.live.p50, etcd.raw.p50),
      target: '<= 1.2',
    },
    { backend: 'consul', path: 'raw consul.watch', ...consul.raw },
    {
      backend: 'consul',
      path: 'LiveConfig change',
      ...consul.live,
      p50_ratio: ratio(consul.live.p50, consul.raw.p50),
    },
  ],
  { unit: 'ms', note: 'put -> callback latency; first 20 etcd samples of each path dropped as warm-up' },
);
process.exit(0);
