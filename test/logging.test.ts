import { Writable } from 'node:stream';
import { type Backend, PermissionDeniedError, TYPES } from '@rollcall/core';
import { eventually, startConsul, startEtcd, uniqueService } from '@rollcall/testkit';
import { pino } from 'pino';
import { createContainer, loadConfig } from 'rollcall';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consulServer, etcdServer, type RealServer } from './servers.js';

// Issue 13: a pino instance given to the container keeps every field Rollcall logs (Rollcall used
// to call `(message, fields)`, which pino reads as a message and drops the fields), every backend
// the container builds uses it, and no line ever holds a password or token.

/** A real pino logger writing JSON lines into memory. */
function pinoInMemory() {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, done) {
      chunks.push(String(chunk));
      done();
    },
  });
  const logger = pino({ level: 'debug' }, stream);
  return {
    logger,
    text: () => chunks.join(''),
    lines: () =>
      chunks
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const SECRET = `s3cret-${crypto.randomUUID()}`;

type Server = RealServer & {
  good: Record<string, string>;
  wrong: Record<string, string>;
  secrets: string[];
};
const servers: [string, () => Promise<Server>][] = [
  [
    'etcd',
    async () => {
      const etcd = await startEtcd({ name: 'logging' });
      await etcd.enableAuth({ username: 'app', password: SECRET, rootPassword: `root-${SECRET}` });
      const server = etcdServer(etcd);
      const env = { ...server.env, ETCD_USERNAME: 'app' };
      return {
        ...server,
        good: { ...env, ETCD_PASSWORD: SECRET },
        wrong: { ...env, ETCD_PASSWORD: `${SECRET}-wrong` },
        secrets: [SECRET, `root-${SECRET}`],
      };
    },
  ],
  [
    'consul',
    async () => {
      const server = consulServer(await startConsul({ acl: true, masterToken: SECRET }));
      return {
        ...server,
        good: { ...server.env, CONSUL_HTTP_TOKEN: SECRET },
        wrong: { ...server.env, CONSUL_HTTP_TOKEN: `${SECRET}-wrong` },
        secrets: [SECRET],
      };
    },
  ],
];

describe.each(servers)('%s: logging through the container with a real pino', (name, start) => {
  let server: Server;
  beforeAll(async () => {
    server = await start();
  });
  afterAll(async () => {
    server?.resume();
    await server?.stop();
  });

  it('every field reaches pino (backend, service, id, error), and no line holds a secret', async () => {
    const log = pinoInMemory();
    const container = createContainer(loadConfig({ environment: 'test', env: server.good }));
    container.bind(TYPES.Logger).toConstantValue(log.logger);
    const denied = createContainer(loadConfig({ environment: 'test', env: server.wrong }));
    denied.bind(TYPES.Logger).toConstantValue(log.logger);
    try {
      const backend = container.get<Backend>(TYPES.Backend);
      const service = uniqueService('logged');
      const registration = await backend.discovery.register(
        { id: 'l1', service, host: '127.0.0.1', port: 1 },
        { ttlSeconds: 2 },
      );
      // A pause past the ttl: the registration is lost, then written back.
      server.pause();
      await eventually(() => registration.state === 'recovering', { timeoutMs: 20_000 });
      server.resume();
      await eventually(() => registration.state === 'active', { timeoutMs: 20_000 });
      await eventually(() => log.lines().some((l) => l.msg === 'registration restored'));

      // Refused credentials: errors and logs name the failure, never the secret.
      const refused = await denied
        .get<Backend>(TYPES.Backend)
        .discovery.register({ id: 'l2', service, host: '127.0.0.1', port: 2 })
        .catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(PermissionDeniedError);
      await denied
        .get<Backend>(TYPES.Backend)
        .kv.get('configs/x')
        .catch(() => {});

      const lines = log.lines();
      const lost = lines.find((l) => l.msg === 'registration lost; re-registering');
      expect(lost, log.text()).toMatchObject({ level: 40, backend: name, service, id: 'l1' });
      expect(typeof lost?.error).toBe('string');
      expect(lines.find((l) => l.msg === 'registration restored')).toMatchObject({
        level: 30,
        backend: name,
        service,
        id: 'l1',
      });
      // Every line the backend wrote is bound to it.
      for (const line of lines) expect(line.backend, JSON.stringify(line)).toBe(name);
      for (const secret of server.secrets) {
        expect(log.text()).not.toContain(secret);
        expect(String(refused)).not.toContain(secret);
      }
    } finally {
      server.resume();
      await Promise.all([container.unbindAllAsync(), denied.unbindAllAsync()]);
    }
  });
});
