#!/usr/bin/env node
// @rollcall/grpc on a real etcd: (1) how long a registry change takes to move a channel's traffic
// (deregister: the last call the removed server receives; register: the first call the new one
// receives), beside the discovery watch event of the same change; (2) call throughput and client
// CPU per call through a `rollcall:///` channel against the same client on a static `ipv4:`
// target, in the same run. Run after `npm run build`: node packages/grpc/bench/index.mjs.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Client, credentials, Server, ServerCredentials } from '@grpc/grpc-js';
import { createEtcdBackend } from '@rollcall/etcd';
import { registerResolver, serveGrpc } from '@rollcall/grpc';
import { reportBench, startEtcd, summarize } from '@rollcall/testkit';
import { greeterDefinition, load } from './greeter.mjs';

const SHIFT_SAMPLES = 50;
const SHIFT_LOOPS = 4;
const QUIET_MS = 100;
const THROUGHPUT_GROUPS = 60;
const ROUND_MS = 200;
const CONCURRENCY = 32;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(condition, what, timeoutMs = 10_000) {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(1);
  }
}

/** An in-process greeter server recording when calls arrive. */
function greeter(name) {
  const server = new Server();
  const stats = { calls: 0, lastAt: Number.NEGATIVE_INFINITY };
  server.addService(greeterDefinition, {
    sayHello: (_call, callback) => {
      stats.calls += 1;
      stats.lastAt = performance.now();
      callback(null, { server: name });
    },
  });
  return { server, stats };
}

async function trafficShift(etcd) {
  const servers = createEtcdBackend({ endpoints: etcd.endpoints });
  const clientBackend = createEtcdBackend({ endpoints: etcd.endpoints });
  const resolver = registerResolver(clientBackend.discovery);
  const service = 'bench-shift';
  const stay = greeter('stay');
  const serving = await serveGrpc(stay.server, {
    discovery: servers.discovery,
    instance: { service, id: 'stay' },
    listenHost: '127.0.0.1',
  });
  const moving = greeter('moving');
  const movingPort = await new Promise((resolve, reject) =>
    moving.server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, port) =>
      e ? reject(e) : resolve(port),
    ),
  );
  const movingInstance = { service, id: 'moving', host: '127.0.0.1', port: movingPort };

  // A discovery watch in the same client process: the registry's share of the latency.
  const watchedAt = { added: 0, removed: 0 };
  const watch = clientBackend.discovery.watch(service);
  void (async () => {
    for await (const event of watch) {
      if (event.type !== 'change') continue;
      if (event.added.some((i) => i.id === 'moving')) watchedAt.added = performance.now();
      if (event.removed.some((i) => i.id === 'moving')) watchedAt.removed = performance.now();
    }
  })();

  const client = new Client(`rollcall:///${service}`, credentials.createInsecure());
  const traffic = load(client, SHIFT_LOOPS);
  const samples = { shiftOut: [], shiftIn: [], watchOut: [], watchIn: [] };
  let registration = await servers.discovery.register(movingInstance);
  await until(() => moving.stats.calls > 0, 'first calls reach the moving server');
  for (let i = 0; i < SHIFT_SAMPLES; i++) {
    await until(() => performance.now() - moving.stats.lastAt < 5, 'the moving server gets calls');
    let start = performance.now();
    await registration.deregister();
    await until(() => performance.now() - moving.stats.lastAt > QUIET_MS, 'traffic leaves the moving server');
    samples.shiftOut.push(Math.max(0, moving.stats.lastAt - start));
    await until(() => watchedAt.removed > start, 'the watch sees the removal');
    samples.watchOut.push(watchedAt.removed - start);

    const callsBefore = moving.stats.calls;
    start = performance.now();
    registration = await servers.discovery.register(movingInstance);
    await until(() => moving.stats.calls > callsBefore, 'traffic reaches the registered server');
    samples.shiftIn.push(moving.stats.lastAt - start);
    await until(() => watchedAt.added > start, 'the watch sees the addition');
    samples.watchIn.push(watchedAt.added - start);
  }
  await traffic.stop();
  client.close();
  watch.close();
  await registration.deregister();
  moving.server.forceShutdown();
  await serving.stop();
  resolver.close();
  await Promise.all([servers.close(), clientBackend.close()]);
  return { ...samples, calls: traffic.counts.ok, failed: traffic.counts.failed };
}

/** Two greeter servers in a child process (so this process runs only client code); their ports. */
async function serverProcess() {
  const child = spawn(
    process.execPath,
    [fileURLToPath(new URL('./greeter-servers.mjs', import.meta.url)), '2'],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const [line] = await once(child.stdout, 'data');
  const { ports } = JSON.parse(line.toString());
  return { ports, stop: () => child.stdin.end() };
}

async function throughput(etcd) {
  const servers = createEtcdBackend({ endpoints: etcd.endpoints });
  const clientBackend = createEtcdBackend({ endpoints: etcd.endpoints });
  const resolver = registerResolver(clientBackend.discovery);
  const service = 'bench-throughput';
  const remote = await serverProcess();
  const registrations = await Promise.all(
    remote.ports.map((port, i) =>
      servers.discovery.register({ service, id: `s${i}`, host: '127.0.0.1', port }),
    ),
  );
  // The same options for both: round_robin, each channel with its own connections.
  const options = {
    'grpc.service_config': JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
    'grpc.use_local_subchannel_pool': 1,
  };
  const staticTarget = `ipv4:${remote.ports.map((port) => `127.0.0.1:${port}`).join(',')}`;
  const clients = {
    rollcall: new Client(`rollcall:///${service}`, credentials.createInsecure(), options),
    static: new Client(staticTarget, credentials.createInsecure(), options),
    // A second, identical static channel: static2 / static shows how much of a ratio is noise.
    static2: new Client(staticTarget, credentials.createInsecure(), options),
  };
  const round = async (name) => {
    const run = load(clients[name], CONCURRENCY);
    const cpuBefore = process.cpuUsage();
    const start = performance.now();
    await sleep(ROUND_MS);
    await run.stop();
    const ms = performance.now() - start;
    const cpu = process.cpuUsage(cpuBefore);
    return {
      calls: run.counts.ok,
      perSecond: (run.counts.ok / ms) * 1000,
      cpuUsPerCall: (cpu.user + cpu.system) / run.counts.ok,
      failed: run.counts.failed,
    };
  };
  for (const name of Object.keys(clients)) await round(name); // warm-up
  const resolverBefore = resolver.stats();
  // Groups of one round each, in rotating order: a group sees about the same machine load, and
  // the median of the groups' ratios shrugs off a burst of load from other processes.
  const names = Object.keys(clients);
  const rounds = { rollcall: [], static: [], static2: [] };
  const ratios = { rate: [], cpu: [], noise: [] };
  let failed = 0;
  for (let i = 0; i < THROUGHPUT_GROUPS; i++) {
    const group = {};
    for (let k = 0; k < names.length; k++) {
      const name = names[(i + k) % names.length];
      group[name] = await round(name);
      rounds[name].push(group[name]);
      failed += group[name].failed;
    }
    ratios.rate.push(group.rollcall.perSecond / group.static.perSecond);
    ratios.cpu.push(group.static.cpuUsPerCall / group.rollcall.cpuUsPerCall);
    ratios.noise.push(group.static2.perSecond / group.static.perSecond);
  }
  // Deterministic beside the noisy clocks: the resolver's own work while the calls ran.
  const resolverAfter = resolver.stats();
  const resolverWork = {
    resolutions: resolverAfter.resolutions - resolverBefore.resolutions,
    reresolutionRequests: resolverAfter.reresolutionRequests - resolverBefore.reresolutionRequests,
    calls: rounds.rollcall.reduce((sum, r) => sum + r.calls, 0),
  };
  for (const c of Object.values(clients)) c.close();
  await Promise.all(registrations.map((r) => r.deregister()));
  remote.stop();
  resolver.close();
  await Promise.all([servers.close(), clientBackend.close()]);
  const median = (values) => summarize(values).p50;
  const r3 = (v) => Math.round(v * 1000) / 1000;
  const side = (name) => ({
    callsPerSecond: Math.round(median(rounds[name].map((r) => r.perSecond))),
    cpuUsPerCall: r3(median(rounds[name].map((r) => r.cpuUsPerCall))),
  });
  const spread = (values) => [r3(Math.min(...values)), r3(Math.max(...values))];
  return {
    rollcall: side('rollcall'),
    static: side('static'),
    static2: side('static2'),
    rateRatio: r3(median(ratios.rate)),
    cpuRatio: r3(median(ratios.cpu)),
    noiseRatio: r3(median(ratios.noise)),
    rateRatioRange: spread(ratios.rate),
    noiseRatioRange: spread(ratios.noise),
    resolverWork,
    failed,
  };
}

const etcd = await startEtcd({ name: 'bench-grpc' });
try {
  const shift = await trafficShift(etcd);
  const rate = await throughput(etcd);
  reportBench(
    'grpc',
    [
      { measure: 'deregister -> watch event (ms)', ...summarize(shift.watchOut) },
      { measure: 'deregister -> last call on the removed server (ms)', ...summarize(shift.shiftOut) },
      { measure: 'register -> watch event (ms)', ...summarize(shift.watchIn) },
      { measure: 'register -> first call on the new server (ms)', ...summarize(shift.shiftIn) },
      {
        measure: 'static ipv4: target',
        calls_per_s: rate.static.callsPerSecond,
        cpu_us_per_call: rate.static.cpuUsPerCall,
      },
      {
        measure: 'static ipv4: target, second channel (noise check)',
        calls_per_s: rate.static2.callsPerSecond,
        cpu_us_per_call: rate.static2.cpuUsPerCall,
        throughput_ratio: rate.noiseRatio,
      },
      {
        measure: 'rollcall:/// target',
        calls_per_s: rate.rollcall.callsPerSecond,
        cpu_us_per_call: rate.rollcall.cpuUsPerCall,
        throughput_ratio: rate.rateRatio,
        cpu_ratio: rate.cpuRatio,
        target: '>= 0.98',
      },
      {
        measure: 'resolver work during the rollcall:/// rounds',
        calls: rate.resolverWork.calls,
        resolutions: rate.resolverWork.resolutions,
        reresolution_requests: rate.resolverWork.reresolutionRequests,
      },
    ],
    {
      unit: 'ms (latency rows); calls/s and client CPU µs per call (throughput rows)',
      note:
        `latency: ${SHIFT_SAMPLES} deregister/register cycles under ${SHIFT_LOOPS} call loops ` +
        `(${shift.calls} calls, ${shift.failed} failed). Throughput: ${CONCURRENCY} unary calls in flight ` +
        `to 2 servers in another process; ${THROUGHPUT_GROUPS} groups of one ${ROUND_MS} ms round per channel ` +
        `in rotating order after a warm-up (${rate.failed} failed); values are medians of rounds, ratios ` +
        `medians of the groups' ratios to the static channel (rollcall per group ${rate.rateRatioRange.join(' to ')}, ` +
        `second static channel ${rate.noiseRatioRange.join(' to ')}); cpu_ratio = static CPU per call / rollcall CPU per call.`,
      throughputRatio: rate.rateRatio,
      cpuRatio: rate.cpuRatio,
      noiseRatio: rate.noiseRatio,
      resolverWork: rate.resolverWork,
    },
  );
} finally {
  await etcd.stop();
}
process.exit(0);
