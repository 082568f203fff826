import { isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { type Server, ServerCredentials } from '@grpc/grpc-js';
import {
  type Logger,
  type Registration,
  type ServiceDiscovery,
  type ServiceInstance,
  silentLogger,
  ValidationError,
  validateInstance,
  validateTtl,
} from '@rollcall/core';
import { sleep } from '@rollcall/core/driver';

/** Options of {@link serveGrpc}. */
export interface ServeGrpcOptions {
  /** Where the bound address is registered. */
  discovery: ServiceDiscovery;
  /**
   * The instance to register, without its port (the bound one is used). `id` defaults to
   * `<service>-<host>-<port>`; `host` to `listenHost` when that is a specific address, else the
   * first non-internal IPv4 address of the machine, else `127.0.0.1`.
   */
  instance: Omit<ServiceInstance, 'id' | 'host' | 'port'> & { id?: string; host?: string };
  /** Address to listen on. Default `'0.0.0.0'` (every IPv4 interface). */
  listenHost?: string;
  /** Port to listen on; `0` picks a free one, and that one is registered. Default `0`. */
  port?: number;
  /** Server credentials. Default `ServerCredentials.createInsecure()`. */
  credentials?: ServerCredentials;
  /** Registration ttl in seconds (see `RegisterOptions.ttlSeconds`). Default: the backend's (10). */
  ttlSeconds?: number;
  /** Ms {@link GrpcServing.shutdown} keeps serving after deregistering, while clients drop this address. Default 5000. */
  drainMs?: number;
  /** Ms {@link GrpcServing.stop} lets in-flight calls finish (`tryShutdown`) before `forceShutdown`. Default 10000. */
  shutdownTimeoutMs?: number;
  /** Where shutdown steps are reported. Default silent. */
  logger?: Logger;
}

/** A bound, registered gRPC server: what {@link serveGrpc} returns. `await using` runs {@link GrpcServing.shutdown}. */
export interface GrpcServing extends AsyncDisposable {
  readonly server: Server;
  /** The port actually bound (never 0). */
  readonly port: number;
  /** The registered instance (with the bound port). */
  readonly instance: ServiceInstance;
  readonly registration: Registration;
  /**
   * Graceful stop: deregister, keep serving for `drainMs` while clients move away, then
   * {@link GrpcServing.stop}. Idempotent.
   */
  shutdown(): Promise<void>;
  /**
   * Stops serving: `tryShutdown` (in-flight calls finish, new ones are refused), forced after
   * `shutdownTimeoutMs`. Does not deregister: it is the `beforeExit` step of core's
   * `installGracefulShutdown`, which deregisters and drains first. Idempotent.
   */
  stop(): Promise<void>;
}

const DEFAULT_DRAIN_MS = 5000;
const DEFAULT_SHUTDOWN_TIMEOUT_MS = 10_000;
const WILDCARDS = new Set(['0.0.0.0', '::', '[::]', '']);

/** The address other machines can reach this one at, when listening on every interface. */
function defaultHost(listenHost: string): string {
  if (!WILDCARDS.has(listenHost)) return listenHost;
  for (const addresses of Object.values(networkInterfaces()))
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return '127.0.0.1';
}

function checkMs(field: string, value: number | undefined, fallback: number): number {
  const ms = value ?? fallback;
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0)
    throw new ValidationError(field, `must be a number of ms >= 0 (got ${JSON.stringify(ms)})`);
  return ms;
}

function bind(server: Server, address: string, credentials: ServerCredentials): Promise<number> {
  return new Promise((resolve, reject) =>
    server.bindAsync(address, credentials, (error, port) => (error ? reject(error) : resolve(port))),
  );
}

/**
 * Binds `server`, registers the bound address as an instance of `options.instance.service` (the
 * port really bound, also for port 0), and returns a handle whose `shutdown()` deregisters first,
 * waits `drainMs`, then stops the server (`tryShutdown`, forced after `shutdownTimeoutMs`).
 * Add every service to `server` before calling it.
 *
 * With core's `installGracefulShutdown`, pass `beforeExit: () => serving.stop()`: it deregisters
 * and drains, then this stops the server.
 *
 * @throws ValidationError for bad options, before binding. If registering fails the server is
 *   shut down and the error rethrown.
 */
export async function serveGrpc(server: Server, options: ServeGrpcOptions): Promise<GrpcServing> {
  if (typeof options?.discovery?.register !== 'function')
    throw new ValidationError('options.discovery', 'must be a ServiceDiscovery (with register())');
  if (typeof options.instance !== 'object' || options.instance === null)
    throw new ValidationError('options.instance', 'must be an object with at least `service`');
  const listenHost = options.listenHost ?? '0.0.0.0';
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65_535)
    throw new ValidationError(
      'options.port',
      `must be an integer from 0 to 65535 (got ${JSON.stringify(port)})`,
    );
  const drainMs = checkMs('options.drainMs', options.drainMs, DEFAULT_DRAIN_MS);
  const shutdownTimeoutMs = checkMs(
    'options.shutdownTimeoutMs',
    options.shutdownTimeoutMs,
    DEFAULT_SHUTDOWN_TIMEOUT_MS,
  );
  const logger = options.logger ?? silentLogger;
  const host = options.instance?.host ?? defaultHost(listenHost);
  const idFor = (p: number) =>
    options.instance.id ?? `${options.instance.service}-${host}-${p}`.replace(/[^A-Za-z0-9._-]/g, '-');
  // Everything but the port is checked before binding; the port only exists once bound.
  validateInstance({ ...options.instance, host, port: port || 1, id: idFor(port || 1) }, 'options.instance');
  if (options.ttlSeconds !== undefined) validateTtl(options.ttlSeconds);

  const boundPort = await bind(
    server,
    `${isIPv6(listenHost) ? `[${listenHost}]` : listenHost}:${port}`,
    options.credentials ?? ServerCredentials.createInsecure(),
  );
  let registration: Registration;
  try {
    registration = await options.discovery.register(
      { ...options.instance, host, port: boundPort, id: idFor(boundPort) },
      options.ttlSeconds === undefined ? {} : { ttlSeconds: options.ttlSeconds },
    );
  } catch (error) {
    server.forceShutdown();
    throw error;
  }

  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= new Promise<void>((resolve) => {
      const force = setTimeout(() => {
        logger.warn({ shutdownTimeoutMs }, 'calls still running after the shutdown timeout: forcing');
        server.forceShutdown();
        resolve();
      }, shutdownTimeoutMs);
      server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    return stopping;
  };
  let shuttingDown: Promise<void> | undefined;
  const shutdown = () => {
    shuttingDown ??= (async () => {
      logger.info({ id: registration.instance.id, drainMs }, 'deregistering, then draining');
      try {
        await registration.deregister();
      } finally {
        await sleep(drainMs);
        await stop();
      }
    })();
    return shuttingDown;
  };
  return {
    server,
    port: boundPort,
    instance: registration.instance,
    registration,
    shutdown,
    stop,
    [Symbol.asyncDispose]: shutdown,
  };
}
