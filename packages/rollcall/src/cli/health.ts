import type { Command } from 'commander';
import { discoveryHealth } from '../capabilities.js';
import type { CliContext } from './context.js';
import { describeError, tidyMessage } from './errors.js';
import { formatMs, table } from './output.js';

/** A key no one writes: reading it measures a kv round trip. */
export const PROBE_KEY = 'rollcall-cli/probe';

/** Runs `fn`, returning its result or error and how long it took. */
export async function timed<T>(
  fn: () => Promise<T>,
): Promise<{ ok: true; value: T; ms: number } | { ok: false; error: unknown; ms: number }> {
  const start = performance.now();
  try {
    const value = await fn();
    return { ok: true, value, ms: performance.now() - start };
  } catch (error) {
    return { ok: false, error, ms: performance.now() - start };
  }
}

/** The call deadline in force: `--timeout`, else 5000 ms (the backends' default). */
export function callTimeoutOf(ctx: CliContext): number {
  return ctx.options.timeout ?? 5000;
}

/** `health`: can this configuration reach its backend, and how fast does it answer? */
export function healthCommand(program: Command, ctx: CliContext): void {
  program
    .command('health')
    .summary("reachability and latency of this configuration's backend")
    .description(
      "check this configuration's backend: reachability and latency of a ping, a service list and a kv read",
    )
    .addHelpText(
      'after',
      '\nExit 0 when every call succeeded, 1 otherwise. --json prints\n{ backend, server, reachable, error?, services, latencyMs: { ping, listServices, kvGet } }.',
    )
    .action(async () => {
      const backend = ctx.backend();
      const ping = discoveryHealth(backend.discovery, callTimeoutOf(ctx));
      const pinged = ping ? await timed(() => ping) : undefined;
      const pingError =
        pinged?.ok && !pinged.value.reachable ? tidyMessage(pinged.value.error ?? 'unreachable') : undefined;
      // Unreachable: the other calls would only wait out their deadlines too.
      const skipped = { ok: false as const, error: new Error('skipped: the ping failed'), ms: 0 };
      const listed = pingError ? skipped : await timed(() => backend.discovery.listServices());
      const read = pingError ? skipped : await timed(() => backend.kv.get(PROBE_KEY));
      const errors = pingError
        ? [pingError]
        : [listed, read].flatMap((r) => (r.ok ? [] : [describeError(r.error, ctx.target)]));
      const report = {
        backend: backend.name,
        server: ctx.target ?? null,
        reachable: errors.length === 0,
        ...(errors.length > 0 ? { error: errors[0] } : {}),
        services: listed.ok ? listed.value.length : null,
        latencyMs: {
          ping: pinged?.ok && pinged.value.reachable ? round(pinged.ms) : null,
          listServices: listed.ok ? round(listed.ms) : null,
          kvGet: read.ok ? round(read.ms) : null,
        },
      };
      const line = (r: { ok: boolean; ms: number }, text = formatMs(r.ms)) =>
        r.ok ? text : pingError ? 'skipped' : 'failed';
      ctx.print(report, () =>
        table([
          ['backend', backend.name],
          ['server', ctx.target ?? '(in process)'],
          ['reachable', report.reachable ? 'yes' : `no: ${errors[0]}`],
          ...(pinged ? [['ping', pingError ? 'failed' : line(pinged)]] : []),
          [
            'services',
            line(listed, listed.ok ? `${listed.value.length} listed in ${formatMs(listed.ms)}` : ''),
          ],
          ['kv read', line(read)],
        ]),
      );
      if (!report.reachable) {
        ctx.err(`rollcall: ${errors[0]}`);
        ctx.exitCode = 1;
      }
    });
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
