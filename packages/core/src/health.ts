import type { IncomingMessage, ServerResponse } from 'node:http';
import { sleep } from './backoff.js';
import type { DiscoveryHealth } from './discovery.js';
import { type Logger, silentLogger } from './logger.js';
import type { Registration, ServiceDiscovery } from './types.js';

/** Anything that can report {@link DiscoveryHealth}: every discovery Rollcall builds. */
export interface HealthSource {
  health(timeoutMs?: number): Promise<DiscoveryHealth>;
}

/** The JSON body of the health endpoint. */
export interface HealthBody extends DiscoveryHealth {
  /** `pass` when the backend is reachable and every registration of this process is active. */
  status: 'pass' | 'fail';
}

/** `pass` only when the backend answers and every registration of this process is `active`. */
export function healthStatus(health: DiscoveryHealth): 'pass' | 'fail' {
  return health.reachable && health.registrations.every((r) => r.state === 'active') ? 'pass' : 'fail';
}

/**
 * A `node:http` request handler answering 200 (`pass`) or 503 (`fail`) with a JSON
 * {@link HealthBody}: backend reachability plus the state of this process's own registrations,
 * so an orchestrator sees a process that is up but missing from the registry.
 */
export function createHealthHandler(
  source: HealthSource,
  options: { /** Ping deadline in ms. Default 2000. */ timeoutMs?: number } = {},
): (req: IncomingMessage, res: ServerResponse) => void {
  return (_req, res) => {
    source.health(options.timeoutMs ?? 2000).then(
      (health) => {
        const body: HealthBody = { status: healthStatus(health), ...health };
        res.writeHead(body.status === 'pass' ? 200 : 503, { 'content-type': 'application/json' });
        res.end(JSON.stringify(body));
      },
      (error: unknown) => {
        res.writeHead(503, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({ status: 'fail', error: error instanceof Error ? error.message : String(error) }),
        );
      },
    );
  };
}

/** Options of {@link installGracefulShutdown}. */
export interface GracefulShutdownOptions {
  /** Whose registrations are removed first and which is closed last. */
  discovery: ServiceDiscovery & { readonly activeRegistrations?: Registration[] };
  /** Ms to keep serving after deregistering, while callers' caches drop this instance. Default 5000. */
  drainMs?: number;
  /** Signals to handle. Default `['SIGTERM', 'SIGINT']`. */
  signals?: NodeJS.Signals[];
  /** Runs after the drain delay: close HTTP servers, flush work. */
  beforeExit?: () => void | Promise<void>;
  /** Ends the process. Default `process.exit`. */
  exit?: (code: number) => void;
  /** Where signals come from. Default `process`. */
  emitter?: Pick<NodeJS.EventEmitter, 'on' | 'off'>;
  /** Default silent. */
  logger?: Logger;
}

/**
 * On SIGTERM/SIGINT: deregister this process's instances at once, wait `drainMs` so callers stop
 * sending, run `beforeExit`, close the discovery, exit 0 (1 if a step failed). A second signal
 * exits at once with 130. Returns a function that removes the handlers.
 */
export function installGracefulShutdown(options: GracefulShutdownOptions): () => void {
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  const emitter = options.emitter ?? process;
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const logger = options.logger ?? silentLogger;
  let started = false;
  const handler = (signal: NodeJS.Signals) => {
    if (started) {
      logger.warn('second signal during shutdown: exiting now', { signal });
      exit(130);
      return;
    }
    started = true;
    void (async () => {
      let code = 0;
      try {
        logger.info('shutting down: deregistering', { signal });
        const registrations = options.discovery.activeRegistrations;
        if (registrations) await Promise.all(registrations.map((r) => r.deregister()));
        else await options.discovery.close();
        await sleep(options.drainMs ?? 5000);
        await options.beforeExit?.();
        await options.discovery.close();
      } catch (error) {
        code = 1;
        logger.error('shutdown step failed', {
          error: error instanceof Error ? error.message : String(error),
        });
      }
      exit(code);
    })();
  };
  for (const s of signals) emitter.on(s, handler);
  return () => {
    for (const s of signals) emitter.off(s, handler);
  };
}
