import type { Command } from 'commander';
import type { CliContext } from './context.js';
import { FailureError } from './errors.js';

/** `kv get|put|rm|ls`: configuration keys. */
export function kvCommands(program: Command, ctx: CliContext): void {
  const kv = program
    .command('kv')
    .description('read and write configuration keys (the registry and lock subtrees are refused)');

  kv.command('get')
    .argument('<key>', 'key, e.g. configs/orders/production/log_level')
    .description("print a key's value (exit 1 when the key does not exist)")
    .addHelpText('after', '\n--json prints { key, value } (value null when missing).')
    .action(async (key: string) => {
      const value = await ctx.backend().kv.get(key);
      ctx.print({ key, value: value ?? null }, () => (value === undefined ? [] : [value]));
      if (value === undefined) throw new FailureError(`no key '${key}'`);
    });

  kv.command('put')
    .argument('<key>', 'key')
    .argument('<value>', 'value (a string; at most 512 KiB)')
    .description('write a value')
    .action(async (key: string, value: string) => {
      await ctx.backend().kv.put(key, value);
      ctx.print({ key, written: true }, () => []);
    });

  kv.command('rm')
    .alias('delete')
    .argument('<key>', 'key')
    .description('delete a key (succeeds when it does not exist)')
    .action(async (key: string) => {
      await ctx.backend().kv.delete(key);
      ctx.print({ key, deleted: true }, () => []);
    });

  kv.command('ls')
    .argument('[prefix]', 'key prefix (default: every configuration key)', '')
    .description('list keys and values under a prefix')
    .addHelpText('after', '\nOutput: key=value lines; --json: an object of key: value.')
    .action(async (prefix: string) => {
      const entries = await ctx.backend().kv.getAll(prefix);
      const sorted = [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      ctx.print(Object.fromEntries(sorted), () => sorted.map(([k, v]) => `${k}=${v}`));
    });
}
