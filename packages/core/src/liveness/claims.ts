import type { LiveSession } from './session.js';

/** Shared, so that recording a write in flight allocates no closures. */
const ignore = (): void => {};

/** Told when a registered key is lost from the server and when it is back. */
export interface KeyListener {
  /** The key is gone from the server (session lost, key deleted, or taken by another owner: a `ConflictError`). */
  lost(error: Error): void;
  /** The key is back on the server, held by this client. */
  restored(): void;
}

/**
 * Where a registered key stands: `establishing` (first write in flight), `active` (written on a
 * usable session), `recovering` (lost; being written again, or waiting for a conflicting owner to
 * go), `closed` (released or failed to establish).
 */
export type RegisteredState = 'establishing' | 'active' | 'recovering' | 'closed';

/**
 * A key the engine keeps on the server for as long as the client lives, putting it back whenever
 * it is lost (a service registration). Created by {@link LivenessEngine.register}.
 */
export class RegisteredKey<S, V> {
  state: RegisteredState = 'establishing';
  /** The session it is written on, while active. */
  session: LiveSession<S> | undefined;
  /** Sessions a write of it was sent on and may still stand: where a release must delete it. */
  readonly sentOn = new Set<LiveSession<S>>();
  /** Another live owner holds the key: wait for it to go (checked on every reconcile). */
  conflict = false;
  /** Settles when no write of this key is in flight (none yet: `undefined`); a release waits for it. */
  inflight: Promise<void> | undefined;
  /** Settles once the first write landed (rejects when it failed, conflicted or was abandoned). */
  established!: Promise<void>;
  /** The release in progress, once released. */
  releasing: Promise<void> | undefined;

  constructor(
    readonly key: string,
    readonly value: V,
    readonly ttlSeconds: number,
    readonly listener: KeyListener,
  ) {}

  /** Runs `write` after any write of this key in flight, recording it as the one in flight. */
  serialize<T>(write: () => Promise<T>): Promise<T> {
    const run = this.inflight ? this.inflight.then(write, write) : write();
    this.inflight = run.then(ignore, ignore);
    return run;
  }
}

/**
 * A key that lives and dies with one session and is never put back (a lock or election key, a
 * queue entry): when the session is lost its key is deleted and `lost` aborts. Created by
 * {@link LivenessEngine.attach}.
 */
export class HeldKey<S> {
  private readonly controller = new AbortController();
  /** Set once released, forgotten or lost. */
  ended = false;

  constructor(
    readonly key: string,
    readonly session: LiveSession<S>,
    private readonly onRelease: (held: HeldKey<S>, remove: boolean) => Promise<void>,
  ) {}

  /** Aborts (with the reason) when the key is lost: its session lost or ended, or the key gone from the server. */
  get lost(): AbortSignal {
    return this.controller.signal;
  }

  /** Deletes the key (if its session still holds it) and stops tracking it. Idempotent. */
  release(): Promise<void> {
    return this.onRelease(this, true);
  }

  /** Stops tracking the key without deleting it (the driver removed it itself, or never wrote it). */
  forget(): void {
    void this.onRelease(this, false);
  }

  /** @internal The engine declares the key lost. */
  lose(error: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.controller.abort(error);
  }
}
