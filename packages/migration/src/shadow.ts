import type { Logger, ServiceInstance } from '@rollcall/core';
import type { MigrationPhase, Side } from './phases.js';

/** An instance one registry lists and the other does not, seen while both are followed (`shadow`, `dual-read`). */
export interface ShadowDifference {
  service: string;
  id: string;
  /** The registry that has it. */
  onlyIn: Side;
  /** When this client first saw the difference (ms epoch). */
  since: number;
}

/**
 * Keeps every difference between the two registries' lists of each followed service. A
 * difference that outlives `graceMs` (the slower registry's propagation, e.g. a Consul poll) is
 * logged as a warning once, and its end as info, so an operator sees whether the new registry is
 * complete before reads depend on it.
 */
export class ShadowReport {
  private readonly open = new Map<string, Map<string, ShadowDifference & { reported: boolean }>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly logger: Logger,
    private readonly names: Readonly<Record<Side, string>>,
    private readonly graceMs: number,
    private readonly now: () => number,
  ) {}

  /** Called with both registries' current lists of `service` after every update. */
  observe(
    service: string,
    phase: MigrationPhase,
    from: ReadonlyMap<string, ServiceInstance> | undefined,
    to: ReadonlyMap<string, ServiceInstance> | undefined,
  ): void {
    if (!from || !to || (phase !== 'shadow' && phase !== 'dual-read')) {
      this.open.delete(service);
      return;
    }
    const known = this.open.get(service) ?? new Map();
    const next = new Map<string, ShadowDifference & { reported: boolean }>();
    const note = (id: string, onlyIn: Side) => {
      const key = `${onlyIn}:${id}`;
      next.set(key, known.get(key) ?? { service, id, onlyIn, since: this.now(), reported: false });
    };
    for (const id of from.keys()) if (!to.has(id)) note(id, 'from');
    for (const id of to.keys()) if (!from.has(id)) note(id, 'to');
    for (const [key, d] of known) {
      if (next.has(key) || !d.reported) continue;
      this.logger.info(
        {
          service,
          id: d.id,
          afterMs: this.now() - d.since,
        },
        `shadow: '${service}' instance '${d.id}' is in both registries again`,
      );
    }
    if (next.size === 0) this.open.delete(service);
    else {
      this.open.set(service, next);
      this.schedule();
    }
  }

  /** Every open difference (of `service`, or all), oldest first. */
  differences(service?: string): ShadowDifference[] {
    const all = service
      ? [...(this.open.get(service)?.values() ?? [])]
      : [...this.open.values()].flatMap((m) => [...m.values()]);
    return all
      .map(({ reported: _reported, ...d }) => d)
      .sort((a, b) => a.since - b.since || (a.service < b.service ? -1 : a.id < b.id ? -1 : 1));
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.report(), Math.max(250, Math.min(this.graceMs, 5000)));
    this.timer.unref();
  }

  private report(): void {
    const cutoff = this.now() - this.graceMs;
    for (const [service, diffs] of this.open) {
      const due = [...diffs.values()].filter((d) => !d.reported && d.since <= cutoff);
      for (const side of ['from', 'to'] as const) {
        const ids = due.filter((d) => d.onlyIn === side);
        if (ids.length === 0) continue;
        for (const d of ids) d.reported = true;
        this.logger.warn(
          { service, onlyIn: side, ids: ids.map((d) => d.id), since: new Date(ids[0]!.since).toISOString() },
          `shadow: '${service}' has ${ids.length} instance(s) only in ${this.names[side]} (${side})`,
        );
      }
    }
    if (this.open.size === 0) this.close();
  }
}
