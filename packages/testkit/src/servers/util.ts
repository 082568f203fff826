import * as dgram from 'node:dgram';
import { existsSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually } from '../recorder.js';

/** Loopback host every harness binds to. */
export const LOOPBACK = '127.0.0.1';

/**
 * Returns a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it via
 * `net.createServer().listen(0)`, then the listener is closed).
 *
 * Another process may take the port before you bind it; the server harnesses retry their first
 * start with fresh ports when that happens.
 */
export async function freePort(): Promise<number> {
  return await new Promise<number>((resolvePort, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, LOOPBACK, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('freePort: listener has no TCP address'));
        return;
      }
      server.close(() => resolvePort(address.port));
    });
  });
}

async function udpFree(port: number): Promise<boolean> {
  return await new Promise<boolean>((done) => {
    const socket = dgram.createSocket('udp4');
    socket.once('error', () => {
      socket.close();
      done(false);
    });
    socket.bind(port, LOOPBACK, () => socket.close(() => done(true)));
  });
}

/**
 * Returns `count` distinct free loopback ports. With `udp: true` each port is also free for UDP
 * (Consul's DNS and Serf ports use both).
 *
 * @internal
 */
export async function freePorts(count: number, options: { udp?: boolean } = {}): Promise<number[]> {
  const ports = new Set<number>();
  let attempts = 0;
  while (ports.size < count) {
    if (++attempts > count * 20) throw new Error(`freePorts: could not find ${count} free ports`);
    const port = await freePort();
    if (ports.has(port)) continue;
    if (options.udp && !(await udpFree(port))) continue;
    ports.add(port);
  }
  return [...ports];
}

/** Options of {@link waitFor}. */
export interface WaitForOptions {
  /** Give up after this long. Default `10_000` ms. */
  timeoutMs?: number;
  /** Pause between two polls. Default `50` ms. */
  intervalMs?: number;
  /** Message of the Error thrown on timeout. Default `'waitFor: condition not met'`. */
  message?: string;
}

/**
 * Polls `condition` until it returns (or resolves to) `true`, or throws once `timeoutMs` has
 * passed. A condition that throws counts as `false`; the last error is appended to the timeout
 * message. Use it in tests instead of fixed sleeps.
 *
 * @returns the elapsed time in milliseconds.
 */
export async function waitFor(
  condition: () => boolean | Promise<boolean>,
  options: WaitForOptions = {},
): Promise<number> {
  const start = performance.now();
  await eventually(async () => (await condition()) === true, {
    intervalMs: 50,
    message: 'waitFor: condition not met',
    ...options,
  });
  return performance.now() - start;
}

/** @internal */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

let cachedRepoRoot: string | null | undefined;

/**
 * The monorepo root: the nearest directory containing `turbo.json`, walking up from this module
 * (then from `process.cwd()`). `undefined` if there is none.
 */
export function repoRoot(): string | undefined {
  if (cachedRepoRoot !== undefined) return cachedRepoRoot ?? undefined;
  const starts = [dirname(fileURLToPath(import.meta.url)), process.cwd()];
  for (const start of starts) {
    let dir = resolve(start);
    for (;;) {
      if (existsSync(join(dir, 'turbo.json'))) {
        cachedRepoRoot = dir;
        return dir;
      }
      const parent = dirname(dir);
      if (parent === dir) break;
      dir = parent;
    }
  }
  cachedRepoRoot = null;
  return undefined;
}

/** Options of {@link httpGet}. @internal */
export interface HttpGetOptions {
  timeoutMs?: number;
  headers?: Record<string, string>;
  /** TLS material for https URLs (file contents). */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
}

/**
 * Minimal GET with a timeout over node:http / node:https (fetch cannot take a private CA without
 * undici). Resolves with status and body, rejects on network errors or timeout.
 *
 * @internal
 */
export function httpGet(
  url: string,
  options: HttpGetOptions = {},
): Promise<{ status: number; body: string }> {
  const { timeoutMs = 1_000, headers = {}, tls } = options;
  return new Promise((resolveGet, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const req = mod.request(
      u,
      { method: 'GET', headers, agent: false, ...(u.protocol === 'https:' ? (tls ?? {}) : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolveGet({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      },
    );
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** Resolves true if a TCP connection to host:port succeeds within `timeoutMs`. @internal */
export function canConnect(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((done) => {
    const socket = net.connect({ host, port });
    const finish = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
  });
}
