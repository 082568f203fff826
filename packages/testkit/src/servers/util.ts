import { existsSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eventually } from '../recorder.js';
import { reservePorts } from './ports.js';

/** Loopback host every harness binds to. */
export const LOOPBACK = '127.0.0.1';

/**
 * Returns a TCP port on 127.0.0.1 that is free now and stays reserved for this process: it lies
 * outside the kernel's ephemeral range (so no outgoing connection is given it) and no other
 * testkit process will hand it out until this process exits. Use it for a server you start
 * yourself, or as an endpoint where nothing listens.
 */
export async function freePort(): Promise<number> {
  const [port] = await reservePorts(1);
  return port as number;
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
