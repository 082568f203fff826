import {
  AbortedError,
  BackendUnavailableError,
  ClosedError,
  PermissionDeniedError,
  RollcallError,
  redactSecrets,
} from '@rollcall/core';
import { abortable, Backoff, retryForever, sleep, unboundedController } from '@rollcall/core/driver';
import { ConsecutiveBreaker, circuitBreaker, ExponentialBackoff, handleWhen, noop } from 'cockatiel';
import {
  ClientClosedError,
  Etcd3,
  EtcdAuthenticationFailedError,
  EtcdLeaseInvalidError,
  EtcdPermissionDeniedError,
  GRPCUnauthenticatedError,
  type IOptions,
  isRecoverableError,
} from 'etcd3';
import type { ResolvedEtcdOptions } from './options.js';

const BACKEND = 'etcd';

/** Per-call gRPC options passed to etcd3 builders: an absolute deadline in ms since the epoch. */
export interface CallOptions {
  deadline: number;
}

/** etcd answers that mean "try again shortly" (leader elections, overload), beyond gRPC's recoverable codes. */
const TRANSIENT_MESSAGES = [
  'etcdserver: leader changed',
  'etcdserver: no leader',
  'etcdserver: request timed out',
  'etcdserver: too many requests',
  'etcdserver: not capable',
  'etcdserver: server stopped',
];

function isBrokenCircuit(error: unknown): boolean {
  return typeof error === 'object' && error !== null && 'isBrokenCircuitError' in error;
}

/** True for failures worth retrying within a call's deadline. */
export function isTransient(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (isBrokenCircuit(error)) return true;
  if (error instanceof EtcdAuthenticationFailedError || error instanceof EtcdPermissionDeniedError)
    return false;
  if (isRecoverableError(error)) return true;
  // Our lease expired while etcd was unreachable: the liveness engine grants a new one on the next attempt.
  if (error instanceof EtcdLeaseInvalidError) return true;
  return TRANSIENT_MESSAGES.some((m) => error.message.includes(m));
}

function isAuthError(error: unknown): boolean {
  return (
    error instanceof EtcdAuthenticationFailedError ||
    error instanceof EtcdPermissionDeniedError ||
    error instanceof GRPCUnauthenticatedError ||
    (error instanceof Error &&
      /etcdserver: (authentication failed|permission denied|invalid auth token|user name not found|user name is empty)/.test(
        error.message,
      ))
  );
}

/**
 * One etcd3 client and everything shared by the discovery and key/value drivers: deadlines,
 * retries of transient failures within a deadline, error mapping (typed, secret-free), and a
 * shared "wait until etcd answers again" gate used by every watch to re-sync after an outage.
 */
export class EtcdConnection {
  readonly client: Etcd3;
  /** Aborted by close(): stops every retry loop and gate. */
  private readonly closer = unboundedController();
  private state: 'open' | 'closed' | 'crashed' = 'open';
  private gate: Promise<void> | undefined;
  private readonly reachable = new Set<() => void>();
  private readonly secrets: string[];
  /**
   * Totals over every prefix watch of this client: full reads, forced re-syncs (history compacted),
   * connection losses, and cancels by the server for lack of permission (each re-read after a backoff).
   */
  readonly watchStats = { reads: 0, forcedSyncs: 0, disconnects: 0, cancels: 0 };

  constructor(readonly options: ResolvedEtcdOptions) {
    this.secrets = options.auth ? [options.auth.password] : [];
    const { callTimeoutMs, dialTimeoutMs, keepaliveMs, endpoints } = options;
    const config: IOptions = {
      hosts: endpoints,
      dialTimeout: dialTimeoutMs,
      // Every unary call gets a deadline; watch and keepalive streams must live on.
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
      grpcOptions: {
        'grpc.keepalive_time_ms': keepaliveMs,
        'grpc.keepalive_timeout_ms': Math.min(keepaliveMs, callTimeoutMs),
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': Math.max(100, dialTimeoutMs),
        // A service with tens of thousands of instances is one range response of several MB (gRPC's default cap is 4 MB).
        'grpc.max_receive_message_length': -1,
      },
      faultHandling: {
        // Retries happen here, within each call's deadline (see call()); etcd3's own global retry would multiply it.
        global: noop,
        // With one endpoint a breaker only delays recovery (etcd3's default kept a client unusable ~5 s after etcd
        // returned). With several it steers calls away from a dead member, and lets one probe through after 1 s.
        host: () =>
          endpoints.length > 1
            ? circuitBreaker(handleWhen(isRecoverableError), {
                halfOpenAfter: 1000,
                breaker: new ConsecutiveBreaker(3),
              })
            : noop,
        watchBackoff: new ExponentialBackoff({
          initialDelay: 100,
          maxDelay: Math.max(200, options.backoff.maxMs ?? 5000),
        }) as never,
      },
    };
    if (options.auth) {
      config.auth = {
        username: options.auth.username,
        password: options.auth.password,
        callOptions: () => ({ deadline: Date.now() + dialTimeoutMs }),
      };
    }
    if (options.tls) {
      config.credentials = {
        rootCertificate: (options.tls.ca ?? null) as Buffer,
        ...(options.tls.key ? { privateKey: options.tls.key } : {}),
        ...(options.tls.cert ? { certChain: options.tls.cert } : {}),
      };
    }
    this.client = new Etcd3(config);
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  get crashed(): boolean {
    return this.state === 'crashed';
  }

  /** Aborts when the connection closes. */
  get signal(): AbortSignal {
    return this.closer.signal;
  }

  /** A fresh backoff with the configured delays. */
  backoff(): Backoff {
    return new Backoff(this.options.backoff);
  }

  /** Removes secrets from any text headed for an error or a log line. */
  redact(text: string): string {
    return redactSecrets(text, this.secrets);
  }

  /**
   * Runs `attempt` in the background until it succeeds or the connection closes, logging each
   * failure (redacted). For clean-ups that must land eventually, such as removing a key whose
   * write may have reached etcd after its caller gave up; once closed, the revoked (or expiring)
   * lease takes such keys with it.
   */
  retryInBackground(
    what: string,
    attempt: () => Promise<unknown>,
    fields: Record<string, unknown> = {},
  ): void {
    retryForever(attempt, {
      backoff: this.backoff(),
      signal: this.signal,
      onError: (error, n) =>
        this.options.logger.warn(
          {
            ...fields,
            attempt: n,
            error: this.redact(error instanceof Error ? error.message : String(error)),
          },
          `etcd: ${what} failed; retrying`,
        ),
    }).catch(() => {});
  }

  /**
   * Maps any failure to a typed, secret-free Rollcall error: credentials refused gives
   * {@link PermissionDeniedError}, a closed client {@link ClosedError}, anything else
   * {@link BackendUnavailableError}. `what` says which operation failed.
   */
  error(error: unknown, what: string): Error {
    if (error instanceof RollcallError) return error;
    if (
      error instanceof ClientClosedError ||
      (this.state !== 'open' && !(error instanceof Error && isAuthError(error)))
    ) {
      return new ClosedError('etcd backend');
    }
    const raw = error instanceof Error ? error.message : String(error);
    const message = this.redact(`${what}: ${raw}`);
    if (isAuthError(error))
      return new PermissionDeniedError(BACKEND, `${message} (check auth.username and auth.password)`);
    const cause = new Error(this.redact(raw));
    cause.name = error instanceof Error ? error.constructor.name : 'Error';
    return new BackendUnavailableError(BACKEND, message, { cause });
  }

  /** Throws {@link ClosedError} once closed. */
  assertOpen(): void {
    if (this.state !== 'open') throw new ClosedError('etcd backend');
  }

  /**
   * Runs one unary operation with an absolute deadline `timeoutMs` from now (default
   * `callTimeoutMs`), shared by every attempt: transient failures (connection lost, leader
   * change, open circuit) are retried with a short backoff until the deadline passes.
   */
  async call<T>(
    what: string,
    op: (options: CallOptions) => Promise<T>,
    timeoutMs = this.options.callTimeoutMs,
    signal?: AbortSignal,
  ): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    // Made on the first failure only: most calls succeed at once, on the hot path of every write.
    let backoff: Backoff | undefined;
    for (;;) {
      this.assertOpen();
      if (signal?.aborted) throw new AbortedError(signal.reason);
      try {
        return await op({ deadline });
      } catch (error) {
        backoff ??= new Backoff({ initialMs: 20, maxMs: 500 });
        const delay = backoff.next();
        if (!this.isOpen || !isTransient(error) || Date.now() + delay >= deadline)
          throw this.error(error, what);
        await sleep(delay, signal);
      }
    }
  }

  /** A cheap linearizable read (it needs a leader): rejects when etcd cannot serve requests. */
  async ping(signal?: AbortSignal): Promise<void> {
    await abortable(
      this.call(
        'ping',
        (o) => this.client.get(`${this.options.namespace}ping`).options(o).exec(),
        this.options.callTimeoutMs,
        signal,
      ),
      signal,
    );
  }

  /**
   * Resolves once etcd answers again. One probe loop is shared by every caller (every watch
   * of this client waits here during an outage), with capped backoff and no limit. When it gets
   * through, the `onReachable` listeners are told (the liveness engine renews and repairs at once).
   */
  waitReachable(signal: AbortSignal): Promise<void> {
    this.gate ??= retryForever(() => this.ping(), {
      backoff: this.backoff(),
      signal: this.closer.signal,
    }).then(
      () => {
        this.gate = undefined;
        for (const listener of this.reachable) listener();
      },
      (error: unknown) => {
        this.gate = undefined;
        throw error;
      },
    );
    return abortable(this.gate, signal);
  }

  /** Calls `listener` each time etcd answers again after a wait in {@link waitReachable}. */
  onReachable(listener: () => void): void {
    this.reachable.add(listener);
  }

  /** Closes the client. Callers revoke their leases first. Idempotent. */
  close(crashed = false): void {
    if (this.state !== 'open') return;
    this.state = crashed ? 'crashed' : 'closed';
    this.closer.abort(new ClosedError('etcd backend'));
    this.client.close();
  }
}
