import { unboundedController } from '../signals.js';
import type { RegisteredKey } from './claims.js';
import type { TimerHandle } from './clock.js';
import type { PutOutcome } from './driver.js';

/**
 * Where a session stands:
 * - `alive`: the last renewal was acknowledged; the server keeps it until `confirmedUntil`;
 * - `unconfirmed`: a renewal failed or went unanswered, but `confirmedUntil` has not passed yet;
 * - `lost`: the server said it is gone, or `confirmedUntil` passed without a renewal getting
 *   through (the server may have expired it and handed its locks to others);
 * - `ended`: revoked by this client (close, idle) or abandoned (simulated crash).
 */
export type SessionState = 'alive' | 'unconfirmed' | 'lost' | 'ended';

/** What a lock driver sees of a session it writes keys on. */
export interface SessionHandle<S> {
  /** The driver's session (lease id, session id). */
  readonly value: S;
  /** Its owner id as the driver reports owners. */
  readonly owner: string;
  readonly ttlSeconds: number;
  readonly state: SessionState;
  /** Aborts (with the reason) when the session is lost or ended. */
  readonly lost: AbortSignal;
}

/** A group-committed write waiting for its session's next `put`. */
export interface PendingPut {
  /**
   * The registration written: not sent if released while the write waited its turn; once sent,
   * the session is in its `sentOn` (the key may be on it from then on).
   */
  readonly claim: RegisteredKey<unknown, unknown>;
  resolve(outcome: PutOutcome): void;
  reject(error: unknown): void;
}

/** A group-committed delete waiting for its session's next `remove`. */
export interface PendingRemove {
  readonly key: string;
  resolve(): void;
  reject(error: unknown): void;
}

/** One granted session, as the engine tracks it (its timers, its keys, its queued writes). */
export class LiveSession<S> implements SessionHandle<S> {
  state: SessionState = 'alive';
  /** Monotonic ms until which the server is known to keep the session: the last acknowledged renewal's start + ttl. */
  confirmedUntil: number;
  /** Registrations written on it (re-put elsewhere when it is lost). */
  readonly registrations = new Set<{ key: string }>();
  /** Keys that must go when it is lost (locks, queue entries). */
  readonly held = new Set<{ key: string }>();
  /** Aborted when the session ends; every held key and wait on it listens (no listener cap). */
  readonly controller = unboundedController();
  renewTimer: TimerHandle | undefined;
  expiryTimer: TimerHandle | undefined;
  idleTimer: TimerHandle | undefined;
  renewing = false;
  /** Renewals that failed in a row. */
  failures = 0;
  pendingPuts: PendingPut[] = [];
  pendingRemoves: PendingRemove[] = [];

  constructor(
    readonly value: S,
    readonly owner: string,
    readonly ttlSeconds: number,
    /** When the grant was asked for (monotonic ms): the server keeps the session at least a ttl after. */
    grantedAt: number,
  ) {
    this.confirmedUntil = grantedAt + ttlSeconds * 1000;
  }

  get lost(): AbortSignal {
    return this.controller.signal;
  }

  /** Still worth writing on: not lost, not ended. */
  get usable(): boolean {
    return this.state === 'alive' || this.state === 'unconfirmed';
  }

  /** Holds no key. */
  get idle(): boolean {
    return this.registrations.size === 0 && this.held.size === 0;
  }
}
