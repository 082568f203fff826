import * as dgram from 'node:dgram';
import {
  mkdirSync,
  readdirSync,
  readFileSync,
  rmdirSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Loopback ports for servers that must come back on the same port after a kill (`restart()`,
 * a proxy's `accept()`).
 *
 * Why not `listen(0)`: the kernel picks those from its ephemeral range, the same range it takes
 * the source port of every outgoing connection from. While a server is down, any connection made
 * by any process (a test client, another test file's server) can be given its port, and the
 * restart fails with "address already in use" (seen in CI: Consul's Serf WAN port, taken during
 * a restart). So ports are picked outside the ephemeral range, and every testkit process records
 * the ports it holds in a shared directory, so two test files running side by side never pick the
 * same one.
 */

const HOST = '127.0.0.1';
/** Lowest port considered: below it sit the well-known and most registered service ports. */
const LOWEST = 10_000;
/** A reservation older than this is swept even if its owner's pid is alive (the pid was reused). */
const STALE_AFTER_MS = 6 * 60 * 60 * 1000;
/**
 * Where reservations are recorded, one file per port holding its owner's pid. Per user: another
 * user's files could be neither read nor removed.
 *
 * @internal
 */
export const RESERVATIONS_DIR = join(tmpdir(), `rollcall-testkit-ports-${process.getuid?.() ?? 'user'}`);
const DIR = RESERVATIONS_DIR;

/** Ports this process holds (released on `releasePorts`, or when the process exits). */
const held = new Set<number>();
/** The held ports that have a file in {@link DIR} (all of them, unless the directory is unusable). */
const recorded = new Set<number>();
/** False once {@link DIR} turned out unusable: ports are then only checked, not shared. */
let recording = true;
let started = false;

/** The kernel's ephemeral port range (`net.ipv4.ip_local_port_range`); Linux's default if unreadable. */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low as number, high as number];
  } catch {
    // not Linux: assume Linux's default (other systems' ranges differ; testkit is tested on Linux)
  }
  return [32_768, 60_999];
}

/** The port ranges outside the ephemeral range, widest first; empty if there are none worth using. */
function candidateRanges(): Array<[number, number]> {
  const [low, high] = ephemeralRange();
  const ranges: Array<[number, number]> = [];
  if (low - 1 - LOWEST >= 1_000) ranges.push([LOWEST, low - 1]);
  if (65_535 - (high + 1) >= 1_000) ranges.push([high + 1, 65_535]);
  return ranges.sort((a, b) => b[1] - b[0] - (a[1] - a[0]));
}

function randomIn([low, high]: [number, number]): number {
  return low + Math.floor(Math.random() * (high - low + 1));
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Records `port` as this process's; false if another testkit process holds it. */
function claim(port: number): boolean {
  if (recording) {
    try {
      writeFileSync(join(DIR, String(port)), String(process.pid), { flag: 'wx' });
      recorded.add(port);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      recording = false; // a full or read-only temp dir: still outside the ephemeral range
    }
  }
  held.add(port);
  return true;
}

/**
 * Removes the reservations of processes that died without releasing them (SIGKILLed workers).
 * One process sweeps at a time (the `.sweep` directory is the lock), and only a sweep removes
 * another process's file, so a reservation is never taken over by two processes at once.
 */
function sweep(): void {
  const lock = join(DIR, '.sweep');
  try {
    mkdirSync(lock);
  } catch {
    try {
      if (Date.now() - statSync(lock).mtimeMs > 60_000) rmdirSync(lock); // its sweeper died
    } catch {
      // removed meanwhile
    }
    return;
  }
  try {
    for (const name of readdirSync(DIR)) {
      if (!/^\d+$/.test(name)) continue;
      const file = join(DIR, name);
      try {
        const owner = Number(readFileSync(file, 'utf8'));
        const old = Date.now() - statSync(file).mtimeMs > STALE_AFTER_MS;
        if (owner !== process.pid && (old || !isAlive(owner))) unlinkSync(file);
      } catch {
        // released meanwhile
      }
    }
  } finally {
    rmdirSync(lock);
  }
}

function unclaim(port: number): void {
  held.delete(port);
  if (!recorded.delete(port)) return;
  try {
    unlinkSync(join(DIR, String(port)));
  } catch {
    // already gone
  }
}

/** On first use: make the directory, sweep it, and give this process's ports back when it exits. */
function start(): void {
  if (started) return;
  started = true;
  try {
    // Not `recursive`: the temp dir exists, and Node's recursive mkdir never returns under /proc.
    try {
      mkdirSync(DIR);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    sweep();
  } catch {
    recording = false;
  }
  process.once('exit', () => {
    for (const port of held) unclaim(port);
  });
}

function tcpFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => done(false));
    server.listen(port, HOST, () => server.close(() => done(true)));
  });
}

function udpFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = dgram.createSocket('udp4');
    socket.unref();
    socket.once('error', () => {
      socket.close();
      done(false);
    });
    socket.bind(port, HOST, () => socket.close(() => done(true)));
  });
}

/** A port the kernel picks (`listen(0)`): the fallback when no range lies outside the ephemeral one. */
function kernelPort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, HOST, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error('reservePorts: listener has no TCP address'));
        return;
      }
      server.close(() => resolvePort(address.port));
    });
  });
}

/**
 * Reserves `count` distinct loopback ports that are free now (TCP, and UDP with `udp: true`),
 * outside the kernel's ephemeral range and not held by another testkit process. They stay this
 * process's until {@link releasePorts} or its exit.
 *
 * @internal
 */
export async function reservePorts(count: number, options: { udp?: boolean } = {}): Promise<number[]> {
  const ranges = candidateRanges();
  start();
  const ports: number[] = [];
  for (let attempts = 0; ports.length < count; attempts++) {
    if (attempts > count * 50) {
      releasePorts(ports);
      throw new Error(`reservePorts: could not find ${count} free loopback ports`);
    }
    const range = ranges[attempts % Math.max(ranges.length, 1)];
    const port = range ? randomIn(range) : await kernelPort();
    if (held.has(port) || !claim(port)) continue;
    if ((await tcpFree(port)) && (!options.udp || (await udpFree(port)))) ports.push(port);
    else unclaim(port);
  }
  return ports;
}

/**
 * Gives back ports from {@link reservePorts} once nothing will bind them again.
 *
 * @internal
 */
export function releasePorts(ports: Iterable<number>): void {
  for (const port of ports) unclaim(port);
}
