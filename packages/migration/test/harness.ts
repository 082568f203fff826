import type { Backend, Logger } from '@rollcall/core';
import { createMemoryBackend, ManualClock, MemoryStore } from '@rollcall/memory';
import {
  createMigratingBackend,
  type MigratingBackend,
  type MigrationPhase,
  type Side,
} from '../src/index.js';

/** Two memory registries (`from` and `to`) shared by every client made over them. */
export class MemoryPair {
  readonly from: MemoryStore;
  readonly to: MemoryStore;
  readonly clock: ManualClock | undefined;
  /** Two stores in outage, made on first use: any call that reached them would fail. */
  private down: { from: MemoryStore; to: MemoryStore } | undefined;

  constructor(options: { manualClock?: boolean } = {}) {
    this.clock = options.manualClock ? new ManualClock() : undefined;
    const store = () => new MemoryStore(this.clock ? { clock: this.clock } : {});
    this.from = store();
    this.to = store();
  }

  store(side: Side): MemoryStore {
    return side === 'from' ? this.from : this.to;
  }

  /** A migrating client, as a separate process of the fleet would make it. */
  client(
    phase: MigrationPhase,
    extra: { phaseKey?: string; logger?: Logger; acknowledge?: boolean; threshold?: number } = {},
  ): MigratingBackend {
    return createMigratingBackend({
      from: createMemoryBackend({ store: this.from }),
      to: createMemoryBackend({ store: this.to }),
      phase,
      ...extra,
    });
  }

  /** A migrating client of two registries that cannot be reached (the suites' bad-input and abort tests). */
  unreachable(phase: MigrationPhase): MigratingBackend {
    if (!this.down) {
      this.down = { from: new MemoryStore(), to: new MemoryStore() };
      this.down.from.outage();
      this.down.to.outage();
    }
    return createMigratingBackend({
      from: createMemoryBackend({ store: this.down.from }),
      to: createMemoryBackend({ store: this.down.to }),
      phase,
    });
  }

  /** A plain client of one registry (a process not migrating). */
  plain(side: Side): Backend {
    return createMemoryBackend({ store: this.store(side) });
  }

  /** `crash` of the compliance suites: both registries stop hearing from the client. */
  crash(client: Backend): void {
    const m = client as MigratingBackend;
    this.from.crash(m.from);
    this.to.crash(m.to);
  }

  outage(sides: readonly Side[]): void {
    for (const side of sides) this.store(side).outage();
  }

  restore(sides: readonly Side[]): void {
    for (const side of sides) this.store(side).restore();
  }

  async elapse(ms: number): Promise<void> {
    this.clock?.advance(ms);
    this.from.expire();
    this.to.expire();
  }

  dispose(): void {
    for (const store of [this.from, this.to, this.down?.from, this.down?.to]) store?.dispose();
  }
}

/** The registry a phase reads (the one whose outage a reader must notice). */
export function readSide(phase: MigrationPhase): Side {
  return phase === 'dual-write' || phase === 'shadow' ? 'from' : 'to';
}
