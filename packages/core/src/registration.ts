import type { Registration, RegistrationState, ServiceInstance } from './types.js';

/**
 * The handle a backend driver gets for each registration: the validated instance, its TTL,
 * and the hooks to report that the backend dropped it and that it is back.
 */
export interface RegistrationControl {
  readonly instance: ServiceInstance;
  readonly ttlSeconds: number;
  /** Aborts when the registration is deregistered or its client closes: stop heartbeats and retries. */
  readonly signal: AbortSignal;
  /** The backend dropped the instance; the driver is re-registering it. Emits `lost` once per loss. */
  lost(error: Error): void;
  /** The instance is back in the backend. Emits `restored` if it had been lost. */
  restored(): void;
}

type Listener = (error?: Error) => void;

/** The {@link Registration} every backend returns; state and events live here, writes in the driver. */
export class ManagedRegistration implements Registration, RegistrationControl {
  private current: RegistrationState = 'active';
  private readonly listeners = { lost: new Set<Listener>(), restored: new Set<Listener>() };
  private readonly abort = new AbortController();
  private removal: Promise<void> | undefined;
  /** Times the backend dropped this instance, for health reports. */
  lossCount = 0;
  /** The error of the current loss, while recovering. */
  lastError: Error | undefined;

  constructor(
    readonly instance: ServiceInstance,
    readonly ttlSeconds: number,
    private readonly remove: (registration: ManagedRegistration) => Promise<void>,
    private readonly onListenerError: (error: unknown) => void = () => {},
  ) {}

  get state(): RegistrationState {
    return this.current;
  }

  get signal(): AbortSignal {
    return this.abort.signal;
  }

  lost(error: Error): void {
    if (this.current !== 'active') return;
    this.current = 'recovering';
    this.lossCount += 1;
    this.lastError = error;
    this.fire('lost', error);
  }

  restored(): void {
    if (this.current !== 'recovering') return;
    this.current = 'active';
    this.lastError = undefined;
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
      this.current = 'closed';
      this.abort.abort();
      this.removal = this.remove(this);
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
