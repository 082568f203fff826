import type { IncomingMessage, ServerResponse } from 'node:http';
import { sleep } from './backoff.js';
import type { DiscoveryHealth, HealthOptions } from './discovery.js';
import { message } from './liveness/context.js';
import { holdProcess } from './liveness/process-ref.js';
import { type Logger, silentLogger } from './logger.js';
import type { Backend, Registration, ServiceDiscovery } from './types.js';

/** Anything that can report {@link DiscoveryHealth}: every discovery Rollcall builds. */
export interface HealthSource {
  health(options?: HealthOptions): Promise<DiscoveryHealth>;
}

/** The JSON body of the detailed `/health` view. */
export interface HealthBody extends DiscoveryHealth {
  /** `pass` when the backend is reachable and every registration of this process is active. */
  status: 'pass' | 'fail';
  /** True once a graceful shutdown began. */
  shuttingDown: boolean;
}

/** The JSON body of `/livez` and `/readyz`. */
export interface ProbeBody {
  status: 'pass' | 'fail';
  /** Why not ready (for `/readyz`), one line each. */
  reasons: string[];
}

/** `pass` only when the backend is reachable and every registration of this process is `active`. */
export function healthStatus(health: DiscoveryHealth): 'pass' | 'fail' {
  return health.reachable && health.registrations.every((r) => r.state === 'active') ? 'pass' : 'fail';
}

// One set for every copy of this package in the process (Symbol.for): the handler and the
// shutdown may come from different copies.
const SHUTTING_DOWN = Symbol.for('rollcall.shuttingDown');
const shared = globalThis as { [SHUTTING_DOWN]?: WeakSet<object> };
shared[SHUTTING_DOWN] ??= new WeakSet<object>();
const shuttingDown = shared[SHUTTING_DOWN];

/** Marks `discovery` as shutting down: its readiness probe fails from now on. {@link installGracefulShutdown} does it first. */
export function markShuttingDown(discovery: ServiceDiscovery): void {
  shuttingDown.add(discovery);
}

/** True once {@link markShuttingDown} (or a graceful shutdown) ran for `discovery`. */
export function isShuttingDown(discovery: ServiceDiscovery): boolean {
  return shuttingDown.has(discovery);
}

/** Options of {@link createHealthHandler}, with their defaults. */
export interface HealthHandlerOptions {
  /** Path of the liveness probe. Default `'/livez'`. */
  livenessPath?: string;
  /** Path of the readiness probe. Default `'/readyz'`. */
  readinessPath?: string;
  /** Path of the detailed JSON view. Default `'/health'`. */
  detailPath?: string;
  /** Fail readiness while this process has no registration at all. Default false. */
  requireRegistration?: boolean;
}

/** Registrations of a discovery that has no `health()` (one Rollcall did not build). */
type WithRegistrations = { readonly activeRegistrations?: readonly Registration[] };

async function healthOf(discovery: ServiceDiscovery): Promise<DiscoveryHealth> {
  const source = discovery as Partial<HealthSource>;
  if (typeof source.health === 'function') return source.health({});
  const registrations = (discovery as WithRegistrations).activeRegistrations ?? [];
  return {
    backend: discovery.backend,
    connection: 'unknown',
    reachable: true,
    registrations: registrations.map((r) => ({
      service: r.instance.service,
      id: r.instance.id,
      state: r.state,
      losses: 0,
    })),
    watches: [],
  };
}

/**
 * Why `discovery`'s process is not ready, one line each (none: ready). Ready means: no graceful
 * shutdown began, and every registration of this process is `active` (and, with
 * `requireRegistration`, there is one).
 */
export function notReadyReasons(
  discovery: ServiceDiscovery,
  health: DiscoveryHealth,
  options: { requireRegistration?: boolean } = {},
): string[] {
  const reasons: string[] = [];
  if (isShuttingDown(discovery)) reasons.push('shutting down');
  if (options.requireRegistration && health.registrations.length === 0) reasons.push('no registration yet');
  for (const r of health.registrations)
    if (r.state !== 'active')
      reasons.push(`${r.service}/${r.id} is ${r.state}${r.error ? `: ${r.error}` : ''}`);
  return reasons;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

/**
 * A `node:http` request handler for Kubernetes-style probes over a discovery (the one the DI
 * container hands out works as it is):
 *
 * - `/livez`: 200 while the process works, whatever the backend says (a registry outage must not
 *   restart pods); it never waits on the network.
 * - `/readyz`: 503 until this process's registrations are `active`, while any is `recovering`,
 *   and from the moment a graceful shutdown begins; the body says why.
 * - `/health`: the detailed JSON view ({@link HealthBody}): connection state, registrations,
 *   watches; 200 when `pass`, 503 when `fail`.
 *
 * No probe sends anything to the registry: the connection state comes from what the watches and
 * keepalives already track. Other paths answer 404.
 */
export function createHealthHandler(
  discovery: ServiceDiscovery,
  options: HealthHandlerOptions = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  const liveness = options.livenessPath ?? '/livez';
  const readiness = options.readinessPath ?? '/readyz';
  const detail = options.detailPath ?? '/health';
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === liveness) {
      send(res, 200, { status: 'pass', reasons: [] } satisfies ProbeBody);
      return;
    }
    if (path !== readiness && path !== detail) {
      send(res, 404, {
        status: 'fail',
        reasons: [`no probe at ${path}; try ${liveness}, ${readiness} or ${detail}`],
      });
      return;
    }
    healthOf(discovery).then(
      (health) => {
        if (path === readiness) {
          const reasons = notReadyReasons(discovery, health, options);
          send(res, reasons.length === 0 ? 200 : 503, {
            status: reasons.length === 0 ? 'pass' : 'fail',
            reasons,
          } satisfies ProbeBody);
          return;
        }
        const body: HealthBody = {
          status: healthStatus(health),
          shuttingDown: isShuttingDown(discovery),
          ...health,
        };
        send(res, body.status === 'pass' ? 200 : 503, body);
      },
      (error: unknown) =>
        send(res, 503, {
          status: 'fail',
          reasons: [message(error)],
        } satisfies ProbeBody),
    );
  };
}

/** Options of {@link installGracefulShutdown}, with their defaults. */
export interface GracefulShutdownOptions {
  /** Ms to keep serving after deregistering, while callers' caches drop this instance. Default 5000. */
  drainMs?: number;
  /** Longest wait for the backend's `close()`; past it the process exits with code 2. Default 10000. */
  closeTimeoutMs?: number;
  /** Signals to handle. Default `['SIGTERM', 'SIGINT']`. */
  signals?: NodeJS.Signals[];
  /** Runs after the drain delay, before the backend closes: close HTTP and gRPC servers, flush work. */
  beforeExit?: () => void | Promise<void>;
  /** Ends the process. Default `process.exit`. */
  exit?: (code: number) => void;
  /** Where signals come from. Default `process`. */
  emitter?: Pick<NodeJS.EventEmitter, 'on' | 'off'>;
  /** Default silent. */
  logger?: Logger;
}

/** Exit codes of {@link installGracefulShutdown}. */
export const SHUTDOWN_EXIT_CODES = {
  /** Every step done. */
  ok: 0,
  /** A step failed (logged); the rest still ran. */
  failed: 1,
  /** The backend's `close()` did not finish within `closeTimeoutMs`. */
  timedOut: 2,
  /** A second signal arrived during the shutdown: exit at once. */
  interrupted: 130,
} as const;

/**
 * On SIGTERM/SIGINT: mark the process not ready (its `/readyz` fails at once), deregister its
 * instances, wait `drainMs` while callers drop it, run `beforeExit`, close the whole backend
 * (kv watches ended, held locks released at once and led elections resigned, so waiters
 * elsewhere proceed now rather than after a ttl; discovery closed), then exit 0. A step that
 * fails is logged and gives exit code 1; a close that hangs is cut after `closeTimeoutMs` (exit
 * code 2); a second signal exits at once (130). The process stays alive through the drain.
 * Returns a function that removes the handlers.
 */
export function installGracefulShutdown(backend: Backend, options: GracefulShutdownOptions = {}): () => void {
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  const emitter = options.emitter ?? process;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const logger = options.logger ?? silentLogger;
  const discovery = backend.discovery as ServiceDiscovery & WithRegistrations;
  let started = false;
  const handler = (signal: NodeJS.Signals) => {
    if (started) {
      logger.warn({ signal }, 'second signal during shutdown: exiting now');
      exit(SHUTDOWN_EXIT_CODES.interrupted);
      return;
    }
    started = true;
    const release = holdProcess();
    void (async () => {
      let code: number = SHUTDOWN_EXIT_CODES.ok;
      const step = async (what: string, run: () => unknown) => {
        try {
          await run();
        } catch (error) {
          code = SHUTDOWN_EXIT_CODES.failed;
          logger.error({ error: message(error) }, `shutdown: ${what} failed`);
        }
      };
      markShuttingDown(backend.discovery);
      logger.info({ signal }, 'shutting down: not ready, deregistering');
      await step('deregister', () =>
        Promise.all((discovery.activeRegistrations ?? []).map((r) => r.deregister())),
      );
      await sleep(options.drainMs ?? 5000);
      if (options.beforeExit) await step('beforeExit', options.beforeExit);
      const closed = await Promise.race([
        step('closing the backend', () => backend.close()).then(() => 'done' as const),
        sleep(options.closeTimeoutMs ?? 10_000).then(() => 'timeout' as const),
      ]);
      if (closed === 'timeout') {
        code = SHUTDOWN_EXIT_CODES.timedOut;
        logger.error(
          {
            closeTimeoutMs: options.closeTimeoutMs ?? 10_000,
          },
          'shutdown: the backend did not close in time; exiting anyway',
        );
      }
      release();
      exit(code);
    })();
  };
  for (const s of signals) emitter.on(s, handler);
  return () => {
    for (const s of signals) emitter.off(s, handler);
  };
}
