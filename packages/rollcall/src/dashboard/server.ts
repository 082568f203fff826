import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Backend, ConfigError, type Logger, silentLogger } from '@rollcall/core';
import { DashboardHub } from './hub.js';

/** Options of {@link startDashboard}. */
export interface DashboardOptions {
  /** The backend to show. The dashboard never writes to it and does not close it. */
  backend: Backend;
  /** Address to bind. Default `127.0.0.1`. A non-loopback address needs `token`. */
  host?: string;
  /** Port to bind; 0 picks a free one. Default 7070. */
  port?: number;
  /**
   * Required for a non-loopback `host`, and then asked of every data request (`/events`, `/api/*`)
   * as `Authorization: Bearer <token>` or `?token=<token>`. At least 16 characters. Default: none.
   */
  token?: string;
  /** Configuration keys shown: those under this prefix. Default `''` (every key). */
  kvPrefix?: string;
  /** How often the service list is read (a new service appears within this). Default 500 ms; 5000 for Consul. */
  listIntervalMs?: number;
  /** How often connection state, locks and Consul totals are read. Default 2000 ms; 5000 for Consul. */
  pollIntervalMs?: number;
  /** Instances per service counting unhealthy ones (Consul). Default: none (healthy = total). */
  totals?: () => Promise<Map<string, number>>;
  /** The server the backend talks to, shown on the page (never put credentials here). */
  server?: string;
  logger?: Logger;
}

/** A running dashboard. */
export interface Dashboard extends AsyncDisposable {
  /** `http://host:port/` (without any token). */
  readonly url: string;
  readonly hub: DashboardHub;
  /** Stops serving: ends every browser's stream and every backend read. Idempotent. */
  close(): Promise<void>;
}

/** The smallest token accepted for a dashboard reachable from other machines. */
export const MIN_TOKEN_LENGTH = 16;

const assetsDir = new URL('../../ui/', import.meta.url);
const ASSETS: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

const SECURITY_HEADERS = {
  'Content-Security-Policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
};

/** True for an address only this machine can reach. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127(\.\d{1,3}){3}$/.test(host);
}

function checkOptions(options: DashboardOptions): { host: string; port: number } {
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 7070;
  const issues = [];
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    issues.push({ path: 'port', message: 'must be an integer from 0 to 65535' });
  if (options.token !== undefined && options.token.length < MIN_TOKEN_LENGTH)
    issues.push({ path: 'token', message: `must be at least ${MIN_TOKEN_LENGTH} characters` });
  if (!isLoopback(host) && options.token === undefined)
    issues.push({
      path: 'host',
      message: `'${host}' is reachable from other machines: refusing to serve without a token (set --token or ROLLCALL_UI_TOKEN)`,
    });
  if (issues.length > 0) throw new ConfigError(issues);
  return { host, port };
}

/** Compares in constant time; a length mismatch is a plain mismatch. */
function sameSecret(given: string, expected: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Starts the read-only dashboard: one static page, `/events` (server-sent events fed by the
 * backend's own watches), `/api/state` (the same state as JSON). Binds 127.0.0.1 by default.
 */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const { host, port } = checkOptions(options);
  const consul = options.backend.name === 'consul';
  const hub = new DashboardHub({
    backend: options.backend,
    kvPrefix: options.kvPrefix ?? '',
    listIntervalMs: options.listIntervalMs ?? (consul ? 5000 : 500),
    pollIntervalMs: options.pollIntervalMs ?? (consul ? 5000 : 2000),
    ...(options.totals ? { totals: options.totals } : {}),
    ...(options.server ? { server: options.server } : {}),
    logger: options.logger ?? silentLogger,
  });
  const assets = Object.fromEntries(
    Object.entries(ASSETS).map(([path, a]) => [
      path,
      { body: readFileSync(new URL(a.file, assetsDir)), type: a.type },
    ]),
  );
  const streams = new Set<ServerResponse>();
  let heartbeat: NodeJS.Timeout | undefined;
  let boundPort = port;

  const allowedHost = (req: IncomingMessage): boolean => {
    // Against DNS rebinding: a loopback-only dashboard answers only to loopback names.
    if (!isLoopback(host)) return true;
    const name = (req.headers.host ?? '').replace(/:\d+$/, '');
    return isLoopback(name);
  };
  const authorized = (req: IncomingMessage, url: URL): boolean => {
    if (options.token === undefined) return true;
    const header = req.headers.authorization;
    const given = header?.startsWith('Bearer ') ? header.slice(7) : url.searchParams.get('token');
    return given !== null && given !== undefined && sameSecret(given, options.token);
  };

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    for (const [name, value] of Object.entries(SECURITY_HEADERS)) res.setHeader(name, value);
    const url = new URL(req.url ?? '/', `http://localhost:${boundPort}`);
    const reply = (status: number, text: string) => {
      res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
      res.end(`${text}\n`);
    };
    if (!allowedHost(req)) return reply(403, 'forbidden host');
    if (req.method !== 'GET' && req.method !== 'HEAD') return reply(405, 'read-only: GET only');
    const asset = assets[url.pathname];
    if (asset) {
      // The page itself holds no data: it is served without the token, which it then passes on.
      res.writeHead(200, { 'Content-Type': asset.type, 'Cache-Control': 'no-cache' });
      return res.end(req.method === 'HEAD' ? undefined : asset.body);
    }
    if (url.pathname !== '/events' && url.pathname !== '/api/state') return reply(404, 'not found');
    if (!authorized(req, url)) return reply(401, 'token required');
    if (url.pathname === '/api/state') {
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
      return res.end(JSON.stringify(hub.state()));
    }
    res.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-store',
      Connection: 'keep-alive',
    });
    res.write('retry: 2000\n\n');
    streams.add(res);
    // A comment now and then keeps proxies from closing an idle stream: one timer for every stream.
    heartbeat ??= setInterval(() => {
      for (const stream of streams) stream.write(': keep-alive\n\n');
    }, 15_000);
    const disconnect = hub.connect((event, json) => res.write(`event: ${event}\ndata: ${json}\n\n`));
    res.on('close', () => {
      streams.delete(res);
      if (streams.size === 0) {
        clearInterval(heartbeat);
        heartbeat = undefined;
      }
      disconnect();
    });
  };

  const server: Server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  boundPort = (server.address() as AddressInfo).port;
  const shownHost = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      clearInterval(heartbeat);
      for (const res of streams) res.end();
      hub.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    })();
    return closing;
  };
  return { url: `http://${shownHost}:${boundPort}/`, hub, close, [Symbol.asyncDispose]: close };
}
