import {
  AbortedError,
  abortable,
  BackendUnavailableError,
  ClosedError,
  type Registration,
  type RegistrationControl,
  retryForever,
} from '@rollcall/core';
import { EtcdLeaseInvalidError, type Lease } from 'etcd3';
import type { CallOptions, EtcdConnection } from './connection.js';

/** etcd's default `--max-txn-ops`: the most operations one transaction may hold. */
const MAX_TXN_OPS = 128;
/** Bytes of keys and values per transaction: well under etcd's default `--max-request-bytes` (1.5 MiB). */
const MAX_TXN_BYTES = 1024 * 1024;

/** Splits operations into transactions etcd accepts: at most 128 operations and ~1 MiB each. */
function chunked<T>(items: readonly T[], size: (item: T) => number): T[][] {
  const chunks: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const n = size(item) + 32;
    if (current.length > 0 && (current.length >= MAX_TXN_OPS || bytes + n > MAX_TXN_BYTES)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += n;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

interface Pending {
  control: RegistrationControl;
  key: string;
  value: string;
  deadline: number;
  resolve: () => void;
  reject: (error: Error) => void;
}

/** Counters a {@link LeaseKeeper} keeps, for tests, benchmarks and health. */
export interface LeaseStats {
  /** Leases granted over the keeper's life (1 unless etcd dropped one). */
  granted: number;
  /** Keepalive requests sent on the keepalive stream. */
  keepalives: number;
  /** Keepalive acknowledgements received (the lease is confirmed alive). */
  keepaliveAcks: number;
  /** Times etcd dropped the lease and every registration on it was re-put. */
  losses: number;
}

/**
 * True once the registration was deregistered. Reads the handle's `state` when it has one (core's
 * registrations do) rather than `signal`: an AbortSignal is created lazily and costs ~0.8 KB and a
 * few microseconds, on the hot path of every registration.
 */
function isDeregistered(control: RegistrationControl): boolean {
  const state = (control as Partial<Registration>).state;
  return state !== undefined ? state === 'closed' : control.signal.aborted;
}

/** Thrown inside a recovery attempt whose fresh lease was lost before it finished. */
class LeaseLostDuringRecovery extends Error {}

/**
 * One etcd lease shared by every registration of one client with one TTL, kept alive by etcd3's
 * single keepalive stream.
 *
 * Registrations are written in batches (group commit): every `register` waiting when a write
 * starts goes into the same transactions, so 10,000 registrations cost tens of round trips, not
 * 10,000. Writes, re-registration attempts and deletions run one at a time (a small mutex), so a
 * recovery can never re-put an instance that was just deregistered.
 *
 * When etcd drops the lease (etcd3 `lost`: expired while unreachable, or revoked), every live
 * registration gets `lost`, then a new lease is granted and every registration re-put on it, with
 * capped backoff and no retry limit, then each gets `restored`.
 */
export class LeaseKeeper {
  readonly stats: LeaseStats = { granted: 0, keepalives: 0, keepaliveAcks: 0, losses: 0 };
  /** Live registrations and their etcd keys. */
  private readonly registrations = new Map<RegistrationControl, { key: string; value: string }>();
  private lease: Lease | undefined;
  private pending: Pending[] = [];
  private flushQueued = false;
  private pendingDeletes: { key: string; resolve: () => void; reject: (error: Error) => void }[] = [];
  private deleteQueued = false;
  /** The mutex: true while an exclusive operation runs; waiters queue here. */
  private busy = false;
  private readonly waiters: (() => void)[] = [];
  /** The current lease's id, once granted. */
  private leaseIdValue: string | undefined;
  /** Registrations whose write failed: their undo is handled by fail(). */
  private readonly failed = new WeakSet<RegistrationControl>();
  private recovering = false;
  private lostAgain = false;
  private closed = false;
  /** Of the current lease: until when (`performance.now()` ms) etcd is known to keep it alive. */
  private confirmation: { until: number } = { until: 0 };
  /** Told when a lease ends (lost, revoked or abandoned): keys that must not outlive it (locks) stop here. */
  private readonly lossListeners = new Set<(leaseId: string, error: Error) => void>();

  constructor(
    private readonly conn: EtcdConnection,
    readonly ttlSeconds: number,
  ) {}

  /** Number of live registrations on this keeper. */
  get size(): number {
    return this.registrations.size;
  }

  /** True while a granted lease is held. */
  get hasLease(): boolean {
    return this.lease !== undefined;
  }

  /**
   * The id of the shared lease, granting one when there is none (one grant at a time, never two
   * leases side by side). For keys that live and die with the lease but are not re-put when it is
   * lost (locks). Rejects once `deadline` passes (the grant may still complete and be used later).
   */
  async leaseId(deadline: number): Promise<string> {
    const lease = this.lease;
    if (lease && !lease.revoked() && this.leaseIdValue !== undefined) return this.leaseIdValue;
    if (this.closed) throw new ClosedError('etcd backend');
    const timeout = AbortSignal.timeout(Math.max(1, deadline - Date.now()));
    try {
      return await abortable(
        this.exclusive(async () => {
          await this.currentLease({ deadline });
          return this.leaseIdValue as string;
        }),
        timeout,
      );
    } catch (error) {
      if (error instanceof AbortedError && timeout.aborted)
        throw new BackendUnavailableError('etcd', 'lease grant: deadline exceeded');
      throw error;
    }
  }

  /**
   * Calls `listener` with the id of every lease of this keeper that ends: lost (expired while
   * unreachable, revoked by someone else, no keepalive acknowledged for 2 x TTL), revoked by
   * `close()`, or abandoned by a simulated crash. Returns an unsubscribe function.
   */
  onLeaseEnd(listener: (leaseId: string, error: Error) => void): () => void {
    this.lossListeners.add(listener);
    return () => this.lossListeners.delete(listener);
  }

  /**
   * Until when (a `performance.now()` time, in ms) lease `leaseId` is known to live on the server:
   * the send time of the last acknowledged keepalive (or of the grant) plus the TTL. etcd may expire
   * the lease, and hand its locks to others, any time after that if no later keepalive got through;
   * etcd3 itself reports `lost` only after 2 x TTL without an acknowledgement. 0 when `leaseId` is
   * not the current lease.
   */
  confirmedUntil(leaseId: string): number {
    return this.lease && this.leaseIdValue === leaseId ? this.confirmation.until : 0;
  }

  /** etcd said lease `leaseId` does not exist (a put with it failed): treat it as lost now. */
  leaseInvalid(leaseId: string, error: unknown): void {
    if (this.lease && this.leaseIdValue === leaseId) this.onLost(this.lease, error);
  }

  private notifyEnd(leaseId: string | undefined, error: Error): void {
    if (leaseId === undefined) return;
    for (const listener of [...this.lossListeners]) {
      try {
        listener(leaseId, error);
      } catch (e) {
        this.conn.options.logger.error('etcd lease listener threw', {
          error: e instanceof Error ? e.message : String(e),
        });
      }
    }
  }

  /** Puts the instance with the shared lease. Resolves once written (etcd reads are linearizable: every client sees it). */
  register(control: RegistrationControl, key: string, value: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.pending.push({
        control,
        key,
        value,
        deadline: Date.now() + this.conn.options.callTimeoutMs,
        resolve,
        reject,
      });
      if (!this.flushQueued) {
        this.flushQueued = true;
        void this.exclusive(() => this.flush());
      }
    });
  }

  /**
   * Deletes the instance now. Deletions waiting together go out in shared transactions, after any
   * write or recovery attempt in progress, so a deregistered instance is never re-put afterwards.
   * When etcd cannot be reached it rejects, and the deletion is retried in the background until it
   * succeeds (the key must not live on with the client's lease).
   */
  deregister(control: RegistrationControl, key: string): Promise<void> {
    this.registrations.delete(control);
    // A registration that failed is already removed (or being removed in the background).
    if (this.failed.delete(control) || this.conn.crashed) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.pendingDeletes.push({ key, resolve, reject });
      if (!this.deleteQueued) {
        this.deleteQueued = true;
        void this.exclusive(() => this.flushDeletes());
      }
    });
  }

  /** Revokes the lease (removing whatever is still attached) and stops its keepalive. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.pending.splice(0)) p.reject(new AbortedError('closed'));
    const lease = this.lease;
    this.lease = undefined;
    if (!lease) return;
    this.notifyEnd(this.leaseIdValue, new ClosedError('etcd backend'));
    try {
      await lease.revoke({ deadline: Date.now() + this.conn.options.callTimeoutMs });
    } catch (error) {
      this.conn.options.logger.warn('etcd lease revoke failed; it expires by its TTL', {
        ttlSeconds: this.ttlSeconds,
        error: this.conn.redact(error instanceof Error ? error.message : String(error)),
      });
    } finally {
      lease.release();
    }
  }

  /** Stops the keepalive without revoking: the lease, and every key on it, expires by its TTL (a simulated crash). */
  abandon(): void {
    this.closed = true;
    const lease = this.lease;
    this.lease = undefined;
    if (!lease) return;
    lease.release();
    this.notifyEnd(this.leaseIdValue, new ClosedError('etcd backend'));
  }

  /** Runs `fn` after every earlier exclusive operation has settled; at once (same tick) when none runs. */
  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    if (this.busy) await new Promise<void>((resolve) => this.waiters.push(resolve));
    else this.busy = true;
    try {
      return await fn();
    } finally {
      const next = this.waiters.shift();
      if (next) next();
      else this.busy = false;
    }
  }

  private async flush(): Promise<void> {
    this.flushQueued = false;
    const now = Date.now();
    const batch: Pending[] = [];
    for (const p of this.pending.splice(0)) {
      if (isDeregistered(p.control)) this.fail(p, new AbortedError('deregistered'), false);
      else if (now >= p.deadline)
        this.fail(
          p,
          new BackendUnavailableError('etcd', 'register: timed out waiting for an earlier write'),
          false,
        );
      else batch.push(p);
    }
    if (batch.length === 0) return;
    const deadline = Math.min(...batch.map((p) => p.deadline));
    try {
      await this.conn.call(
        'register',
        async (o) => {
          const current = this.lease;
          await this.putAll(current && !current.revoked() ? current : await this.currentLease(o), batch, o);
        },
        deadline - Date.now(),
      );
    } catch (error) {
      const mapped = this.conn.error(error, 'register');
      for (const p of batch) this.fail(p, mapped, true);
      return;
    }
    for (const p of batch) {
      if (!isDeregistered(p.control)) this.registrations.set(p.control, { key: p.key, value: p.value });
      p.resolve();
    }
  }

  /**
   * Rejects a registration. When its write may have reached etcd (a timeout can hide a success),
   * the key is removed in the background, retried until it works, so no instance stays behind on
   * our live lease; the undo that core then asks for (`deregister`) returns at once instead of
   * waiting another call timeout.
   */
  private fail(p: Pending, error: Error, maybeWritten: boolean): void {
    this.failed.add(p.control);
    p.reject(error);
    if (maybeWritten) this.removeInBackground(p.key);
  }

  private removeInBackground(key: string): void {
    this.conn.retryInBackground(
      'removing a failed registration',
      () =>
        this.exclusive(async () => {
          // Registered again (successfully) meanwhile: the key is legitimately ours now.
          for (const r of this.registrations.values()) if (r.key === key) return;
          await this.conn.call('remove a failed registration', (o) =>
            this.conn.client.delete().key(key).options(o).exec(),
          );
        }),
      { key },
    );
  }

  private async flushDeletes(): Promise<void> {
    this.deleteQueued = false;
    const batch = this.pendingDeletes.splice(0);
    if (batch.length === 0) return;
    const client = this.conn.client;
    try {
      await this.conn.call('deregister', async (o) => {
        if (batch.length === 1) {
          await client.delete().key(batch[0]!.key).options(o).exec();
          return;
        }
        // etcd refuses a transaction naming one key twice.
        const keys = [...new Set(batch.map((d) => d.key))];
        const chunks = chunked(keys, (k) => k.length);
        await Promise.all(
          chunks.map((chunk) =>
            client
              .if(chunk[0]!, 'Create', '>', -1)
              .then(...chunk.map((k) => client.delete().key(k)))
              .options(o)
              .commit(),
          ),
        );
      });
    } catch (error) {
      const mapped = this.conn.error(error, 'deregister');
      for (const d of batch) {
        d.reject(mapped);
        // The key would otherwise live on with our lease: keep removing it until etcd answers.
        this.removeInBackground(d.key);
      }
      return;
    }
    for (const d of batch) d.resolve();
  }

  /** The granted lease, granting one if there is none. */
  private async currentLease(o: CallOptions): Promise<Lease> {
    if (this.lease && !this.lease.revoked()) return this.lease;
    this.conn.assertOpen();
    const ttlMs = this.ttlSeconds * 1000;
    // etcd renews a lease for a full TTL from when it receives a keepalive (or the grant), so it lives at
    // least until (when the acknowledged request was sent) + TTL. Send times are taken when etcd3 fires a
    // request (just before it is written) and matched to acknowledgements in order, per keepalive stream.
    const confirmation = { until: performance.now() + ttlMs, sent: [] as number[] };
    const lease = this.conn.client.lease(this.ttlSeconds, { deadline: o.deadline });
    lease.on('lost', (error) => this.onLost(lease, error));
    lease.on('keepaliveEstablished', () => {
      confirmation.sent = [];
    });
    lease.on('keepaliveFired', () => {
      this.stats.keepalives += 1;
      confirmation.sent.push(performance.now());
    });
    lease.on('keepaliveSucceeded', () => {
      this.stats.keepaliveAcks += 1;
      const sent = confirmation.sent.shift();
      if (sent !== undefined) confirmation.until = Math.max(confirmation.until, sent + ttlMs);
    });
    lease.on('keepaliveFailed', (error: unknown) => {
      // Answers to requests on the failed stream will not come.
      confirmation.sent = [];
      // etcd3 types this as a response; it is an Error.
      this.conn.options.logger.debug('etcd lease keepalive failed; retrying', {
        error: this.conn.redact(error instanceof Error ? error.message : String(error)),
      });
    });
    let id: string;
    try {
      id = await lease.grant();
    } catch (error) {
      lease.release();
      throw error;
    }
    this.stats.granted += 1;
    if (this.closed) {
      await lease.revoke().catch(() => {});
      throw new AbortedError('closed');
    }
    this.leaseIdValue = id;
    this.lease = lease;
    this.confirmation = confirmation;
    return lease;
  }

  /** Writes entries on `lease`: one put for a single entry, else transactions of up to 128 puts and ~1 MiB. */
  private async putAll(
    lease: Lease,
    entries: readonly { key: string; value: string }[],
    o: CallOptions,
  ): Promise<void> {
    const id =
      lease === this.lease && this.leaseIdValue !== undefined ? this.leaseIdValue : await lease.grant();
    const client = this.conn.client;
    try {
      if (entries.length === 1) {
        const [entry] = entries as [{ key: string; value: string }];
        await client.put(entry.key).value(entry.value).lease(id).options(o).exec();
        return;
      }
      const chunks = chunked(entries, (e) => e.key.length + Buffer.byteLength(e.value));
      await Promise.all(
        chunks.map((chunk) =>
          client
            // A comparison that always holds (every create revision is >= 0): etcd3 builds transactions from a comparison.
            .if(chunk[0]!.key, 'Create', '>', -1)
            .then(...chunk.map((e) => client.put(e.key).value(e.value).lease(id)))
            .options(o)
            .commit(),
        ),
      );
    } catch (error) {
      if (
        error instanceof EtcdLeaseInvalidError ||
        (error instanceof Error && error.message.includes('requested lease not found'))
      ) {
        // Our lease is gone (expired while unreachable): drop it so the next attempt grants a new one.
        this.onLost(lease, error);
      }
      throw error;
    }
  }

  private onLost(lease: Lease, error: unknown): void {
    if (lease !== this.lease) return;
    this.lease = undefined;
    lease.release();
    const raw = error instanceof Error ? error.message : String(error);
    // etcd3 reports a local timeout (no keepalive acknowledged for 2 x TTL) with an odd message; say what happened.
    const why = raw.includes('We lost connection')
      ? `no keepalive acknowledged for ${2 * this.ttlSeconds} s`
      : raw;
    const mapped = this.conn.error(new Error(why), `lease (ttl ${this.ttlSeconds} s) expired or revoked`);
    this.notifyEnd(this.leaseIdValue, mapped);
    if (this.closed || this.registrations.size === 0) return;
    this.stats.losses += 1;
    this.conn.options.logger.warn('etcd lease lost; re-registering every instance on a new lease', {
      ttlSeconds: this.ttlSeconds,
      registrations: this.registrations.size,
      error: mapped.message,
    });
    for (const control of this.registrations.keys()) control.lost(mapped);
    this.lostAgain = true;
    if (!this.recovering) void this.recover();
  }

  /** Grants a new lease and re-puts every live registration, until it works or the client closes. */
  private async recover(): Promise<void> {
    this.recovering = true;
    try {
      while (this.lostAgain) {
        this.lostAgain = false;
        await retryForever(() => this.exclusive(() => this.restoreAttempt()), {
          backoff: this.conn.backoff(),
          signal: this.conn.signal,
          onError: (error, attempt, delayMs) =>
            this.conn.options.logger.warn('etcd re-registration failed; retrying', {
              attempt,
              delayMs: Math.round(delayMs),
              error: this.conn.redact(error instanceof Error ? error.message : String(error)),
            }),
        });
      }
    } catch {
      return; // closed
    } finally {
      this.recovering = false;
    }
    this.conn.options.logger.info('etcd registrations restored', { registrations: this.registrations.size });
    for (const control of this.registrations.keys()) control.restored();
  }

  private async restoreAttempt(): Promise<void> {
    if (this.closed || this.registrations.size === 0) return;
    await this.conn.call('re-register', async (o) => {
      const lease = await this.currentLease(o);
      await this.putAll(lease, [...this.registrations.values()], o);
      if (lease !== this.lease)
        throw new LeaseLostDuringRecovery('the new lease was lost while re-registering');
    });
  }
}
