import { publish } from './diagnostics.js';
import type { KeyListener } from './liveness/claims.js';
import type { Registration, RegistrationState, ServiceInstance } from './types.js';

type Listener = (error?: Error) => void;

/**
 * The {@link Registration} every backend returns. The liveness engine keeps its key on the server
 * and reports losses and recoveries here ({@link KeyListener}); this class holds the public state
 * and events.
 */
export class ManagedRegistration implements Registration, KeyListener {
  private current: RegistrationState = 'active';
  private readonly listeners = { lost: new Set<Listener>(), restored: new Set<Listener>() };
  private removal: Promise<void> | undefined;
  /** Times the backend dropped this instance, for health reports. */
  lossCount = 0;
  /** Why it is recovering, while it is (the latest reason: a conflict found later replaces a loss). */
  lastError: Error | undefined;

  constructor(
    readonly instance: ServiceInstance,
    readonly ttlSeconds: number,
    private readonly remove: () => Promise<void>,
    private readonly onListenerError: (error: unknown) => void = () => {},
    /** Backend name, for the diagnostics channel. */
    private readonly backend = '',
  ) {}

  /** Publishes this registration's state on `rollcall:registration`. */
  announce(previous: RegistrationState | undefined, error?: Error): void {
    publish.registration(() => ({
      backend: this.backend,
      service: this.instance.service,
      id: this.instance.id,
      state: this.current,
      previous,
      ...(error ? { error } : {}),
    }));
  }

  get state(): RegistrationState {
    return this.current;
  }

  /** The backend dropped the instance (or another client took its id); emits `lost` once per loss. */
  lost(error: Error): void {
    if (this.current === 'closed') return;
    this.lastError = error;
    if (this.current !== 'active') return;
    this.current = 'recovering';
    this.lossCount += 1;
    this.announce('active', error);
    this.fire('lost', error);
  }

  /** The instance is back in the backend; emits `restored`. */
  restored(): void {
    if (this.current !== 'recovering') return;
    this.current = 'active';
    this.lastError = undefined;
    this.announce('recovering');
    this.fire('restored');
  }

  on(event: 'lost' | 'restored', listener: Listener): () => void {
    const set = this.listeners[event];
    if (!set) throw new TypeError(`unknown registration event '${String(event)}'`);
    set.add(listener);
    return () => set.delete(listener);
  }

  deregister(): Promise<void> {
    if (!this.removal) {
      const previous = this.current;
      this.current = 'closed';
      this.announce(previous);
      this.removal = this.remove();
    }
    return this.removal;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.deregister();
  }

  private fire(event: 'lost' | 'restored', error?: Error): void {
    for (const listener of [...this.listeners[event]]) {
      try {
        listener(error);
      } catch (e) {
        this.onListenerError(e);
      }
    }
  }
}
