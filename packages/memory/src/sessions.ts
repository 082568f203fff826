import type { ServiceInstance } from '@rollcall/core';
import type { ClaimRef, Ownership, PutOutcome, SessionDriver, SessionWrite } from '@rollcall/core/driver';
import type { MemoryStore, StoreClient } from './store.js';

/** The memory store's sessions as liveness primitives (one client's view). */
export class MemorySessionDriver implements SessionDriver<string, ServiceInstance> {
  readonly backend = 'memory';
  readonly scope = 'client' as const;

  constructor(
    private readonly store: MemoryStore,
    private readonly client: StoreClient,
  ) {}

  ownerOf(session: string): string {
    return session;
  }

  async grant(ttlSeconds: number): Promise<string> {
    return this.store.grantSession(this.client, ttlSeconds * 1000);
  }

  async renew(session: string): Promise<boolean> {
    return this.store.renewSession(this.client, session);
  }

  async revoke(session: string): Promise<void> {
    this.store.revokeSession(this.client, session);
  }

  async put(
    session: string,
    writes: readonly SessionWrite<ServiceInstance>[],
    ours: ReadonlySet<string>,
  ): Promise<PutOutcome[]> {
    return this.store.putInstances(this.client, session, writes, ours);
  }

  async remove(session: string, keys: readonly string[]): Promise<void> {
    this.store.removeKeys(this.client, session, keys);
  }

  async inspect(refs: readonly ClaimRef<string>[], ours: ReadonlySet<string>): Promise<Ownership[]> {
    return this.store.inspect(this.client, refs, ours);
  }
}
