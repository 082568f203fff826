import {
  type Backend,
  type BackoffOptions,
  type Logger,
  type Registration,
  type RegistrationState,
  type ServiceInstance,
} from '@rollcall/core';
import { Backoff, retryForever } from '@rollcall/core/driver';
import type { Side } from './phases.js';

type Listener = (error?: Error) => void;

const message = (error: unknown) => (error instanceof Error ? error.message : String(error));

/**
 * A registration held in every registry its phase writes to. It is `active` while each of them
 * holds the instance; a loss in either is `lost`, then `restored` once that registry holds it again
 * (the inner registration re-registers by itself). A phase move adds or removes registries:
 * leaving one deregisters there at once; joining one registers there in the background, and only
 * a failure to do so counts as a loss (a phase move alone must not take a fleet out of readiness).
 */
export class MigratingRegistration implements Registration {
  private readonly inner = new Map<Side, { registration: Registration; unsubscribe: () => void }>();
  /** Registries being joined after a phase move, with the controller that abandons the attempt. */
  private readonly joining = new Map<Side, AbortController>();
  /** Registries we must hold but could not join yet, with the last error. */
  private readonly failing = new Map<Side, Error>();
  private readonly listeners = { lost: new Set<Listener>(), restored: new Set<Listener>() };
  private healthy = true;
  private restoring = false;
  private removal: Promise<void> | undefined;

  constructor(
    readonly instance: ServiceInstance,
    private readonly ttlSeconds: number,
    private readonly backends: Readonly<Record<Side, Backend>>,
    private wanted: readonly Side[],
    initial: ReadonlyMap<Side, Registration>,
    private readonly options: { logger: Logger; backoff: BackoffOptions; onRemove: () => void },
  ) {
    for (const [side, registration] of initial) this.adopt(side, registration);
  }

  get state(): RegistrationState {
    if (this.removal) return 'closed';
    return this.healthy ? 'active' : 'recovering';
  }

  on(event: 'lost' | 'restored', listener: Listener): () => void {
    const set = this.listeners[event];
    if (!set) throw new TypeError(`unknown registration event '${String(event)}'`);
    set.add(listener);
    return () => set.delete(listener);
  }

  /**
   * Follows a phase move: deregisters at once from registries no longer wanted, registers in new
   * ones. Resolves once the removals are done and the additions made (or abandoned).
   */
  reconcile(wanted: readonly Side[]): Promise<void> {
    if (this.removal) return Promise.resolve();
    this.wanted = wanted;
    const work: Promise<void>[] = [];
    for (const [side, controller] of this.joining) if (!wanted.includes(side)) controller.abort();
    for (const [side, held] of this.inner) {
      if (wanted.includes(side)) continue;
      held.unsubscribe();
      this.inner.delete(side);
      work.push(
        held.registration.deregister().catch((error) =>
          this.options.logger.warn(
            {
              ...this.who(side),
              error: message(error),
            },
            'cannot deregister from the registry this phase leaves',
          ),
        ),
      );
    }
    for (const side of wanted) {
      // A join abandoned by a quick move back and forth may still be winding down: start a fresh one.
      const joining = this.joining.get(side);
      if (!this.inner.has(side) && (!joining || joining.signal.aborted)) work.push(this.join(side));
    }
    this.failing.forEach((_e, side) => {
      if (!wanted.includes(side)) this.failing.delete(side);
    });
    this.update();
    return Promise.all(work).then(() => {});
  }

  deregister(): Promise<void> {
    if (!this.removal) {
      this.removal = (async () => {
        for (const controller of this.joining.values()) controller.abort();
        const held = [...this.inner.values()];
        this.inner.clear();
        for (const h of held) h.unsubscribe();
        this.options.onRemove();
        const results = await Promise.allSettled(held.map((h) => h.registration.deregister()));
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed) throw failed.reason;
      })();
    }
    return this.removal;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.deregister();
  }

  private adopt(side: Side, registration: Registration): void {
    const offLost = registration.on('lost', (error) => {
      this.options.logger.warn(
        {
          ...this.who(side),
          error: error?.message,
        },
        'registration lost in one registry; it re-registers by itself',
      );
      this.update(error);
    });
    const offRestored = registration.on('restored', () => this.update());
    this.inner.set(side, {
      registration,
      unsubscribe: () => {
        offLost();
        offRestored();
      },
    });
  }

  /** Registers in a registry a phase move joined, retrying (with backoff, no limit) until it holds or is abandoned. */
  private async join(side: Side): Promise<void> {
    const controller = new AbortController();
    this.joining.set(side, controller);
    try {
      const registration = await retryForever(
        () =>
          this.backends[side].discovery.register(this.instance, {
            ttlSeconds: this.ttlSeconds,
            signal: controller.signal,
          }),
        {
          signal: controller.signal,
          backoff: new Backoff(this.options.backoff),
          onError: (error) => {
            const e = error instanceof Error ? error : new Error(String(error));
            this.options.logger.warn(
              {
                ...this.who(side),
                error: e.message,
              },
              'cannot register in the registry this phase joins; retrying',
            );
            this.failing.set(side, e);
            this.update(e);
          },
        },
      );
      if (controller.signal.aborted || this.removal || !this.wanted.includes(side)) {
        await registration.deregister().catch(() => {});
        return;
      }
      this.failing.delete(side);
      this.adopt(side, registration);
    } catch {
      // Abandoned: the phase moved back, or the registration was removed.
    } finally {
      if (this.joining.get(side) === controller) this.joining.delete(side);
      this.update();
    }
  }

  /**
   * Recomputes the state from the registries; emits `lost` at once, `restored` once every
   * registry holds the instance after the current burst of events (registries that come back
   * together report one by one: a restore in one must not hide the loss about to be told by the other).
   */
  private update(error?: Error): void {
    if (this.removal) return;
    const holds = this.holds();
    if (this.healthy && !holds) {
      this.healthy = false;
      this.fire(
        'lost',
        error ?? [...this.failing.values()][0] ?? new Error('a registry dropped the instance'),
      );
    } else if (!this.healthy && holds && !this.restoring) {
      this.restoring = true;
      queueMicrotask(() => {
        this.restoring = false;
        if (this.removal || this.healthy || !this.holds()) return;
        this.healthy = true;
        this.fire('restored');
      });
    }
  }

  private holds(): boolean {
    return this.wanted.every((side) => {
      if (this.failing.has(side)) return false;
      if (this.joining.has(side)) return true;
      return this.inner.get(side)?.registration.state === 'active';
    });
  }

  private fire(event: 'lost' | 'restored', error?: Error): void {
    for (const listener of [...this.listeners[event]]) {
      try {
        listener(error);
      } catch (e) {
        this.options.logger.error({ error: message(e) }, 'registration listener threw');
      }
    }
  }

  private who(side: Side): Record<string, string> {
    return { service: this.instance.service, id: this.instance.id, registry: this.backends[side].name, side };
  }
}
