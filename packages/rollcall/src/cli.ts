import type { Backend, Snapshot } from '@rollcall/core';
import { ConfigError, RollcallError } from '@rollcall/core';
import {
  applyKvCopy,
  changePhase,
  consulKvInspector,
  formatBlocked,
  formatBridgeEvent,
  formatKvPlan,
  formatKvResult,
  formatPhaseChange,
  formatStatus,
  type MigratingBackend,
  MigrationBlockedError,
  migrationStatus,
  planKvCopy,
  progressReporter,
  startBridge,
  validatePhase,
} from '@rollcall/migration';
import { Command, CommanderError, Option } from 'commander';
import { backendFactory, createMigratingFromConfig } from './backends.js';
import { loadConfig, type RollcallConfig } from './config.js';

/** Where the CLI writes, and what it talks to (injectable for tests). */
export interface CliIo {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  /** Use this backend instead of the configured one (it is not closed by the CLI). */
  backend?: Backend;
  /** Environment variables. Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** Ends `watch` and `migrate bridge` (default: SIGINT, and SIGTERM for the bridge). */
  signal?: AbortSignal;
  /** Raw writes to a terminal (progress bars); leave out when the output is not a terminal. */
  tty?: (text: string) => void;
}

function isMigrating(backend: Backend): backend is MigratingBackend {
  return backend.name === 'migrating' && typeof (backend as MigratingBackend).setPhase === 'function';
}

/** Ends on `io.signal`, or else on SIGINT/SIGTERM. */
function untilStopped(io: CliIo): AbortSignal {
  if (io.signal) return io.signal;
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return controller.signal;
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
  const configured = (): RollcallConfig => {
    const global = program.opts<{ env?: string; config?: string; backend?: string }>();
    const env = {
      ...(io.env ?? process.env),
      ...(global.backend ? { ROLLCALL_BACKEND: global.backend } : {}),
    };
    return loadConfig({
      env,
      ...(global.env ? { environment: global.env } : {}),
      ...(global.config ? { file: global.config } : {}),
    });
  };
  const open = (): Backend => {
    if (io.backend) return io.backend;
    const config = configured();
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

  let exitCode = 0;
  /** The migration of the configuration's `migrating` section; the CLI only looks, so it does not join the fleet list. */
  const openMigration = (): { migration: MigratingBackend; config: RollcallConfig | undefined } => {
    if (io.backend) {
      if (isMigrating(io.backend)) return { migration: io.backend, config: undefined };
      throw new ConfigError([{ path: 'backend', message: "migrate commands need the 'migrating' backend" }]);
    }
    const config = configured();
    const migration = createMigratingFromConfig(config, { acknowledge: false });
    backend = migration;
    return { migration, config };
  };
  const migrate = program.command('migrate').description('move the fleet from one registry to another');
  migrate
    .command('status [service]')
    .description('the phase, each service in both registries with its verdict, and the fleet')
    .action(async (service: string | undefined) => {
      const { migration } = openMigration();
      const status = await migrationStatus(migration, service);
      if (json()) io.stdout(JSON.stringify(status));
      else for (const line of formatStatus(status)) io.stdout(line);
    });
  migrate
    .command('phase <phase>')
    .description('move the fleet to a phase (gated), then wait until it follows')
    .option('--force', 'move forward even past blocked services')
    .addOption(new Option('--wait <ms>', 'how long to wait for the fleet to follow').default('30000'))
    .action(async (phase: string, options: { force?: boolean; wait: string }) => {
      const target = validatePhase(phase, 'phase');
      const waitMs = Number(options.wait);
      if (!Number.isInteger(waitMs) || waitMs < 0)
        throw new ConfigError([{ path: '--wait', message: 'must be a number of ms' }]);
      const { migration } = openMigration();
      try {
        const change = await changePhase(migration, target, { force: options.force === true, waitMs });
        if (json()) io.stdout(JSON.stringify(change));
        else for (const line of formatPhaseChange(change)) io.stdout(line);
        if (change.fleet.outcome === 'timeout') exitCode = 1;
      } catch (error) {
        if (!(error instanceof MigrationBlockedError)) throw error;
        if (json()) io.stdout(JSON.stringify({ blocked: error.blocked, phase: error.phase }));
        for (const line of formatBlocked(error, migration.from.name, migration.to.name)) io.stderr(line);
        exitCode = 1;
      }
    });
  migrate
    .command('kv')
    .description('copy configuration keys from the old registry to the new one (a dry run without --apply)')
    .requiredOption('--prefix <prefix>', 'the subtree to copy, e.g. configs/')
    .option('--apply', 'write (default: only show what would change)')
    .option('--delete-extra', 'with --apply: also delete keys only the new registry holds')
    .action(async (options: { prefix: string; apply?: boolean; deleteExtra?: boolean }) => {
      const { migration, config } = openMigration();
      const { from, to } = migration;
      const consul = config?.migrating?.from === 'consul' ? (config.consul ?? {}) : undefined;
      const copy = {
        from: from.kv,
        to: to.kv,
        prefix: options.prefix,
        ...(consul ? { inspect: consulKvInspector(consul) } : {}),
      };
      if (!options.apply) {
        const plan = await planKvCopy(copy);
        if (json()) io.stdout(JSON.stringify(plan));
        else for (const line of formatKvPlan(plan, from.name, to.name)) io.stdout(line);
        return;
      }
      const progress = progressReporter({ line: io.stdout, ...(io.tty && !json() ? { tty: io.tty } : {}) });
      const { plan, result } = await applyKvCopy(copy, {
        deleteExtra: options.deleteExtra === true,
        ...(json() ? {} : { onProgress: progress.update }),
      });
      progress.end();
      if (json()) io.stdout(JSON.stringify({ plan, result }));
      else for (const line of formatKvResult(plan, result, from.name, to.name)) io.stdout(line);
      if (!result.checksum.match && result.extraKept === 0) exitCode = 1;
    });
  migrate
    .command('bridge')
    .description('mirror services that are not Rollcall clients into the new registry until stopped')
    .option('--service <service...>', 'a service to mirror (repeatable)')
    .option('--all', 'mirror every service of the old registry')
    .action(async (options: { service?: string[]; all?: boolean }) => {
      const { migration } = openMigration();
      const signal = untilStopped(io);
      const bridge = startBridge({
        from: migration.from,
        to: migration.to,
        ...(options.service ? { services: options.service } : {}),
        all: options.all === true,
        onEvent: (event) => io.stdout(json() ? JSON.stringify(event) : formatBridgeEvent(event)),
      });
      signal.addEventListener('abort', () => void bridge.stop(), { once: true });
      if (signal.aborted) await bridge.stop();
      await bridge.done;
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
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
