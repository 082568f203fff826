import type { DiscoveryEvent, ServiceInstance, Snapshot } from '@rollcall/core';
import type { Command } from 'commander';
import type { CliContext } from './context.js';
import { UsageError } from './errors.js';
import { instanceRows, table } from './output.js';

/** Filters of `instances`: every tag and every metadata pair must match. */
interface InstanceFilter {
  tags: string[];
  metadata: [string, string][];
}

/** Parses repeated `--meta k=v` options. */
function parseMetaFilters(values: readonly string[]): [string, string][] {
  return values.map((pair) => {
    const at = pair.indexOf('=');
    if (at <= 0) throw new UsageError(`--meta: expected key=value, got '${pair}'`);
    return [pair.slice(0, at), pair.slice(at + 1)];
  });
}

/** True when `instance` has every tag and every metadata pair of `filter`. */
function matches(instance: ServiceInstance, filter: InstanceFilter): boolean {
  const tags = instance.tags ?? [];
  return (
    filter.tags.every((t) => tags.includes(t)) &&
    filter.metadata.every(
      ([k, v]) => Object.hasOwn(instance.metadata ?? {}, k) && instance.metadata?.[k] === v,
    )
  );
}

const collect = (value: string, previous: string[]) => [...previous, value];

function staleNote(snapshot: Snapshot): string {
  return `warning: the backend cannot be reached; this is the last known list (confirmed ${new Date(snapshot.syncedAt).toISOString()})`;
}

function describeEvent(event: DiscoveryEvent): string {
  if (event.type === 'change') {
    const parts = [
      ...event.added.map((i) => `+${i.id}`),
      ...event.removed.map((i) => `-${i.id}`),
      ...event.updated.map((i) => `~${i.id}`),
    ];
    return `change ${parts.join(' ')} (${event.snapshot.instances.length} instances)`;
  }
  if (event.type === 'stale')
    return `stale: ${event.error.message} (keeping ${event.snapshot.instances.length} instances)`;
  return `sync ${event.snapshot.instances.map((i) => i.id).join(' ') || '(none)'}`;
}

/** `services`, `instances <service>`, `watch <service>`. */
export function discoveryCommands(program: Command, ctx: CliContext): void {
  program
    .command('services')
    .description('list the services that have instances')
    .addHelpText('after', '\nOutput: one name per line; --json: an array of names.')
    .action(async () => {
      const names = await ctx.backend().discovery.listServices();
      ctx.print(names, () => names);
    });

  program
    .command('instances')
    .argument('<service>', 'service name')
    .description("list a service's instances (id, address, version, weight, tags, metadata)")
    .option('-t, --tag <tag>', 'only instances with this tag (repeatable: all must match)', collect, [])
    .option(
      '-m, --meta <key=value>',
      'only instances with this metadata (repeatable: all must match)',
      collect,
      [],
    )
    .addHelpText(
      'after',
      '\nExamples:\n  rollcall instances orders --tag blue --meta zone=eu-1\n  rollcall --json instances orders\n\n--json prints the snapshot: { service, instances, stale, syncedAt }.',
    )
    .action(async (service: string, options: { tag: string[]; meta: string[] }) => {
      const filter = { tags: options.tag, metadata: parseMetaFilters(options.meta) };
      const snapshot = await ctx.backend().discovery.getInstances(service);
      const instances = snapshot.instances.filter((i) => matches(i, filter));
      if (snapshot.stale) ctx.err(staleNote(snapshot));
      ctx.print({ ...snapshot, instances }, () =>
        instances.length === 0 ? [`no instances of '${service}'`] : table(instanceRows(instances)),
      );
    });

  program
    .command('watch')
    .argument('<service>', 'service name')
    .description("print a service's changes until interrupted (Ctrl-C)")
    .addHelpText(
      'after',
      '\nOutput: `sync <ids>` first, then `change +added -removed ~updated`, `stale: ...` during an outage.\n--json prints one event per line.',
    )
    .action(async (service: string) => {
      const watch = ctx.backend().discovery.watch(service, { signal: ctx.interrupted() });
      for await (const event of watch) ctx.print(event, () => [describeEvent(event)]);
    });
}
