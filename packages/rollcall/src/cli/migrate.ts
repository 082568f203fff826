import { ConfigError } from '@rollcall/core';
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
import { type Command, Option } from 'commander';
import { createMigratingFromConfig } from '../backends.js';
import type { RollcallConfig } from '../config.js';
import type { CliContext } from './context.js';
import { toJson } from './output.js';

function isMigrating(backend: unknown): backend is MigratingBackend {
  const b = backend as Partial<MigratingBackend>;
  return b.name === 'migrating' && typeof b.setPhase === 'function';
}

/**
 * The migration the configuration's `migrating` section describes (any `backend`), or the injected
 * migrating backend. The CLI only looks and steers, so it does not join the fleet list.
 */
function openMigration(ctx: CliContext): { migration: MigratingBackend; config: RollcallConfig | undefined } {
  const injected = ctx.io.backend;
  if (injected) {
    if (isMigrating(injected)) return { migration: injected, config: undefined };
    throw new ConfigError([{ path: 'backend', message: "migrate commands need the 'migrating' backend" }]);
  }
  const config = ctx.config();
  return { migration: ctx.own(createMigratingFromConfig(config, { acknowledge: false })), config };
}

/** `migrate status|phase|kv|bridge`: move the fleet from one registry to another (the runbook in `@rollcall/migration`). */
export function migrateCommands(program: Command, ctx: CliContext): void {
  const migrate = program.command('migrate').description('move the fleet from one registry to another');

  migrate
    .command('status [service]')
    .description('the phase, each service in both registries with its verdict, and the fleet')
    .action(async (service: string | undefined) => {
      const status = await migrationStatus(openMigration(ctx).migration, service);
      ctx.print(status, () => formatStatus(status));
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
      const { migration } = openMigration(ctx);
      try {
        const change = await changePhase(migration, target, { force: options.force === true, waitMs });
        ctx.print(change, () => formatPhaseChange(change));
        if (change.fleet.outcome === 'timeout') ctx.exitCode = 1;
      } catch (error) {
        if (!(error instanceof MigrationBlockedError)) throw error;
        if (ctx.json) ctx.out(toJson({ blocked: error.blocked, phase: error.phase }));
        for (const line of formatBlocked(error, migration.from.name, migration.to.name)) ctx.err(line);
        ctx.exitCode = 1;
      }
    });

  migrate
    .command('kv')
    .description('copy configuration keys from the old registry to the new one (a dry run without --apply)')
    .requiredOption('--prefix <prefix>', 'the subtree to copy, e.g. configs/')
    .option('--apply', 'write (default: only show what would change)')
    .option('--delete-extra', 'with --apply: also delete keys only the new registry holds')
    .action(async (options: { prefix: string; apply?: boolean; deleteExtra?: boolean }) => {
      const { migration, config } = openMigration(ctx);
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
        ctx.print(plan, () => formatKvPlan(plan, from.name, to.name));
        return;
      }
      const tty = ctx.io.tty;
      const progress = progressReporter({ line: (l) => ctx.out(l), ...(tty && !ctx.json ? { tty } : {}) });
      const { plan, result } = await applyKvCopy(copy, {
        deleteExtra: options.deleteExtra === true,
        ...(ctx.json ? {} : { onProgress: progress.update }),
      });
      progress.end();
      ctx.print({ plan, result }, () => formatKvResult(plan, result, from.name, to.name));
      if (!result.checksum.match && result.extraKept === 0) ctx.exitCode = 1;
    });

  migrate
    .command('bridge')
    .description('mirror services that are not Rollcall clients into the new registry until stopped')
    .option('--service <service...>', 'a service to mirror (repeatable)')
    .option('--all', 'mirror every service of the old registry')
    .action(async (options: { service?: string[]; all?: boolean }) => {
      const { migration } = openMigration(ctx);
      const signal = ctx.interrupted();
      const bridge = startBridge({
        from: migration.from,
        to: migration.to,
        ...(options.service ? { services: options.service } : {}),
        all: options.all === true,
        onEvent: (event) => ctx.out(ctx.json ? toJson(event) : formatBridgeEvent(event)),
      });
      signal.addEventListener('abort', () => void bridge.stop(), { once: true });
      if (signal.aborted) await bridge.stop();
      await bridge.done;
    });
}
