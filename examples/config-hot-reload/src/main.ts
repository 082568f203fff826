/**
 * A greeter service whose log level and feature flag change live. The backend comes from
 * configuration (`rollcall.config.json` / `ROLLCALL_BACKEND`, memory by default), the live
 * configuration from the container's `TYPES.LiveConfigFactory`.
 *
 *   node dist/main.js          scripted demo: changes keys itself and shows the effect, exits 0
 *   node dist/main.js --serve  serves on PORT (default 8080) until SIGTERM; change keys with
 *                              `rollcall kv put /configs/greeter/<env>/log_level debug`
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type KeyValueSource, TYPES } from '@rollcall/core';
import { createContainer, type LiveConfigFactory, loadConfig } from 'rollcall';
import { z } from 'zod';

const schema = z.object({
  log_level: z.enum(['debug', 'info', 'warn', 'error']),
  feature_new_greeting: z.boolean(),
  greeting_name: z.string().min(1),
});
const levels = ['debug', 'info', 'warn', 'error'] as const;

async function main(): Promise<void> {
  const config = loadConfig();
  const environment = process.env.ROLLCALL_ENV ?? process.env.NODE_ENV ?? 'development';
  const prefix = `/configs/greeter/${environment}/`;
  const container = createContainer(config);
  const live = await container.get<LiveConfigFactory>(TYPES.LiveConfigFactory)({
    prefix,
    schema,
    defaults: { log_level: 'info', feature_new_greeting: false, greeting_name: 'world' },
    startupTimeoutMs: 3000,
  });

  // Consumers read `live.current` on every use, so a change applies to the very next request.
  const log = (level: (typeof levels)[number], message: string) => {
    if (levels.indexOf(level) >= levels.indexOf(live.current.log_level)) console.log(`[${level}] ${message}`);
  };
  live.on('change', (_next, _previous, keys) => console.log(`[config] changed: ${keys.join(', ')}`));
  live.on('error', (error) => console.log(`[config] ${error.message}`));

  const server = createServer((req, res) => {
    log('debug', `request ${req.method} ${req.url}`);
    const { feature_new_greeting: fresh, greeting_name: name } = live.current;
    res.end(fresh ? `Hey ${name}, welcome back!` : `Hello, ${name}.`);
  });
  await new Promise<void>((resolve) =>
    server.listen(
      process.argv.includes('--serve') ? Number(process.env.PORT ?? 8080) : 0,
      '127.0.0.1',
      resolve,
    ),
  );
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  console.log(`[greeter] backend ${config.backend}, config under ${prefix}, serving ${url}`);

  if (process.argv.includes('--serve')) {
    process.once('SIGTERM', () =>
      server.close(() => void live.close().then(() => container.unbindAllAsync())),
    );
    return;
  }

  const kv = container.get<KeyValueSource>(TYPES.KeyValueSource);
  const call = async () => console.log(`[client] GET / -> ${await (await fetch(url)).text()}`);
  const waitFor = async (condition: () => boolean) => {
    const deadline = Date.now() + 5000;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error('configuration change did not arrive');
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  await call();
  console.log('[operator] set log_level=debug');
  await kv.put(`${prefix}log_level`, 'debug');
  await waitFor(() => live.current.log_level === 'debug');
  await call();
  console.log('[operator] turn on feature_new_greeting, greeting_name="Ada"');
  await kv.put(`${prefix}feature_new_greeting`, 'true');
  await kv.put(`${prefix}greeting_name`, 'Ada');
  await waitFor(() => live.current.greeting_name === 'Ada');
  await call();
  console.log('[operator] set log_level=loud (invalid)');
  const refused = new Promise<void>((resolve) => live.on('error', () => resolve()));
  await kv.put(`${prefix}log_level`, 'loud');
  await refused;
  await call();
  console.log('[operator] fix it: log_level=warn (debug lines stop)');
  await kv.put(`${prefix}log_level`, 'warn');
  await waitFor(() => live.current.log_level === 'warn');
  await call();
  console.log('[operator] delete greeting_name: back to its default');
  await kv.delete(`${prefix}greeting_name`);
  await waitFor(() => live.current.greeting_name === 'world');
  await call();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await live.close();
  await container.unbindAllAsync();
}

main().catch((error: unknown) => {
  console.error('config-hot-reload failed:', error);
  process.exit(1);
});
