import { type ConsulBackend, createConsulBackend } from '@rollcall/consul';
import { type ConsulAgent, freePort, startConsul } from '@rollcall/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { consulTotals } from '../src/cli/probes.js';
import { DOCTOR_ALL_OK, killAll, run, start } from './binary.js';

// The real `rollcall` binary against a real Consul agent. Few tests: Consul is polled every 5 s.
vi.setConfig({ testTimeout: 60_000 });

let agent: ConsulAgent;
let env: Record<string, string>;
let backend: ConsulBackend;

beforeAll(async () => {
  agent = await startConsul();
  env = { ROLLCALL_BACKEND: 'consul', CONSUL_HTTP_ADDR: `127.0.0.1:${agent.port}` };
  backend = createConsulBackend({ host: agent.host, port: agent.port, pollIntervalMs: 5000 });
});
afterEach(killAll);
afterAll(async () => {
  await backend?.close();
  await agent?.stop();
});

describe('rollcall against Consul', () => {
  it('services, instances, kv, leader and lock list (held on the same agent by this test)', async () => {
    await backend.discovery.register({
      id: 'c1',
      service: 'catalog',
      host: '10.3.0.1',
      port: 7000,
      tags: ['blue'],
      metadata: { zone: 'us-1' },
    });
    const lease = await backend.locks.acquire('reindex', { ttlSeconds: 10 });
    const leadership = await backend.locks.campaign('writer', 'c1', { ttlSeconds: 10 });
    expect(JSON.parse((await run(['--json', 'services'], env)).stdout)).toEqual(['catalog']);
    expect((await run(['instances', 'catalog', '--meta', 'zone=us-1'], env)).lines).toEqual([
      'ID  ADDRESS        VERSION  WEIGHT  TAGS  METADATA',
      'c1  10.3.0.1:7000  -        1       blue  zone=us-1',
    ]);
    expect((await run(['kv', 'put', 'configs/catalog/prod/size', '40'], env)).code).toBe(0);
    expect(JSON.parse((await run(['--json', 'kv', 'get', 'configs/catalog/prod/size'], env)).stdout)).toEqual(
      {
        key: 'configs/catalog/prod/size',
        value: '40',
      },
    );
    expect((await run(['kv', 'rm', 'configs/catalog/prod/size'], env)).code).toBe(0);
    expect((await run(['kv', 'get', 'configs/catalog/prod/size'], env)).code).toBe(1);
    expect((await run(['leader', 'writer'], env)).lines).toEqual(['c1']);
    expect(JSON.parse((await run(['--json', 'lock', 'list'], env)).stdout)).toEqual([
      {
        kind: 'lock',
        name: 'reindex',
        holder: expect.stringMatching(/:\d+$/),
        token: String(lease.fencingToken),
        waiters: 0,
      },
      { kind: 'election', name: 'writer', holder: 'c1', token: expect.stringMatching(/^\d+$/), waiters: 0 },
    ]);
    await lease.release();
    await leadership.resign();
  });

  it('health, doctor (server version and clock skew from the agent), lock hold, and a dead agent', async () => {
    const health = JSON.parse((await run(['--json', 'health'], env)).stdout);
    expect(health).toMatchObject({
      backend: 'consul',
      server: `http://127.0.0.1:${agent.port}`,
      reachable: true,
    });
    const hold = start(['lock', 'hold', 'migrate-db', '--ttl', '10'], env);
    await hold.line(/^holding lock 'migrate-db' \(fencing token \d+\)/);
    const doctor = await run(['--json', 'doctor'], env);
    expect(doctor.code).toBe(0);
    const checks = (
      JSON.parse(doctor.stdout) as { checks: { check: string; verdict: string; detail: string }[] }
    ).checks;
    expect(Object.fromEntries(checks.map((c) => [c.check, c.verdict]))).toEqual(DOCTOR_ALL_OK);
    expect(checks.find((c) => c.check === 'server version')?.detail).toBe('Consul 1.8.7');
    expect(checks.find((c) => c.check === 'clock skew')?.detail).toMatch(/^server clock [+-]\d+\.\d s /);
    hold.child.kill('SIGINT');
    expect(await hold.exit).toBe(0);
    // Released on the way out, not left to the session's expiry.
    const again = await backend.locks.tryAcquire('migrate-db', { ttlSeconds: 10 });
    expect(again?.fencingToken).toBeGreaterThan(0n);
    await again?.release();

    const port = await freePort();
    const dead = await run(
      ['--timeout', '1000', 'services'],
      { ROLLCALL_BACKEND: 'consul', CONSUL_HTTP_ADDR: `127.0.0.1:${port}` },
      8000,
    );
    expect(dead).toMatchObject({
      code: 1,
      stdout: '',
      errLines: [
        `rollcall: consul: list services: cannot reach the agent at http://127.0.0.1:${port} (ECONNREFUSED)`,
      ],
    });
  });

  it("the dashboard's totals count a service's instances whatever their checks", async () => {
    const agentUrl = `http://${agent.address}`;
    const registration = await backend.discovery.register({
      id: 't1',
      service: 'totals',
      host: '10.3.0.2',
      port: 7000,
    });
    // A second instance registered past Rollcall, its check critical: not healthy, still counted.
    const put = await fetch(`${agentUrl}/v1/agent/service/register`, {
      method: 'PUT',
      body: JSON.stringify({
        ID: 't2',
        Name: 'totals',
        Address: '10.3.0.3',
        Port: 7000,
        Check: { TTL: '60s', Status: 'critical' },
      }),
    });
    expect(put.status).toBe(200);
    try {
      expect((await backend.discovery.getInstances('totals')).instances.map((i) => i.id)).toEqual(['t1']);
      expect((await consulTotals(agentUrl, 5000)).get('totals')).toBe(2);
    } finally {
      await fetch(`${agentUrl}/v1/agent/service/deregister/t2`, { method: 'PUT' });
      await registration.deregister();
    }
  });
});
