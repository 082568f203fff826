import {
  BackendUnavailableError,
  ConfigError,
  PermissionDeniedError,
  RollcallError,
  type ServiceInstance,
} from '@rollcall/core';
import { type EtcdServer, Recorder, recordingLogger, startEtcd, uniqueService } from '@rollcall/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEtcdBackend, type EtcdBackend, type EtcdOptions } from '../src/index.js';

const instance = (service: string, id: string): ServiceInstance => ({
  id,
  service,
  host: '127.0.0.1',
  port: 7000,
});
const PASSWORD = 'Tr0ub4dor&3-horse';

/** Everything an error could leak through: message, stack, cause chain, JSON. */
function everything(error: unknown): string {
  const parts: string[] = [];
  let e: unknown = error;
  for (let depth = 0; e && depth < 5; depth++) {
    if (e instanceof Error) {
      parts.push(e.message, String(e.stack), JSON.stringify(e));
      e = e.cause;
    } else {
      parts.push(String(e));
      break;
    }
  }
  return parts.join('\n');
}

describe('etcd backend with authentication', () => {
  let etcd: EtcdServer;
  const clients: EtcdBackend[] = [];
  const client = (options: EtcdOptions) => {
    const c = createEtcdBackend({ endpoints: etcd.endpoints, ...options });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    etcd = await startEtcd();
    await etcd.enableAuth({ username: 'app', password: PASSWORD, rootPassword: `root-${PASSWORD}` });
  });
  afterAll(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await etcd?.stop();
  });

  it('the right password works for registration, watches and kv', async () => {
    const a = client({ auth: { username: 'app', password: PASSWORD } });
    const b = client({ auth: { username: 'app', password: PASSWORD } });
    const service = uniqueService('auth');
    const watch = new Recorder(b.discovery.watch(service));
    await watch.next((e) => e.type === 'sync');
    await a.discovery.register(instance(service, 'i1'), { ttlSeconds: 5 });
    await watch.next((e) => e.snapshot.instances.some((i) => i.id === 'i1'));
    await a.kv.put('configs/auth/x', '1');
    expect(await b.kv.get('configs/auth/x')).toBe('1');
    const lock = await a.locks.acquire(`${service}-lock`, { ttlSeconds: 5 });
    expect(await b.locks.tryAcquire(`${service}-lock`, { ttlSeconds: 5 })).toBeUndefined();
    await lock.release();
    await (await a.locks.campaign(`${service}-election`, 'a', { ttlSeconds: 5 })).resign();
    await a.close();
    expect((await b.discovery.getInstances(service)).instances).toEqual([]);
  });

  it('a wrong password gives PermissionDeniedError whose message, stack and cause never contain the password', async () => {
    const logger = recordingLogger();
    const wrong = `${PASSWORD}-wrong`;
    const c = client({ auth: { username: 'app', password: wrong }, logger, callTimeoutMs: 2000 });
    const service = uniqueService('denied');
    const errors = [
      await c.discovery.register(instance(service, 'i1')).catch((e: unknown) => e),
      await c.discovery.getInstances(service).catch((e: unknown) => e),
      await c.kv.get('configs/x').catch((e: unknown) => e),
      await c.kv.put('configs/x', 'v').catch((e: unknown) => e),
      await c.discovery.listServices().catch((e: unknown) => e),
      await c.locks.acquire(`${service}-lock`, { timeoutMs: 5000 }).catch((e: unknown) => e),
      await c.locks.tryAcquire(`${service}-lock`).catch((e: unknown) => e),
      await c.locks.leader(`${service}-election`).catch((e: unknown) => e),
    ];
    for (const error of errors) {
      expect(error).toBeInstanceOf(PermissionDeniedError);
      expect(error).toBeInstanceOf(RollcallError);
      expect((error as PermissionDeniedError).code).toBe('ERR_PERMISSION_DENIED');
      expect((error as Error).message).toMatch(/authentication failed/);
      expect(everything(error)).not.toContain(wrong);
      expect(everything(error)).not.toContain(PASSWORD);
    }
    const health = await c.discovery.health(3000);
    expect(health.reachable).toBe(false);
    expect(health.error).not.toContain(wrong);
    expect(logger.text()).not.toContain(wrong);
    expect(logger.text()).not.toContain(PASSWORD);
  });

  it('no credentials against a server with auth on is refused as PermissionDeniedError too', async () => {
    const c = client({ callTimeoutMs: 2000 });
    await expect(c.kv.put('configs/x', 'v')).rejects.toBeInstanceOf(PermissionDeniedError);
  });

  it('a user who may not write the lock keys gets PermissionDeniedError from acquire, not a hang', async () => {
    const root = { user: 'root', password: `root-${PASSWORD}` };
    await etcd.etcdctl(['role', 'add', 'reader'], root);
    await etcd.etcdctl(['role', 'grant-permission', 'reader', 'read', '--prefix=true', '/'], root);
    await etcd.etcdctl(['user', 'add', `reader:${PASSWORD}`], root);
    await etcd.etcdctl(['user', 'grant-role', 'reader', 'reader'], root);
    const c = client({ auth: { username: 'reader', password: PASSWORD }, callTimeoutMs: 2000 });
    const lock = uniqueService('denied-lock');
    expect(await c.locks.leader(lock)).toBeUndefined(); // reading is allowed
    for (const error of [
      await c.locks.acquire(lock, { timeoutMs: 5000 }).catch((e: unknown) => e),
      await c.locks.tryAcquire(lock).catch((e: unknown) => e),
    ]) {
      expect(error).toBeInstanceOf(PermissionDeniedError);
      expect(everything(error)).not.toContain(PASSWORD);
    }
  });

  it('option errors never echo the password', () => {
    let error: unknown;
    try {
      createEtcdBackend({ endpoints: ['ftp://nope'], auth: { username: '', password: PASSWORD } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect(everything(error)).not.toContain(PASSWORD);
  });
});

describe('etcd backend over TLS with client certificates', () => {
  let etcd: EtcdServer;
  const clients: EtcdBackend[] = [];

  beforeAll(async () => {
    etcd = await startEtcd({ tls: true, clientCertAuth: true });
  });
  afterAll(async () => {
    await Promise.allSettled(clients.map((c) => c.close()));
    await etcd?.stop();
  });

  it('connects with the CA and a client certificate; refuses without them', async () => {
    const tls = etcd.tls!;
    expect(etcd.clientUrl.startsWith('https://')).toBe(true);
    const good = createEtcdBackend({
      endpoints: etcd.endpoints,
      tls: { ca: tls.ca, cert: tls.clientCert, key: tls.clientKey },
    });
    clients.push(good);
    const service = uniqueService('tls');
    await good.discovery.register(instance(service, 'secure'), { ttlSeconds: 5 });
    expect((await good.discovery.getInstances(service)).instances.map((i) => i.id)).toEqual(['secure']);

    const noCert = createEtcdBackend({ endpoints: etcd.endpoints, tls: { ca: tls.ca }, callTimeoutMs: 1500 });
    const untrusted = createEtcdBackend({ endpoints: etcd.endpoints, callTimeoutMs: 1500 });
    clients.push(noCert, untrusted);
    await expect(noCert.kv.get('configs/x')).rejects.toBeInstanceOf(BackendUnavailableError);
    await expect(untrusted.kv.get('configs/x')).rejects.toBeInstanceOf(BackendUnavailableError);
  });

  it('tls options are checked up front: unreadable files and http:// endpoints are ConfigErrors naming each field', () => {
    let error: unknown;
    try {
      createEtcdBackend({
        endpoints: ['http://127.0.0.1:2379'],
        tls: { ca: '/nonexistent/ca.pem', cert: etcd.tls!.clientCert },
      });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).issues.map((i) => i.path).sort()).toEqual([
      'endpoints',
      'tls.ca',
      'tls.key',
    ]);
  });
});
