import { BackendUnavailableError, type ServiceInstance } from '@rollcall/core';
import {
  type ClaimRef,
  groupBy,
  type Ownership,
  type PutOutcome,
  type SessionDriver,
  type SessionWrite,
  sleep,
} from '@rollcall/core/driver';
import { type ConsulApi, isUnknownCheck, isUnknownService } from './api.js';
import { decodeHealthEntry, META_ID, META_OWNER, registrationBody } from './codec.js';

/** How long a registration waits for the agent to show it passing in `/v1/health/service` before it fails. */
const VISIBLE_DEADLINE_MS = 3000;
/** Answers a registration reads before it may give up on seeing itself listed. */
const VISIBLE_MIN_READS = 6;

/** A registration's "session": its agent service and the TTL check that keeps it passing. */
export interface CheckSession {
  /** The Consul service ID, `<service>:<id>`: the key the engine knows it by. */
  readonly serviceId: string;
  readonly service: string;
  readonly checkId: string;
  readonly ttlSeconds: number;
}

interface RawEntry {
  Node?: { Address?: unknown };
  Service?: { ID?: unknown; Address?: unknown; Port?: unknown; Meta?: Record<string, unknown> | null };
  Checks?: { Status?: unknown }[] | null;
}

/** What the agent tells about one instance id of a service: who registered it, where, and whether it passes. */
interface Holder {
  /** The instance id it registers. */
  id: string;
  serviceId: string;
  owner: string;
  passing: boolean;
  /** `host:port` it was registered with. */
  address: string;
}

/** What a registration writes: the instance and its TTL. */
export interface ConsulRegistrationValue {
  readonly instance: ServiceInstance;
}

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * Consul registrations as liveness primitives (`key` scope: each registration is an agent service
 * with its own TTL check, which a renewal passes). Owner: every service this client registers
 * carries `Meta.rollcall_owner` = the client's id, so that a registration never overwrites or
 * deregisters the same id held by another live client (a conflict instead).
 */
export class ConsulRegistrationSessions implements SessionDriver<CheckSession, ConsulRegistrationValue> {
  readonly backend = 'consul';
  readonly scope = 'key' as const;
  private listing: ReturnType<ConsulApi['agentServices']> | undefined;

  constructor(
    private readonly api: ConsulApi,
    private readonly options: { clientId: string; deregisterCriticalAfter: string },
  ) {}

  ownerOf(): string {
    return this.options.clientId;
  }

  async grant(ttlSeconds: number, _signal: AbortSignal, key?: string): Promise<CheckSession> {
    const serviceId = key ?? '';
    const service = serviceId.slice(0, serviceId.indexOf(':'));
    return { serviceId, service, checkId: `service:${serviceId}`, ttlSeconds };
  }

  /** Passes the TTL check: `false` when the agent no longer knows it (agent restarted: state lost). */
  async renew(session: CheckSession, signal: AbortSignal): Promise<boolean> {
    try {
      await this.api.passCheck(session.checkId, signal);
      return true;
    } catch (error) {
      if (isUnknownCheck(error)) return false;
      throw error;
    }
  }

  async revoke(session: CheckSession): Promise<void> {
    await this.deregister(session.serviceId);
  }

  /**
   * Registers the instance (its check passing from the start) unless another live client holds
   * its id, and resolves once a fresh `?passing` read shows it.
   */
  async put(
    session: CheckSession,
    writes: readonly SessionWrite<ConsulRegistrationValue>[],
    ours: ReadonlySet<string>,
  ): Promise<PutOutcome[]> {
    return Promise.all(writes.map((w) => this.putOne(session, w.value.instance, ours)));
  }

  private async putOne(
    session: CheckSession,
    instance: ServiceInstance,
    ours: ReadonlySet<string>,
  ): Promise<PutOutcome> {
    const holders = await this.holders(instance.service, [instance.id]);
    // Another live client holds the id, at another address: a conflict. At the same address it can only be
    // this process's previous incarnation (one address is served by one process): taken over.
    const address = `${instance.host}:${instance.port}`;
    if (
      (holders.get(instance.id) ?? []).some((h) => !ours.has(h.owner) && h.passing && h.address !== address)
    )
      return 'conflict';
    await this.api.registerService(
      registrationBody(
        instance,
        session.ttlSeconds,
        this.options.deregisterCriticalAfter,
        this.options.clientId,
      ),
    );
    await this.confirmVisible(session, instance);
    return 'written';
  }

  /**
   * Waits until `GET /v1/health/service/<name>?passing` shows the instance. Re-registering over a
   * service whose check is critical keeps the check critical (Consul keeps an existing check's
   * status), so an instance that does not show up gets its check passed.
   *
   * The deadline counts from the first answer, and at least {@link VISIBLE_MIN_READS} answers are
   * seen before giving up: time spent queued behind the client's own connection pool (thousands of
   * heartbeats of a large registration burst) is not the agent failing to show it, and failing here
   * would register it again and add to the queue.
   */
  private async confirmVisible(session: CheckSession, instance: ServiceInstance): Promise<void> {
    const filter = `Service.ID == "${session.serviceId}"`;
    let deadline = Number.POSITIVE_INFINITY;
    for (let round = 0; ; round++) {
      const answer = await this.api.healthService(instance.service, { filter, local: true });
      if (answer.data.some((e) => decodeHealthEntry(e, instance.service)?.id === instance.id)) return;
      if (round === 0) deadline = performance.now() + VISIBLE_DEADLINE_MS;
      else if (round + 1 >= VISIBLE_MIN_READS && performance.now() >= deadline) {
        throw new BackendUnavailableError(
          'consul',
          `register ${instance.service}/${instance.id}: the agent accepted it but /v1/health/service does not show it passing after ${VISIBLE_DEADLINE_MS} ms`,
        );
      }
      if (round === 0) await this.api.passCheck(session.checkId);
      await sleep(Math.min(50 * 2 ** round, 500));
    }
  }

  /** Deregisters those services that this client registered (never one another client holds). */
  async remove(_session: CheckSession, keys: readonly string[]): Promise<void> {
    const local = await this.localServices();
    await Promise.all(
      keys.map(async (serviceId) => {
        const found = local[serviceId];
        if (!found) return;
        if ((found.Meta?.[META_OWNER] ?? '') !== this.options.clientId) return;
        await this.deregister(serviceId);
      }),
    );
  }

  /**
   * The agent's services, read once for every deregistration of the same moment (each registration
   * is its own session, so a `close()` of 1,000 deregisters 1,000 at once: one listing, not 1,000).
   */
  private localServices(): ReturnType<ConsulApi['agentServices']> {
    this.listing ??= this.api.agentServices().finally(() => {
      this.listing = undefined;
    });
    return this.listing;
  }

  /** One health read per service: whose is each id, and does it pass. */
  async inspect(refs: readonly ClaimRef<CheckSession>[], ours: ReadonlySet<string>): Promise<Ownership[]> {
    const idOf = (session: CheckSession) => session.serviceId.slice(session.service.length + 1);
    const answers = new Map<string, Map<string, Holder[]>>();
    for (const [service, group] of groupBy(refs, (r) => r.session.service)) {
      const ids = group.map((r) => idOf(r.session));
      answers.set(service, await this.holders(service, ids));
    }
    return refs.map(({ session }) => {
      const id = idOf(session);
      const holders = answers.get(session.service)?.get(id) ?? [];
      if (holders.some((h) => h.serviceId === session.serviceId && ours.has(h.owner))) return 'current';
      return holders.some((h) => !ours.has(h.owner) && h.passing) ? 'foreign' : 'absent';
    });
  }

  /**
   * Every registration of `ids` of `service` on every node, with its owner and whether all its
   * checks pass. One id is looked up with a server-side filter (a service of 10,000 instances is
   * not listed for each registration); several are read in one listing.
   */
  private async holders(service: string, ids: readonly string[]): Promise<Map<string, Holder[]>> {
    const wanted = new Set(ids);
    // Ids are [A-Za-z0-9._-] (validated): nothing to escape in the filter.
    const filter =
      ids.length === 1 ? `Service.Meta.${META_ID} == "${ids[0]}" or Service.ID == "${ids[0]}"` : undefined;
    const answer = await this.api.healthService(service, { passing: false, ...(filter ? { filter } : {}) });
    const found: Holder[] = [];
    for (const raw of answer.data as RawEntry[]) {
      const meta = raw.Service?.Meta ?? {};
      const id =
        typeof meta[META_ID] === 'string' ? (meta[META_ID] as string) : String(raw.Service?.ID ?? '');
      if (!wanted.has(id)) continue;
      const host = raw.Service?.Address || raw.Node?.Address;
      found.push({
        id,
        serviceId: String(raw.Service?.ID ?? ''),
        owner: typeof meta[META_OWNER] === 'string' ? (meta[META_OWNER] as string) : '',
        passing: (raw.Checks ?? []).every((c) => c.Status === 'passing'),
        address: `${String(host)}:${String(raw.Service?.Port)}`,
      });
    }
    return groupBy(found, (h) => h.id);
  }

  private async deregister(serviceId: string): Promise<void> {
    try {
      await this.api.deregisterService(serviceId);
    } catch (error) {
      if (isUnknownService(error)) return;
      throw new BackendUnavailableError(
        'consul',
        `deregister ${serviceId}: ${message(error).replace(/^consul: /, '')}`,
      );
    }
  }
}
