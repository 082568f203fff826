import { hostname } from 'node:os';
import { type ClaimRef, type Ownership, type PutOutcome, type SessionDriver } from '@rollcall/core/driver';
import type { ConsulApi, TxnOp } from './api.js';

/**
 * Consul sessions as liveness primitives for locks (`client` scope: one session per client per
 * ttl holds every lock, election and queue key of the client). Sessions are created with
 * `Behavior: delete`, so the keys a session holds are deleted when it dies, and with the
 * configured `LockDelay`. A renewal is `PUT /v1/session/renew`; Consul may keep a session up to
 * 2 x its TTL after the last renewal, but the engine counts only one TTL.
 */
export class ConsulLockSessions implements SessionDriver<string, never> {
  readonly backend = 'consul';
  readonly scope = 'client' as const;

  constructor(
    private readonly api: ConsulApi,
    private readonly options: { lockDelay: string },
  ) {}

  ownerOf(session: string): string {
    return session;
  }

  grant(ttlSeconds: number): Promise<string> {
    return this.api.createSession({
      Name: `rollcall locks (${hostname()} pid ${process.pid})`,
      TTL: `${ttlSeconds}s`,
      Behavior: 'delete',
      LockDelay: this.options.lockDelay,
    });
  }

  renew(session: string, signal: AbortSignal): Promise<boolean> {
    return this.api.renewSession(session, signal);
  }

  revoke(session: string): Promise<void> {
    return this.api.destroySession(session);
  }

  /** Lock keys are written by the lock protocol's own transactions, never through here. */
  async put(): Promise<PutOutcome[]> {
    throw new TypeError('consul lock sessions hold keys written by the lock driver');
  }

  /** Deletes the keys `session` still holds, in one transaction when all are (else one each). */
  async remove(session: string, keys: readonly string[]): Promise<void> {
    const held = (key: string): TxnOp[] => [
      { KV: { Verb: 'check-session', Key: key, Session: session } },
      { KV: { Verb: 'delete', Key: key } },
    ];
    const all = await this.api.txn('release lock keys', keys.flatMap(held));
    if (all.ok || keys.length === 1) return;
    await Promise.all(keys.map((key) => this.api.txn('release a lock key', held(key))));
  }

  /** Whether each key is still held by its session. */
  async inspect(refs: readonly ClaimRef<string>[]): Promise<Ownership[]> {
    return Promise.all(
      refs.map(async ({ session, key }) => {
        const item = await this.api.kvRead(key);
        if (!item?.Session) return 'absent';
        return item.Session === session ? 'current' : 'foreign';
      }),
    );
  }
}
