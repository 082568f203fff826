import type { Command } from 'commander';
import { consulAddressOf } from '../capabilities.js';
import { startDashboard } from '../dashboard/server.js';
import { type CliContext, untilAborted } from './context.js';
import { callTimeoutOf } from './health.js';
import { positiveInteger } from './locks.js';
import { consulTotals } from './probes.js';

/** `ui`: the live, read-only dashboard. */
export function uiCommand(program: Command, ctx: CliContext): void {
  program
    .command('ui')
    .description('serve a live, read-only dashboard of the registry (until interrupted)')
    .option(
      '-p, --port <port>',
      'port to listen on (0: any free port)',
      (v) => (v === '0' ? 0 : positiveInteger('--port')(v)),
      7070,
    )
    .option('-H, --host <address>', 'address to bind; other than loopback needs a token', '127.0.0.1')
    .option(
      '--token <token>',
      'token every data request must carry (default: ROLLCALL_UI_TOKEN; at least 16 characters)',
    )
    .option('--kv-prefix <prefix>', 'configuration keys shown: those under this prefix', '')
    .addHelpText(
      'after',
      '\nOpen the printed URL. With a token, open http://host:port/?token=<token> (the page passes it on).\nPrefer ROLLCALL_UI_TOKEN to --token: command lines are visible to other users of the machine.',
    )
    .action(async (options: { port: number; host: string; token?: string; kvPrefix: string }) => {
      const backend = ctx.backend();
      const token = options.token ?? (ctx.io.env ?? process.env).ROLLCALL_UI_TOKEN;
      const address = backend.name === 'consul' ? consulAddressOf(backend) : undefined;
      const config = ctx.io.backend ? undefined : ctx.config().consul;
      const totals = address
        ? () =>
            consulTotals(address, callTimeoutOf(ctx), {
              ...(config?.token ? { token: config.token } : {}),
              ...(config?.datacenter ? { datacenter: config.datacenter } : {}),
            })
        : undefined;
      const dashboard = await startDashboard({
        backend,
        host: options.host,
        port: options.port,
        kvPrefix: options.kvPrefix,
        ...(token ? { token } : {}),
        ...(totals ? { totals } : {}),
        ...(ctx.target ? { server: ctx.target } : {}),
      });
      try {
        ctx.print({ url: dashboard.url, tokenRequired: token !== undefined }, () => [
          `rollcall dashboard on ${dashboard.url}${token ? ' (add ?token=<token>)' : ''}; Ctrl-C stops it`,
        ]);
        ctx.io.onListening?.(dashboard.url);
        await untilAborted(ctx.interrupted());
      } finally {
        await dashboard.close();
      }
    });
}
