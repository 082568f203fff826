import { AbortedError, type LockLease } from '@rollcall/core';
import { type Command, InvalidArgumentError } from 'commander';
import { listLocks } from '../capabilities.js';
import { type CliContext, untilAborted } from './context.js';
import { FailureError } from './errors.js';
import { table } from './output.js';

/** A commander parser for a positive integer option. */
export function positiveInteger(what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0)
      throw new InvalidArgumentError(`${what} must be a positive integer`);
    return n;
  };
}

/** `lock list`, `lock hold <name>`, `leader <election>`. */
export function lockCommands(program: Command, ctx: CliContext): void {
  const lock = program.command('lock').description('distributed locks');

  lock
    .command('list')
    .description('list held and awaited locks and elections (where the backend can enumerate them)')
    .addHelpText(
      'after',
      '\nColumns: kind, name, holder (etcd: lease id; Consul: host:pid; elections: the leader value),\nfencing token, waiters. --json: an array of { kind, name, holder, token, waiters } (token as a string).',
    )
    .action(async () => {
      const items = await listLocks(ctx.backend());
      ctx.print(items, () =>
        items.length === 0
          ? ['no locks held or awaited']
          : table([
              ['KIND', 'NAME', 'HOLDER', 'TOKEN', 'WAITERS'],
              ...items.map((l) => [
                l.kind,
                l.name,
                l.holder ?? '-',
                l.token?.toString() ?? '-',
                String(l.waiters),
              ]),
            ]),
      );
    });

  lock
    .command('hold')
    .argument('<name>', 'lock name')
    .description('take a lock and hold it until interrupted (Ctrl-C or SIGTERM releases it and exits 0)')
    .option(
      '--ttl <seconds>',
      'seconds the lock outlives this process if it dies (default 15; Consul: at least 10)',
      positiveInteger('--ttl'),
    )
    .option(
      '--max-wait <ms>',
      'give up (exit 1) if the lock is not ours within this many ms (default: wait)',
      positiveInteger('--max-wait'),
    )
    .addHelpText(
      'after',
      '\nPrints the fencing token once held. Exits 1 if the lock is lost while held (its lease or session expired).',
    )
    .action(async (name: string, options: { ttl?: number; maxWait?: number }) => {
      const interrupted = ctx.interrupted();
      let lease: LockLease;
      try {
        lease = await ctx.backend().locks.acquire(name, {
          ...(options.ttl !== undefined ? { ttlSeconds: options.ttl } : {}),
          ...(options.maxWait !== undefined ? { timeoutMs: options.maxWait } : {}),
          signal: interrupted,
        });
      } catch (error) {
        // Interrupted while waiting: the request left the queue, nothing is held.
        if (error instanceof AbortedError && interrupted.aborted)
          throw new FailureError(`interrupted before lock '${name}' was acquired`);
        throw error;
      }
      ctx.print({ lock: name, fencingToken: lease.fencingToken, held: true }, () => [
        `holding lock '${name}' (fencing token ${lease.fencingToken}); Ctrl-C releases it`,
      ]);
      await Promise.race([untilAborted(interrupted), untilAborted(lease.signal)]);
      if (!interrupted.aborted) {
        const reason = lease.signal.reason instanceof Error ? `: ${lease.signal.reason.message}` : '';
        throw new FailureError(`lock '${name}' was lost${reason}`);
      }
      await lease.release();
      ctx.print({ lock: name, fencingToken: lease.fencingToken, held: false }, () => [
        `released lock '${name}'`,
      ]);
    });

  program
    .command('leader')
    .argument('<election>', 'election name')
    .description("print the current leader's value (exit 1 when the election has no leader)")
    .addHelpText('after', '\n--json prints { election, leader } (leader null when there is none).')
    .action(async (election: string) => {
      const leader = await ctx.backend().locks.leader(election);
      ctx.print({ election, leader: leader ?? null }, () => (leader === undefined ? [] : [leader]));
      if (leader === undefined) throw new FailureError(`election '${election}' has no leader`);
    });
}
