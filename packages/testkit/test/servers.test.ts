import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import {
  type ConsulAgent,
  type CountingHttpProxy,
  type EtcdCluster,
  type EtcdServer,
  freePort,
  startConsul,
  startCountingHttpProxy,
  startEtcd,
  startEtcdCluster,
  startTcpProxy,
  type TcpProxy,
  waitFor,
} from '../src/servers/index.js';
import { RESERVATIONS_DIR } from '../src/servers/ports.js';

const timings: Record<string, number> = {};

async function timed<T>(label: string, f: () => Promise<T>): Promise<T> {
  const start = performance.now();
  try {
    return await f();
  } finally {
    timings[label] = Math.round(performance.now() - start);
  }
}

/** GET with a short deadline over a fresh connection; resolves with status + body. */
async function get(url: string, timeoutMs = 1_000, headers: Record<string, string> = {}) {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers });
  return { status: res.status, body: await res.text() };
}

/** A raw HTTP GET on a new TCP connection (no pooling), resolving with the body. */
function rawGet(port: number, path: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve(body));
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

afterAll(() => {
  console.log(`[servers.test] timings (ms): ${JSON.stringify(timings)}`);
});

/** The kernel's ephemeral port range, which outgoing connections take their source ports from. */
function ephemeralRange(): [number, number] {
  return readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number) as [
    number,
    number,
  ];
}

/** The file recording who holds `port`. */
const reservation = (port: number) => join(RESERVATIONS_DIR, String(port));

/**
 * A node process whose only work is to reserve `count` ports with `freePort` (from the built
 * package), print them as one JSON line, and hold them until its stdin ends (`release()`, which
 * resolves with its exit code).
 */
function reservingChild(count: number, env: NodeJS.ProcessEnv = process.env) {
  const util = JSON.stringify(new URL('../dist/servers/util.js', import.meta.url).href);
  const script = `
    const { freePort } = await import(${util});
    const ports = [];
    for (let i = 0; i < ${count}; i++) ports.push(await freePort());
    process.stdout.write(JSON.stringify(ports) + '\\n');
    process.stdin.resume();
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const ports = new Promise<number[]>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(JSON.parse(out) as number[]);
    });
    void exit.then((code) => reject(new Error(`child exited with ${code} before printing: ${stderr}`)));
  });
  const release = () => {
    child.stdin?.end();
    return exit;
  };
  return { child, ports, exit, release };
}

describe('utilities', () => {
  it('freePort returns a bindable loopback port', async () => {
    const port = await freePort();
    expect(port).toBeGreaterThan(0);
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('freePort never gives a port from the kernel ephemeral range, which outgoing connections draw from', async () => {
    const [low, high] = ephemeralRange();
    const ports = await Promise.all(Array.from({ length: 40 }, () => freePort()));
    expect(new Set(ports).size).toBe(40);
    for (const port of ports) expect(port < low || port > high, `port ${port} in ${low}-${high}`).toBe(true);
  });

  it('two processes reserving ports at once never get the same one; one that exits gives its ports back', async () => {
    const children = [reservingChild(150), reservingChild(150)];
    const [a, b, mine] = await Promise.all([
      children[0]!.ports,
      children[1]!.ports,
      Promise.all(Array.from({ length: 150 }, () => freePort())),
    ]);
    expect(new Set([...a, ...b, ...mine]).size).toBe(450);
    for (const port of mine) expect(readFileSync(reservation(port), 'utf8')).toBe(String(process.pid));
    for (const port of a) expect(existsSync(reservation(port))).toBe(true);
    await Promise.all(children.map((child) => child.release()));
    // The children exited: their reservations were removed, so the ports can be reserved again.
    for (const port of [...a, ...b]) expect(existsSync(reservation(port))).toBe(false);
  });

  it('the reservations of a process killed with SIGKILL (no exit handler ran) are swept by the next process', async () => {
    const killed = reservingChild(20);
    const ports = await killed.ports;
    killed.child.kill('SIGKILL');
    await killed.exit;
    for (const port of ports) expect(existsSync(reservation(port))).toBe(true);
    // A process sweeps on its first reservation, unless another one is sweeping at that moment.
    await waitFor(
      async () => {
        const next = reservingChild(1);
        await next.ports;
        await next.release();
        return ports.every((port) => !existsSync(reservation(port)));
      },
      { timeoutMs: 20_000, intervalMs: 0, message: 'the killed process reservations were not swept' },
    );
  });

  it('a proxy gives its port back when it closes', async () => {
    const proxy = await startTcpProxy({ host: '127.0.0.1', port: 1 });
    expect(readFileSync(reservation(proxy.port), 'utf8')).toBe(String(process.pid));
    await proxy.close();
    expect(existsSync(reservation(proxy.port))).toBe(false);
  });

  it('with a temp directory it cannot write, freePort still gives ports outside the ephemeral range', async () => {
    const [low, high] = ephemeralRange();
    // A file as the temp dir: nothing can be made under it, even by root.
    const scratch = mkdtempSync(join(tmpdir(), 'rollcall-ports-test-'));
    onTestFinished(() => rmSync(scratch, { recursive: true, force: true }));
    const notADir = join(scratch, 'file');
    writeFileSync(notADir, '');
    const child = reservingChild(5, { ...process.env, TMPDIR: notADir });
    const ports = await child.ports;
    expect(await child.release()).toBe(0);
    expect(new Set(ports).size).toBe(5);
    for (const port of ports) expect(port < low || port > high, `port ${port}`).toBe(true);
  });

  it('waitFor resolves when the condition holds and throws its message on timeout', async () => {
    let n = 0;
    await waitFor(() => ++n >= 3, { intervalMs: 1, timeoutMs: 1_000 });
    expect(n).toBe(3);
    await expect(
      waitFor(
        () => {
          throw new Error('boom');
        },
        { timeoutMs: 50, intervalMs: 10, message: 'never' },
      ),
    ).rejects.toThrow(/never: not met within 50 ms \(last error: boom\)/);
  });
});

describe('etcd (single member)', () => {
  let etcd: EtcdServer;

  beforeAll(async () => {
    etcd = await timed('etcdStart', () => startEtcd());
  });

  afterAll(async () => {
    await etcd?.stop();
  });

  it('serves put/get on a loopback client URL with its own data dir and log', async () => {
    expect(etcd.clientUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(etcd.endpoints).toEqual([etcd.clientUrl]);
    expect(etcd.pid).toBeTypeOf('number');
    expect(existsSync(etcd.dataDir)).toBe(true);
    expect(await etcd.etcdctl(['put', 'greeting', 'hello'])).toContain('OK');
    expect(await etcd.etcdctl(['get', 'greeting', '--print-value-only'])).toBe('hello\n');
    expect(readFileSync(etcd.logFile, 'utf8')).toContain('"msg":"serving client traffic insecurely');
  });

  it('kill + restart keeps data, on the same URL', async () => {
    await etcd.etcdctl(['put', 'durable', 'yes']);
    const oldPid = etcd.pid;
    await etcd.kill();
    expect(etcd.pid).toBeUndefined();
    expect(await etcd.isHealthy(300)).toBe(false);
    await timed('etcdRestart', () => etcd.restart());
    expect(etcd.pid).not.toBe(oldPid);
    expect(await etcd.etcdctl(['get', 'durable', '--print-value-only'])).toBe('yes\n');
  });

  it('pause makes /health stop answering; resume brings it back', async () => {
    etcd.pause();
    await expect(get(`${etcd.clientUrl}/health`, 300)).rejects.toThrow();
    etcd.resume();
    await waitFor(() => etcd.isHealthy(500), { timeoutMs: 5_000, message: 'etcd healthy after resume' });
    expect(JSON.parse((await get(`${etcd.clientUrl}/health`)).body)).toMatchObject({ health: 'true' });
  });

  it('compact compacts at the current revision and returns it', async () => {
    await etcd.etcdctl(['put', 'c', '1']);
    const first = await etcd.revision();
    await etcd.etcdctl(['put', 'c', '2']);
    const current = await etcd.revision();
    expect(current).toBe(first + 1n);
    expect(await etcd.compact()).toBe(current);
    await expect(etcd.etcdctl(['get', 'c', `--rev=${first}`])).rejects.toThrow(/compacted/);
    expect(await etcd.etcdctl(['get', 'c', '--print-value-only'])).toBe('2\n');
    expect(await etcd.compact()).toBe(current); // again, same revision: not an error
  });

  it('enableAuth: etcdctl without credentials fails, with them works', async () => {
    await etcd.enableAuth({ username: 'app', password: 's3cret' });
    await expect(etcd.etcdctl(['get', 'greeting'])).rejects.toThrow(/user name is empty|permission denied/);
    await expect(etcd.etcdctl(['get', 'greeting'], { user: 'app:wrong' })).rejects.toThrow(
      /authentication failed/,
    );
    expect(await etcd.etcdctl(['put', 'authed', 'ok'], { user: 'app:s3cret' })).toContain('OK');
    expect(
      await etcd.etcdctl(['get', 'authed', '--print-value-only'], { user: 'app', password: 's3cret' }),
    ).toBe('ok\n');
    // Internal helpers switch to the root credentials.
    expect(await etcd.compact()).toBeGreaterThan(0n);
  });

  it('stop is idempotent, removes the data dir, and works as asyncDispose', async () => {
    const other = await startEtcd({ name: 'disposable' });
    const { dataDir } = other;
    await other[Symbol.asyncDispose]();
    await other.stop();
    expect(other.pid).toBeUndefined();
    expect(existsSync(dataDir)).toBe(false);
    await expect(other.restart()).rejects.toThrow(/stopped/);
  });

  it('a failed start throws with the tail of the server log', async () => {
    await expect(startEtcd({ extraArgs: ['--no-such-flag'] })).rejects.toThrow(
      /exited early[\s\S]*Last lines of .*etcd\.log:[\s\S]*no-such-flag/,
    );
  });

  it('tls: serves https with generated certificates and client-cert auth', async () => {
    const secure = await timed('etcdTlsStart', () => startEtcd({ tls: true, clientCertAuth: true }));
    try {
      expect(secure.clientUrl).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      expect(secure.tls).toBeDefined();
      for (const f of Object.values(secure.tls ?? {})) expect(existsSync(f)).toBe(true);
      expect(await secure.isHealthy()).toBe(true);
      expect(await secure.etcdctl(['put', 'tls', 'on'])).toContain('OK');
      expect(await secure.etcdctl(['get', 'tls', '--print-value-only'])).toBe('on\n');
      // Plain HTTP to the TLS port does not work.
      await expect(get(`${secure.clientUrl.replace('https:', 'http:')}/health`, 500)).rejects.toThrow();
    } finally {
      await secure.stop();
    }
  });
});

describe('etcd cluster', () => {
  let cluster: EtcdCluster;

  beforeAll(async () => {
    cluster = await timed('clusterStart', () => startEtcdCluster());
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it('starts 3 healthy members that agree on one leader', async () => {
    expect(cluster.members).toHaveLength(3);
    expect(cluster.endpoints).toEqual(cluster.members.map((m) => m.clientUrl));
    for (const m of cluster.members) expect(await m.isHealthy()).toBe(true);
    const leader = await cluster.leader();
    expect(cluster.members).toContain(leader);
    expect(await cluster.etcdctl(['put', 'k', 'v0'])).toContain('OK');
  });

  it('after SIGKILL of the leader a write through the other endpoints succeeds; the member rejoins', async () => {
    const leader = await cluster.leader();
    await leader.kill();
    const remaining = cluster.runningEndpoints();
    expect(remaining).toHaveLength(2);
    const elapsed = await waitFor(
      async () => {
        await cluster.etcdctl(['put', 'k', 'v1'], {
          endpoints: remaining,
          timeoutMs: 1_000,
          dialTimeoutMs: 500,
        });
        return true;
      },
      { timeoutMs: 15_000, intervalMs: 50, message: 'write after leader kill' },
    );
    timings.leaderKillRecovery = Math.round(elapsed);
    const next = await cluster.leader();
    expect(next).not.toBe(leader);

    await timed('memberRejoin', () => leader.restart());
    // Serializable read served from the rejoined member's own store.
    await waitFor(
      async () =>
        (await leader.etcdctl(['get', 'k', '--print-value-only', '--consistency=s'])).trim() === 'v1',
      { timeoutMs: 10_000, message: 'rejoined member caught up' },
    );
  });
});

describe('consul dev agent', () => {
  let consul: ConsulAgent;

  beforeAll(async () => {
    consul = await timed('consulStart', () => startConsul());
  });

  afterAll(async () => {
    await consul?.stop();
  });

  const register = (agent: ConsulAgent, id: string, headers: Record<string, string> = {}) =>
    fetch(`${agent.url}/v1/agent/service/register`, {
      method: 'PUT',
      headers,
      body: JSON.stringify({ ID: id, Name: 'orders', Address: '127.0.0.1', Port: 8080 }),
      signal: AbortSignal.timeout(2_000),
    });

  const healthyIds = async (agent: ConsulAgent): Promise<string[]> => {
    const res = await get(`${agent.url}/v1/health/service/orders`, 2_000, agent.headers());
    expect(res.status).toBe(200);
    return (JSON.parse(res.body) as Array<{ Service: { ID: string } }>).map((e) => e.Service.ID);
  };

  it('registers a service over HTTP and lists it in /v1/health/service', async () => {
    expect(consul.address).toBe(`127.0.0.1:${consul.port}`);
    expect(consul.masterToken).toBeUndefined();
    expect((await register(consul, 'orders-1')).status).toBe(200);
    expect(await healthyIds(consul)).toEqual(['orders-1']);
  });

  it('restart is a new agent on the same port: the registration is gone', async () => {
    const { port, pid } = consul;
    await timed('consulRestart', () => consul.restart());
    expect(consul.port).toBe(port);
    expect(consul.pid).not.toBe(pid);
    expect(await healthyIds(consul)).toEqual([]);
  });

  it('pause stalls the HTTP API; resume brings it back', async () => {
    consul.pause();
    await expect(get(`${consul.url}/v1/status/leader`, 300)).rejects.toThrow();
    consul.resume();
    await waitFor(() => consul.isReady(500), { timeoutMs: 5_000, message: 'consul ready after resume' });
  });

  it('with acl: 403 without a token, 200 with the master token', async () => {
    const secured = await timed('consulAclStart', () => startConsul({ acl: true }));
    try {
      expect(secured.masterToken).toMatch(/^[0-9a-f-]{36}$/);
      expect((await get(`${secured.url}/v1/agent/self`)).status).toBe(403);
      expect((await register(secured, 'orders-1')).status).toBe(403);
      expect((await get(`${secured.url}/v1/agent/self`, 1_000, secured.headers())).status).toBe(200);
      expect((await register(secured, 'orders-1', secured.headers())).status).toBe(200);
      expect(await healthyIds(secured)).toEqual(['orders-1']);
    } finally {
      await secured.stop();
    }
  });

  describe('counting HTTP proxy', () => {
    let proxy: CountingHttpProxy;

    beforeAll(async () => {
      proxy = await startCountingHttpProxy({ host: consul.host, port: consul.port });
    });

    afterAll(async () => {
      await proxy?.close();
    });

    it('forwards to the agent and counts requests with method and path+query', async () => {
      expect((await get(`${proxy.url}/v1/status/leader`, 5_000)).body).toMatch(/"127\.0\.0\.1:\d+"/);
      const reg = await fetch(`${proxy.url}/v1/agent/service/register`, {
        method: 'PUT',
        body: JSON.stringify({ ID: 'p-1', Name: 'proxied' }),
      });
      expect(reg.status).toBe(200);
      const first = await fetch(`${proxy.url}/v1/health/service/proxied`);
      const index = first.headers.get('x-consul-index');
      expect(index).toMatch(/^\d+$/);
      expect(await first.json()).toHaveLength(1);
      // A blocking query streams through the proxy and returns after its wait time.
      const start = performance.now();
      const blocked = await fetch(`${proxy.url}/v1/health/service/proxied?index=${index}&wait=300ms`);
      expect(blocked.status).toBe(200);
      await blocked.text();
      expect(performance.now() - start).toBeGreaterThanOrEqual(250);

      expect(proxy.count()).toBe(4);
      expect(proxy.count((r) => r.method === 'PUT')).toBe(1);
      expect(proxy.count((r) => r.path.startsWith('/v1/health/service/proxied'))).toBe(2);
      expect(proxy.requests.at(-1)?.path).toBe(`/v1/health/service/proxied?index=${index}&wait=300ms`);
      expect(proxy.requests.at(-1)?.at).toBeLessThanOrEqual(Date.now());
      proxy.reset();
      expect(proxy.count()).toBe(0);
    });
  });
});

describe('TCP proxy in front of etcd', () => {
  let etcd: EtcdServer;
  let proxy: TcpProxy;

  beforeAll(async () => {
    etcd = await startEtcd({ name: 'proxied' });
    proxy = await startTcpProxy({ host: '127.0.0.1', port: etcd.clientPort });
  });

  afterAll(async () => {
    await proxy?.close();
    await etcd?.stop();
  });

  const viaProxy = (args: string[]) =>
    etcd.etcdctl(args, { endpoints: [proxy.url], timeoutMs: 700, dialTimeoutMs: 500 });

  it('forwards HTTP and gRPC (etcdctl) and counts connections', async () => {
    expect(proxy.address).toBe(`127.0.0.1:${proxy.port}`);
    expect(JSON.parse(await rawGet(proxy.port, '/health', 1_000))).toMatchObject({ health: 'true' });
    expect(await viaProxy(['put', 'via', 'proxy'])).toContain('OK');
    expect(await viaProxy(['get', 'via', '--print-value-only'])).toBe('proxy\n');
    expect(proxy.totalConnections).toBeGreaterThanOrEqual(3);
    await waitFor(() => proxy.connections === 0, { timeoutMs: 2_000, message: 'connections closed' });
  });

  it('blackhole stalls requests (bytes held back), heal delivers them and restores service', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: proxy.port });
    await new Promise((r) => socket.once('connect', r));
    await waitFor(() => proxy.connections === 1, { timeoutMs: 1_000, message: 'one connection' });

    proxy.blackhole();
    await expect(get(`${proxy.url}/health`, 300)).rejects.toThrow();
    await expect(viaProxy(['get', 'via'])).rejects.toThrow();
    // A request written during the partition, on a connection opened before it...
    let response = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => {
      response += c;
    });
    socket.write('GET /health HTTP/1.1\r\nHost: etcd\r\nConnection: close\r\n\r\n');
    // ...and one on a connection opened during it.
    const late = rawGet(proxy.port, '/health', 5_000);
    await new Promise((r) => setTimeout(r, 200));
    expect(response).toBe('');

    proxy.heal();
    await waitFor(() => response.includes('"health":"true"'), {
      timeoutMs: 2_000,
      message: 'held bytes delivered',
    });
    expect(JSON.parse(await late)).toMatchObject({ health: 'true' });
    expect(await viaProxy(['get', 'via', '--print-value-only'])).toBe('proxy\n');
    socket.destroy();
  });

  it('reset destroys open connections; the listener stays', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: proxy.port });
    const closed = new Promise<string>((r) => {
      socket.on('error', (e: NodeJS.ErrnoException) => r(e.code ?? 'error'));
      socket.on('close', () => r('close'));
    });
    await new Promise((r) => socket.once('connect', r));
    await waitFor(() => proxy.connections >= 1, { timeoutMs: 1_000, message: 'connected' });
    proxy.reset();
    expect(['ECONNRESET', 'close']).toContain(await closed);
    expect(proxy.connections).toBe(0);
    expect(await viaProxy(['get', 'via', '--print-value-only'])).toBe('proxy\n');
  });

  it('refuse closes the listener (ECONNREFUSED); accept listens again on the same port', async () => {
    const port = proxy.port;
    proxy.refuse();
    const err = await new Promise<NodeJS.ErrnoException>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.on('connect', () => resolve(Object.assign(new Error('connected'), { code: 'CONNECTED' })));
      s.on('error', resolve);
    });
    expect(err.code).toBe('ECONNREFUSED');
    await proxy.accept();
    expect(proxy.port).toBe(port);
    expect(JSON.parse(await rawGet(port, '/health', 1_000))).toMatchObject({ health: 'true' });
  });
});
