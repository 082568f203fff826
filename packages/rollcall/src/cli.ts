import { readFileSync } from 'node:fs';
import { holdProcess } from '@rollcall/core/driver';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { COMMAND_GROUPS } from './cli/commands.js';
import { CliContext, type CliIo } from './cli/context.js';
import { debugLines, describeError, exitCodeOf } from './cli/errors.js';

export type { CommandGroup } from './cli/commands.js';
export type { CliIo, GlobalOptions } from './cli/context.js';
export { CliContext } from './cli/context.js';

/** This package's version (`rollcall --version`). */
export const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

function callTimeout(value: string): number {
  const ms = Number(value);
  if (!/^\d+$/.test(value) || ms < 100 || ms > 600_000)
    throw new InvalidArgumentError('must be an integer number of ms from 100 to 600000');
  return ms;
}

const HELP_FOOTER = `
Configuration: rollcall.config.json (section by --env, ROLLCALL_ENV or NODE_ENV) and the variables
ROLLCALL_BACKEND, ETCD_ENDPOINTS (host:port or URLs), ETCD_USERNAME, ETCD_PASSWORD, ETCD_CA_FILE,
ETCD_CERT_FILE, ETCD_KEY_FILE, CONSUL_HTTP_ADDR, CONSUL_HTTP_TOKEN, ...

Exit codes: 0 success, 1 failure (unreachable backend, missing key, failed check),
2 bad usage, input or configuration.`;

/** The `rollcall` program with every command group, writing through `ctx`. */
function buildProgram(io: CliIo): { program: Command; ctx: CliContext } {
  const program = new Command('rollcall')
    .description('Inspect and operate a Rollcall registry (etcd, Consul or memory)')
    .version(VERSION, '-V, --version', 'print the version')
    .option('-e, --env <environment>', 'section of rollcall.config.json to use')
    .option('-c, --config <file>', 'configuration file (default ./rollcall.config.json)')
    .option('-b, --backend <name>', 'backend to use (overrides the configuration)')
    .option('--timeout <ms>', 'deadline of each call to the backend (default 5000)', callTimeout)
    .option('--json', 'print JSON instead of text')
    .option('--debug', 'print stack traces of errors')
    .addHelpText('after', HELP_FOOTER)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout(s.trimEnd()),
      writeErr: (s) => io.stderr(s.trimEnd()),
      // Usage errors are one line like every other error.
      outputError: (s, write) => write(`rollcall: ${s.trim().replace(/^error: /, '')} (see rollcall --help)`),
    });
  const ctx = new CliContext(io, program);
  for (const group of COMMAND_GROUPS) group(program, ctx);
  return { program, ctx };
}

/**
 * Runs the `rollcall` command line with `argv` (without `node` and the script) and returns the
 * exit code: 0 success, 1 failure, 2 bad usage, input or configuration. Errors are one line on
 * stderr (with `--debug`, followed by the stack).
 */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const { program, ctx } = buildProgram(io);
  // Node must not exit (code 13, no message) while a command awaits a call that holds no handle of its own.
  const release = holdProcess();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return ctx.exitCode;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode === 0 ? 0 : 2;
    io.stderr(`rollcall: ${describeError(error, ctx.target)}`);
    if (ctx.options.debug) for (const line of debugLines(error)) io.stderr(line);
    return exitCodeOf(error);
  } finally {
    await ctx.close();
    release();
  }
}
