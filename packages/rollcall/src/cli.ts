import type { Backend, Snapshot } from '@rollcall/core';
import { RollcallError } from '@rollcall/core';
import { Command, CommanderError } from 'commander';
import { backendFactory } from './backends.js';
import { loadConfig } from './config.js';

/** Where the CLI writes, and what it talks to (injectable for tests). */
export interface CliIo {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  /** Use this backend instead of the configured one (it is not closed by the CLI). */
  backend?: Backend;
  /** Environment variables. Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** Ends `watch` (default: SIGINT). */
  signal?: AbortSignal;
}

function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) =>
    r
      .map((cell, c) => cell.padEnd(widths[c]!))
      .join('  ')
      .trimEnd(),
  );
}

function instanceRows(snapshot: Snapshot): string[][] {
  return [
    ['ID', 'ADDRESS', 'VERSION', 'WEIGHT', 'TAGS'],
    ...snapshot.instances.map((i) => [
      i.id,
      `${i.host}:${i.port}`,
      i.version ?? '-',
      String(i.weight ?? 1),
      (i.tags ?? []).join(',') || '-',
    ]),
  ];
}

/**
 * Runs the `rollcall` command line with `argv` (without `node` and the script) and returns the
 * exit code: 0 success, 1 failure, 2 bad usage or configuration.
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const program = new Command('rollcall')
    .description('Inspect and operate a Rollcall registry (etcd, Consul or memory)')
    .option('-e, --env <environment>', 'section of rollcall.config.json to use')
    .option('-c, --config <file>', 'configuration file', undefined)
    .option('-b, --backend <name>', 'backend to use (overrides the configuration)')
    .option('--json', 'print JSON instead of tables')
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout(s.trimEnd()), writeErr: (s) => io.stderr(s.trimEnd()) });

  let backend: Backend | undefined;
  const open = (): Backend => {
    if (io.backend) return io.backend;
    const global = program.opts<{ env?: string; config?: string; backend?: string }>();
    const env = {
      ...(io.env ?? process.env),
      ...(global.backend ? { ROLLCALL_BACKEND: global.backend } : {}),
    };
    const config = loadConfig({
      env,
      ...(global.env ? { environment: global.env } : {}),
      ...(global.config ? { file: global.config } : {}),
    });
    backend = backendFactory(config)(config);
    return backend;
  };
  const json = () => program.opts<{ json?: boolean }>().json === true;

  program
    .command('services')
    .description('list services that have instances')
    .action(async () => {
      const names = await open().discovery.listServices();
      if (json()) io.stdout(JSON.stringify(names));
      else for (const n of names) io.stdout(n);
    });
  program
    .command('instances <service>')
    .description("list a service's instances")
    .action(async (service: string) => {
      const snapshot = await open().discovery.getInstances(service);
      if (json()) io.stdout(JSON.stringify(snapshot));
      else for (const line of table(instanceRows(snapshot))) io.stdout(line);
    });
  program
    .command('watch <service>')
    .description("print a service's changes until interrupted")
    .action(async (service: string) => {
      const watch = open().discovery.watch(service, { signal: io.signal });
      const stop = () => watch.close();
      if (!io.signal) process.once('SIGINT', stop);
      for await (const event of watch) {
        if (json()) io.stdout(JSON.stringify(event));
        else if (event.type === 'change') {
          const parts = [
            ...event.added.map((i) => `+${i.id}`),
            ...event.removed.map((i) => `-${i.id}`),
            ...event.updated.map((i) => `~${i.id}`),
          ];
          io.stdout(`change ${parts.join(' ')} (${event.snapshot.instances.length} instances)`);
        } else if (event.type === 'stale')
          io.stdout(`stale: ${event.error.message} (keeping ${event.snapshot.instances.length} instances)`);
        else io.stdout(`sync ${event.snapshot.instances.map((i) => i.id).join(' ') || '(none)'}`);
      }
    });
  const kv = program.command('kv').description('read and write configuration keys');
  kv.command('get <key>').action(async (key: string) => {
    const value = await open().kv.get(key);
    if (value === undefined) throw new RollcallError('ERR_NOT_FOUND', `no key '${key}'`);
    io.stdout(value);
  });
  kv.command('put <key> <value>').action(async (key: string, value: string) => {
    await open().kv.put(key, value);
  });
  kv.command('ls <prefix>').action(async (prefix: string) => {
    const entries = await open().kv.getAll(prefix);
    if (json()) io.stdout(JSON.stringify(Object.fromEntries(entries)));
    else for (const [k, v] of entries) io.stdout(`${k}=${v}`);
  });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    const message = error instanceof Error ? error.message : String(error);
    io.stderr(`rollcall: ${message}`);
    return error instanceof RollcallError && (error.code === 'ERR_CONFIG' || error.code === 'ERR_VALIDATION')
      ? 2
      : 1;
  } finally {
    await backend?.close();
  }
}
