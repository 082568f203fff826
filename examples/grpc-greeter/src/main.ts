/**
 * A gRPC greeter on the container's backend (`rollcall.config.json` / `ROLLCALL_BACKEND`, memory
 * by default). Servers bind a free port and register it (`serveGrpc`); clients dial
 * `rollcall:///greeter` and follow the registry (`registerResolver`).
 *
 *   node dist/main.js            scripted demo in one process (works on the memory backend): three
 *                                greeters, calls spread over them, one leaves gracefully while calls
 *                                go on, a fourth joins; exits 0 when no call failed
 *   node dist/main.js serve ID   one greeter instance; on SIGTERM it deregisters, drains
 *                                (DRAIN_MS, default 2000), stops serving and exits 0
 *   node dist/main.js call       calls every 20 ms until SIGTERM/SIGINT, then prints a summary
 */
import { Server } from '@grpc/grpc-js';
import { type Backend, installGracefulShutdown, type ServiceDiscovery, TYPES } from '@rollcall/core';
import { type GrpcServing, registerResolver, serveGrpc } from '@rollcall/grpc';
import { createContainer, loadConfig } from 'rollcall';
import { type GreeterClient, greeterClient, greeterHandlers, greeterService, sayHello } from './greeter.js';

const SERVICE = 'greeter';

/** Starts greeter `id` on a free loopback port, registered through `discovery`. */
async function startGreeter(discovery: ServiceDiscovery, id: string, drainMs: number): Promise<GrpcServing> {
  const server = new Server();
  server.addService(greeterService, greeterHandlers(id));
  const serving = await serveGrpc(server, {
    discovery,
    instance: { service: SERVICE, id, version: '1.0.0' },
    listenHost: '127.0.0.1',
    port: 0,
    drainMs,
  });
  console.log(`[${id}] serving ${SERVICE} on 127.0.0.1:${serving.port}`);
  return serving;
}

/** Calls until `stop()`; counts answers per instance and failures. */
function keepCalling(client: GreeterClient, log: boolean) {
  const answers = new Map<string, number>();
  const failures: string[] = [];
  let running = true;
  const loop = (async () => {
    for (let n = 1; running; n++) {
      try {
        const reply = await sayHello(client, `caller #${n}`);
        answers.set(reply.instance, (answers.get(reply.instance) ?? 0) + 1);
        if (log) console.log(`[client] ${reply.message} <- ${reply.instance}`);
      } catch (error) {
        failures.push((error as Error).message);
        console.log(`[client] call failed: ${(error as Error).message}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  return {
    answers,
    failures,
    calls: () => [...answers.values()].reduce((a, b) => a + b, 0) + failures.length,
    async stop() {
      running = false;
      await loop;
    },
  };
}

function summary(answers: Map<string, number>, failures: string[]): string {
  const spread = [...answers.entries()]
    .sort()
    .map(([id, n]) => `${id}=${n}`)
    .join(', ');
  const total = [...answers.values()].reduce((a, b) => a + b, 0) + failures.length;
  return `${total} calls (${spread}), ${failures.length} failed`;
}

async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within 10 s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function demo(discovery: ServiceDiscovery): Promise<boolean> {
  using _resolver = registerResolver(discovery);
  const greeters = new Map<string, GrpcServing>();
  for (const id of ['greeter-1', 'greeter-2', 'greeter-3'])
    greeters.set(id, await startGreeter(discovery, id, 300));
  const client = greeterClient(`rollcall:///${SERVICE}`);
  const traffic = keepCalling(client, false);
  await until(() => traffic.answers.size === 3, 'calls reach all three greeters');
  console.log(`[client] calls spread over ${[...traffic.answers.keys()].sort().join(', ')}`);

  console.log('[operator] greeter-2 leaves: deregister, drain 300 ms, stop');
  const [callsBefore, failedBefore] = [traffic.calls(), traffic.failures.length];
  await greeters.get('greeter-2')!.shutdown();
  await until(() => traffic.calls() > callsBefore + 30, 'calls go on');
  console.log(
    `[client] ${traffic.calls() - callsBefore} calls while and after greeter-2 left, ${traffic.failures.length - failedBefore} failed`,
  );

  console.log('[operator] greeter-4 joins');
  greeters.set('greeter-4', await startGreeter(discovery, 'greeter-4', 300));
  await until(() => (traffic.answers.get('greeter-4') ?? 0) > 0, 'greeter-4 gets calls');
  console.log('[client] greeter-4 gets calls');

  await traffic.stop();
  client.close();
  for (const [id, serving] of greeters) if (id !== 'greeter-2') await serving.stop();
  console.log(`[client] done: ${summary(traffic.answers, traffic.failures)}`);
  return traffic.failures.length === 0;
}

async function serve(backend: Backend, id: string): Promise<void> {
  // Installed before registering: a SIGTERM from here on deregisters whatever is registered by then.
  let serving: GrpcServing | undefined;
  installGracefulShutdown(backend, {
    drainMs: Number(process.env.DRAIN_MS ?? 2000),
    beforeExit: async () => {
      await serving?.stop();
      console.log(`[${id}] drained and stopped`);
    },
  });
  serving = await startGreeter(backend.discovery, id, 0);
}

async function call(discovery: ServiceDiscovery): Promise<void> {
  const resolver = registerResolver(discovery);
  const client = greeterClient(`rollcall:///${SERVICE}`);
  const traffic = keepCalling(client, true);
  const finish = async () => {
    await traffic.stop();
    client.close();
    resolver.close();
    console.log(`[client] summary: ${summary(traffic.answers, traffic.failures)}`);
    process.exit(traffic.failures.length === 0 ? 0 : 1);
  };
  process.once('SIGTERM', () => void finish());
  process.once('SIGINT', () => void finish());
}

const [mode = 'demo', id = 'greeter-1'] = process.argv.slice(2);
const config = loadConfig();
const container = createContainer(config);
const discovery = container.get<ServiceDiscovery>(TYPES.ServiceDiscovery);
console.log(`[${mode}] backend ${config.backend}`);
if (mode === 'serve') await serve(container.get<Backend>(TYPES.Backend), id);
else if (mode === 'call') await call(discovery);
else {
  const ok = await demo(discovery);
  await container.unbindAllAsync();
  process.exit(ok ? 0 : 1);
}
