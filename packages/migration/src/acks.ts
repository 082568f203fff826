import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import {
  type BackoffOptions,
  isValidHost,
  type Logger,
  type Registration,
  type ServiceDiscovery,
  type ServiceInstance,
  type Snapshot,
} from '@rollcall/core';
import { Backoff, sleep } from '@rollcall/core/driver';
import { isPhase, type MigrationPhase } from './phases.js';

/**
 * The service in `to` where every migrating client announces the phase it follows: one
 * instance per client process (port 1: a presence record, not something to call). Instances
 * live on the client's registration lease, so a process that dies leaves the list within its TTL.
 * `rollcall migrate phase` reads it to see the fleet follow.
 */
export const ACK_SERVICE = 'rollcall-migration';

/** TTL of a presence record, in seconds. */
export const ACK_TTL_SECONDS = 10;

/** One client process of the fleet, as its presence record says. */
export interface FleetMember {
  /** The client's id (host, pid and a random part). */
  client: string;
  /** The phase it follows now. */
  phase: MigrationPhase;
  /** Where it runs. */
  host: string;
  pid: number;
  /** When it took that phase (ms epoch, its own clock). */
  since: number;
}

/** A fresh client id: the host name and pid for people, a random part for uniqueness. */
export function newClientId(): string {
  const host = hostname()
    .replace(/[^A-Za-z0-9-]/g, '-')
    .slice(0, 60);
  return `${host || 'host'}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** The fleet's members from a snapshot of {@link ACK_SERVICE}: the newest record of each client. */
export function fleetOf(snapshot: Snapshot): FleetMember[] {
  const newest = new Map<string, { seq: number; member: FleetMember }>();
  for (const instance of snapshot.instances) {
    const m = instance.metadata ?? {};
    const seq = Number(m.seq);
    if (!m.client || !isPhase(m.phase) || !Number.isInteger(seq)) continue;
    const known = newest.get(m.client);
    if (known && known.seq >= seq) continue;
    newest.set(m.client, {
      seq,
      member: {
        client: m.client,
        phase: m.phase,
        host: instance.host,
        pid: Number(m.pid),
        since: Number(m.since),
      },
    });
  }
  return [...newest.values()].map((n) => n.member).sort((a, b) => (a.client < b.client ? -1 : 1));
}

/**
 * Publishes this client's phase in {@link ACK_SERVICE} on `to`. Each new phase is a new record
 * (`<client>-<seq>`) registered before the previous one is removed, so the client never
 * disappears from the list while it switches. A failed announcement is retried (with backoff)
 * until it lands or a newer phase replaces it.
 */
export class Acknowledger {
  private seq = 0;
  private current: { registration: Registration; phase: MigrationPhase } | undefined;
  private wanted: MigrationPhase | undefined;
  private running: Promise<void> | undefined;
  private readonly stop = new AbortController();
  private readonly host: string;

  constructor(
    private readonly discovery: ServiceDiscovery,
    readonly clientId: string,
    private readonly logger: Logger,
    private readonly backoff: BackoffOptions = {},
  ) {
    const name = hostname();
    this.host = isValidHost(name) ? name : '127.0.0.1';
  }

  /** Announces `phase` (replacing any announcement not made yet). Never throws. */
  publish(phase: MigrationPhase): Promise<void> {
    this.wanted = phase;
    this.running ??= this.loop().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  /** Removes the record. Idempotent. */
  async close(): Promise<void> {
    this.stop.abort();
    await this.running;
    await this.current?.registration.deregister().catch(() => {});
    this.current = undefined;
  }

  private async loop(): Promise<void> {
    const backoff = new Backoff(this.backoff);
    while (!this.stop.signal.aborted && this.wanted !== undefined && this.wanted !== this.current?.phase) {
      const phase = this.wanted;
      try {
        await this.replace(phase);
        backoff.reset();
      } catch (error) {
        this.logger.warn(
          {
            phase,
            error: error instanceof Error ? error.message : String(error),
          },
          'cannot announce the phase in the fleet list; retrying',
        );
        await sleep(backoff.next(), this.stop.signal).catch(() => {});
      }
    }
  }

  private async replace(phase: MigrationPhase): Promise<void> {
    this.seq += 1;
    const instance: ServiceInstance = {
      service: ACK_SERVICE,
      id: `${this.clientId}-${this.seq}`,
      host: this.host,
      port: 1,
      metadata: {
        client: this.clientId,
        phase,
        seq: String(this.seq),
        pid: String(process.pid),
        since: String(Date.now()),
      },
    };
    // Closing abandons an announcement still being written (the registry may be unreachable).
    const registration = await this.discovery.register(instance, {
      ttlSeconds: ACK_TTL_SECONDS,
      signal: this.stop.signal,
    });
    const previous = this.current;
    this.current = { registration, phase };
    await previous?.registration.deregister().catch(() => {});
  }
}
