import type { Command } from 'commander';
import { completionCommand } from './completion.js';
import type { CliContext } from './context.js';
import { discoveryCommands } from './discovery.js';
import { doctorCommand } from './doctor.js';
import { healthCommand } from './health.js';
import { kvCommands } from './kv.js';
import { lockCommands } from './locks.js';
import { migrateCommands } from './migrate.js';
import { uiCommand } from './ui.js';

/**
 * A command group: adds its commands to the program. Commands get everything they need from the
 * context (output, the backend, the interrupt signal); they throw to fail (see `errors.ts` for the
 * exit codes) or set `ctx.exitCode`.
 *
 * Adding a group is one file, e.g. `cli/migrate.ts` exporting `migrateCommands(program, ctx)`,
 * plus its line in {@link COMMAND_GROUPS}; help, `--json`,
 * exit codes and the completion scripts follow by themselves.
 */
export type CommandGroup = (program: Command, ctx: CliContext) => void;

/** Every command group, in the order `rollcall --help` lists them. */
export const COMMAND_GROUPS: readonly CommandGroup[] = [
  discoveryCommands,
  kvCommands,
  lockCommands,
  healthCommand,
  doctorCommand,
  migrateCommands,
  uiCommand,
  completionCommand,
];
