import { AbortedError, type LockInfo, type ServiceInstance, SessionGoneError } from '@rollcall/core';
import {
  type HeldLock,
  type LivenessEngine,
  type LockDriver,
  linkSignals,
  throwIfAborted,
} from '@rollcall/core/driver';
import { waitForLock } from './locks.js';
import type { MemoryStore, StoreClient } from './store.js';

const noop = () => {};

/**
 * The memory backend's locks: a FIFO queue per name in the store, held under the client's
 * session (the liveness engine keeps it; a lost session loses its locks and re-queues its waits).
 */
export class MemoryLockDriver implements LockDriver {
  readonly backend = 'memory';
  readonly minTtlSeconds = 2;

  constructor(
    private readonly store: MemoryStore,
    private readonly client: StoreClient,
    private readonly engine: LivenessEngine<string, ServiceInstance>,
  ) {}

  acquire(name: string, ttlSeconds: number, signal: AbortSignal, queued: () => void): Promise<HeldLock> {
    return this.wait(`lock/${name}`, undefined, ttlSeconds, signal, queued);
  }

  async tryAcquire(name: string, ttlSeconds: number): Promise<HeldLock | undefined> {
    const key = `lock/${name}`;
    const session = await this.engine.session(ttlSeconds);
    this.store.check(this.client);
    if (!this.store.locks.isFree(key)) return undefined;
    // Free: the queue grants it at once (synchronously), nobody can come in between.
    const token = await waitForLock(this.store.locks, key, session.value, undefined, session.lost, noop);
    const held = this.engine.attach(session, key);
    if (held.lost.aborted) return undefined;
    return { fencingToken: token, lost: held.lost, release: () => held.release() };
  }

  campaign(election: string, value: string, ttlSeconds: number, signal: AbortSignal): Promise<HeldLock> {
    return this.wait(`election/${election}`, value, ttlSeconds, signal, noop);
  }

  async leader(election: string): Promise<string | undefined> {
    this.store.check(this.client);
    return this.store.locks.holderValue(`election/${election}`);
  }

  async list(): Promise<LockInfo[]> {
    this.store.check(this.client);
    return this.store.locks.entries().map(({ name, session, value, token, waiters }) => {
      const election = name.startsWith('election/');
      const holder = election ? value : session;
      return {
        kind: election ? 'election' : 'lock',
        name: name.slice(name.indexOf('/') + 1),
        ...(holder !== undefined ? { holder } : {}),
        ...(token !== undefined ? { token } : {}),
        waiters,
      };
    });
  }

  /** Queues under the current session until granted; a session lost while queued queues again under a new one. */
  private async wait(
    key: string,
    value: string | undefined,
    ttlSeconds: number,
    signal: AbortSignal,
    queued: () => void,
  ): Promise<HeldLock> {
    let announced = false;
    const announce = () => {
      if (announced) return;
      announced = true;
      queued();
    };
    for (;;) {
      throwIfAborted(signal);
      const session = await this.engine.session(ttlSeconds, signal);
      this.store.check(this.client);
      const linked = linkSignals(signal, session.lost);
      let token: bigint;
      try {
        token = await waitForLock(this.store.locks, key, session.value, value, linked.signal, announce);
      } catch (error) {
        if (signal.aborted) throw new AbortedError(signal.reason);
        if (session.lost.aborted || error instanceof SessionGoneError) continue;
        throw error;
      } finally {
        linked.dispose();
      }
      const held = this.engine.attach(session, key);
      // Lost between the grant and now: the engine has removed the key; queue again.
      if (held.lost.aborted) continue;
      return { fencingToken: token, lost: held.lost, release: () => held.release() };
    }
  }
}
