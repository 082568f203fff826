/**
 * An order service that exports Rollcall's metrics to Prometheus: the OpenTelemetry SDK with
 * its Prometheus exporter, and `instrumentRollcall()` recording Rollcall's diagnostics channels
 * into it. The backend comes from the container's configuration (`rollcall.config.json` /
 * `ROLLCALL_BACKEND`, memory by default).
 *
 *   node dist/main.js     serves until SIGTERM / SIGINT, then leaves gracefully and exits 0
 *
 * Environment:
 *   METRICS_PORT      port of GET /metrics (default 9464, Prometheus' registered exporter port)
 *   METRICS_HOST      address it binds (default 0.0.0.0)
 *   INSTANCE_IDS      order-service instances this process runs, comma-separated (default orders-1,orders-2)
 *   REPORT_EVERY_MS   how often an instance takes the `orders-report` lock to write the report (default 1000)
 *   DRAIN_MS          drain delay on shutdown (default 1000)
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { type Backend, installGracefulShutdown, TYPES } from '@rollcall/core';
import { instrumentRollcall } from '@rollcall/otel';
import { createContainer, type LiveConfigFactory, loadConfig } from 'rollcall';
import { z } from 'zod';

const SERVICE = 'orders';
const env = process.env;
const metricsPort = Number(env.METRICS_PORT ?? 9464);
const ids = (env.INSTANCE_IDS ?? 'orders-1,orders-2').split(',').filter(Boolean);
const reportEveryMs = Number(env.REPORT_EVERY_MS ?? 1000);

// 1. The OpenTelemetry SDK first, registered as the global meter provider...
const exporter = new PrometheusExporter({ port: metricsPort, host: env.METRICS_HOST ?? '0.0.0.0' });
const meterProvider = new MeterProvider({ readers: [exporter] });
metrics.setGlobalMeterProvider(meterProvider);
// 2. ...then Rollcall's instrumentation, which records into the global providers.
const instrumentation = instrumentRollcall();

const config = loadConfig();
const container = createContainer(config);
const backend = container.get<Backend>(TYPES.Backend);
console.log(
  `[otel-prometheus] backend ${config.backend}; metrics on http://127.0.0.1:${metricsPort}/metrics`,
);

// Installed before anything is registered: a SIGTERM from here on deregisters whatever is
// registered by then (one arriving before would kill the process with Node's default action,
// leaving its instances listed until their ttl). Each resource adds its clean-up once it exists.
const cleanups: (() => unknown)[] = [];
let reports = 0;
installGracefulShutdown(backend, {
  drainMs: Number(env.DRAIN_MS ?? 1000),
  beforeExit: async () => {
    for (const cleanup of cleanups.reverse()) await cleanup();
    instrumentation.uninstall();
    await meterProvider.shutdown();
    console.log(`[otel-prometheus] stopped after ${reports} reports`);
  },
});

// Live configuration: the report's title, changeable without a restart.
const environment = env.ROLLCALL_ENV ?? env.NODE_ENV ?? 'development';
const settings = await container.get<LiveConfigFactory>(TYPES.LiveConfigFactory)({
  prefix: `/configs/${SERVICE}/${environment}/`,
  schema: z.object({ report_title: z.string().min(1) }),
  defaults: { report_title: 'orders report' },
  startupTimeoutMs: 3000,
});
cleanups.push(() => settings.close());

// Each instance: an HTTP listener on a free port, registered under its id.
async function startInstance(id: string): Promise<void> {
  const server = createServer((_req, res) => res.end(`order service ${id}\n`));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  cleanups.push(() => new Promise((resolve) => server.close(resolve)));
  await backend.discovery.register({ id, service: SERVICE, host: '127.0.0.1', port }, { ttlSeconds: 5 });
  console.log(`[${id}] registered on 127.0.0.1:${port}`);
}
await Promise.all(ids.map(startInstance));

// A watch of the service keeps its instance count current (rollcall.service.instances).
const watch = backend.discovery.watch(SERVICE);
cleanups.push(() => watch.close());
void (async () => {
  for await (const event of watch)
    console.log(`[watch] ${event.type}: ${event.snapshot.instances.map((i) => i.id).join(', ') || '(none)'}`);
})();

// One instance at a time writes the report (rollcall.lock.acquire.duration, rollcall.lock.held).
const reporter = setInterval(() => {
  backend.locks
    .withLock('orders-report', async () => {
      reports += 1;
      if (reports === 1) console.log(`[report] first '${settings.current.report_title}' written`);
    })
    .catch((error: Error) => console.log(`[report] skipped: ${error.message}`));
}, reportEveryMs);
cleanups.push(() => clearInterval(reporter));
