import { describe, expect, it } from 'vitest';
import {
  type ClaimRef,
  LivenessEngine,
  type Ownership,
  type PutOutcome,
  type SessionDriver,
  type SessionWrite,
} from '../src/driver.js';
import { FakeTimers } from './fake-timers.js';

// A `key` scope backend (Consul: each registration is a service whose TTL check is its session)
// that answers one write at a time, slowly: a burst of registrations queues far longer than their
// ttl. Found with 10,000 registrations on one Consul agent: sessions were renewed from their grant,
// before their key existed, so every registration still queued was lost and granted again, over
// and over; and a write's session was counted renewed from when it queued.

const TTL = 3;
const WRITE_MS = 50;

/** One server: a key exists once written; its session lives a ttl past its write or last renewal. */
class SlowKeyServer implements SessionDriver<string, string> {
  readonly backend = 'fake';
  readonly scope = 'key' as const;
  /** Key -> when it expires (fake ms). */
  readonly keys = new Map<string, number>();
  /** Renewals of a key not (yet) on the server. */
  renewalsOfMissing = 0;
  inFlight = 0;
  maxInFlight = 0;
  writesSent = 0;
  private busyUntil = 0;
  /** While set, writes reach the server but are answered only when `answer()` runs. */
  held: (() => void)[] | undefined;
  constructor(private readonly timers: FakeTimers) {}
  ownerOf(): string {
    return 'us';
  }
  async grant(_ttl: number, _signal: AbortSignal, key?: string): Promise<string> {
    return key ?? '';
  }
  async renew(key: string): Promise<boolean> {
    const until = this.keys.get(key);
    if (until === undefined || until < this.timers.now()) {
      this.renewalsOfMissing += 1;
      return false;
    }
    this.keys.set(key, this.timers.now() + TTL * 1000);
    return true;
  }
  async revoke(key: string): Promise<void> {
    this.keys.delete(key);
  }
  /** Writes are answered one after another, WRITE_MS each. */
  put(key: string, writes: readonly SessionWrite<string>[]): Promise<PutOutcome[]> {
    this.writesSent += 1;
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.busyUntil = Math.max(this.busyUntil, this.timers.now()) + WRITE_MS;
    return new Promise((resolve) => {
      const land = () => {
        this.inFlight -= 1;
        this.keys.set(key, this.timers.now() + TTL * 1000);
        resolve(writes.map(() => 'written'));
      };
      this.timers.setTimeout(() => {
        if (this.held) this.held.push(land);
        else land();
      }, this.busyUntil - this.timers.now());
    });
  }
  /** Answers every held write (they land now) and stops holding. */
  answer(): void {
    const held = this.held ?? [];
    this.held = undefined;
    for (const land of held) land();
  }
  async remove(_key: string, keys: readonly string[]): Promise<void> {
    for (const k of keys) this.keys.delete(k);
  }
  async inspect(refs: readonly ClaimRef<string>[]): Promise<Ownership[]> {
    return refs.map(({ key }) => (this.keys.has(key) ? 'current' : 'absent'));
  }
}

function burst(count: number, maxConcurrentWrites: number) {
  const timers = new FakeTimers();
  const server = new SlowKeyServer(timers);
  const engine = new LivenessEngine(server, {
    timers,
    maxConcurrentWrites,
    establishTimeoutMs: 2000,
    reconcileIntervalMs: 60_000,
  });
  const outcomes = Array.from({ length: count }, (_, i) => {
    const registration = engine.register(`k${i}`, 'v', TTL, { lost: () => {}, restored: () => {} });
    const outcome = { settled: false, error: undefined as unknown };
    registration.established.then(
      () => {
        outcome.settled = true;
      },
      (error: unknown) => {
        outcome.settled = true;
        outcome.error = error;
      },
    );
    return outcome;
  });
  return { timers, server, engine, outcomes };
}

describe('liveness engine, key scope: a burst queued longer than the ttl', () => {
  it('registers every key without losing one: a session is renewed only once its key is written', async () => {
    // 200 writes of 50 ms one after another: 10 s, more than three ttls.
    const { timers, server, engine, outcomes } = burst(200, 4);
    for (let i = 0; i < 150 && outcomes.some((o) => !o.settled); i++) await timers.advance(100);
    expect(outcomes.filter((o) => o.error !== undefined)).toEqual([]);
    expect(outcomes.every((o) => o.settled)).toBe(true);
    expect(server.renewalsOfMissing).toBe(0);
    expect(engine.snapshot().sessionsLost).toBe(0);
    // Each written once, and at most 4 at a time.
    expect(server.writesSent).toBe(200);
    expect(server.maxInFlight).toBeLessThanOrEqual(4);
    // Kept alive afterwards: three ttls later every key is still on the server.
    await timers.advance(3 * TTL * 1000);
    const now = timers.now();
    expect([...server.keys.values()].filter((until) => until >= now)).toHaveLength(200);
    expect(engine.snapshot().sessionsLost).toBe(0);
    await engine.close();
    expect(server.keys.size).toBe(0);
  });

  it('close() during the burst sends none of the writes still waiting their turn, and leaves nothing', async () => {
    const { timers, server, engine, outcomes } = burst(100, 2);
    await timers.advance(120);
    const sentBeforeClose = server.writesSent;
    const closed = engine.close();
    for (let i = 0; i < 20; i++) await timers.advance(100);
    await closed;
    // The writes in flight when close began finish and are undone; none of the queued ones is sent.
    expect(server.writesSent).toBeLessThanOrEqual(sentBeforeClose + 2);
    expect(server.keys.size).toBe(0);
    expect(outcomes.every((o) => o.settled)).toBe(true);
    expect(outcomes.filter((o) => o.error !== undefined).length).toBeGreaterThanOrEqual(
      100 - server.writesSent,
    );
  });

  it('close() waits for registrations that gave up while their write was in flight, and removes what lands', async () => {
    const { timers, server, engine, outcomes } = burst(0, 4);
    server.held = [];
    const late = Array.from({ length: 3 }, (_, i) =>
      engine.register(`late${i}`, 'v', TTL, { lost: () => {}, restored: () => {} }).established.then(
        () => 'registered',
        (error: unknown) => (error as Error).name,
      ),
    );
    // No write is answered within establishTimeoutMs: every registration gives up (its write is
    // still in flight, and is undone once it lands).
    await timers.advance(2500);
    expect(await Promise.all(late)).toEqual([
      'BackendUnavailableError',
      'BackendUnavailableError',
      'BackendUnavailableError',
    ]);
    let closed = false;
    const closing = engine.close().then(() => {
      closed = true;
    });
    await timers.advance(1000);
    expect(closed).toBe(false);
    server.answer();
    for (let i = 0; i < 20 && !closed; i++) await timers.advance(100);
    await closing;
    expect(server.keys.size).toBe(0);
    expect(outcomes).toEqual([]);
  });
});
