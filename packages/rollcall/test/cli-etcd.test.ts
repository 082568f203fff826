import { createEtcdBackend, type EtcdBackend } from '@rollcall/etcd';
import { type EtcdServer, freePort, startEtcd } from '@rollcall/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DOCTOR_ALL_OK, killAll, run, start } from './binary.js';

// The real `rollcall` binary, as a child process, against a real etcd: every command, --json
// parsed, exit codes, one-line errors, signals, a dead endpoint and refused credentials.

let etcd: EtcdServer;
let env: Record<string, string>;
const clients: EtcdBackend[] = [];
/** A client of the test itself (not the CLI), closed after the file. */
const client = () => {
  const backend = createEtcdBackend({ endpoints: etcd.endpoints });
  clients.push(backend);
  return backend;
};

beforeAll(async () => {
  etcd = await startEtcd();
  // host:port without a scheme, as etcdctl takes it.
  env = { ROLLCALL_BACKEND: 'etcd', ETCD_ENDPOINTS: `127.0.0.1:${etcd.clientPort}` };
});
afterEach(killAll);
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await etcd?.stop();
});

describe('rollcall against etcd', () => {
  it('services, instances (filters), kv, leader and lock list, as text and as --json', async () => {
    const backend = client();
    await backend.discovery.register({
      id: 'o1',
      service: 'orders',
      host: '10.1.0.1',
      port: 8080,
      version: '3.0.0',
      tags: ['blue'],
      metadata: { zone: 'eu-1' },
    });
    await backend.discovery.register({
      id: 'o2',
      service: 'orders',
      host: '10.1.0.2',
      port: 8080,
      tags: ['green'],
    });
    const leadership = await backend.locks.campaign('scheduler', 'o1', { ttlSeconds: 5 });

    expect(await run(['services'], env)).toMatchObject({ code: 0, lines: ['orders'], stderr: '' });
    expect(JSON.parse((await run(['--json', 'services'], env)).stdout)).toEqual(['orders']);
    const table = await run(['instances', 'orders', '--tag', 'blue'], env);
    expect(table.lines).toEqual([
      'ID  ADDRESS        VERSION  WEIGHT  TAGS  METADATA',
      'o1  10.1.0.1:8080  3.0.0    1       blue  zone=eu-1',
    ]);
    const snapshot = JSON.parse(
      (await run(['instances', 'orders', '--json', '--meta', 'zone=eu-1'], env)).stdout,
    );
    expect(snapshot).toMatchObject({ service: 'orders', stale: false, instances: [{ id: 'o1' }] });

    expect((await run(['kv', 'put', 'configs/orders/prod/log_level', 'info'], env)).code).toBe(0);
    expect(await backend.kv.get('configs/orders/prod/log_level')).toBe('info');
    expect((await run(['kv', 'get', 'configs/orders/prod/log_level'], env)).lines).toEqual(['info']);
    expect(JSON.parse((await run(['--json', 'kv', 'ls', 'configs/orders/'], env)).stdout)).toEqual({
      'configs/orders/prod/log_level': 'info',
    });
    expect((await run(['kv', 'rm', 'configs/orders/prod/log_level'], env)).code).toBe(0);
    const missing = await run(['kv', 'get', 'configs/orders/prod/log_level'], env);
    expect(missing).toMatchObject({
      code: 1,
      stdout: '',
      errLines: ["rollcall: no key 'configs/orders/prod/log_level'"],
    });

    expect((await run(['leader', 'scheduler'], env)).lines).toEqual(['o1']);
    const locks = JSON.parse((await run(['--json', 'lock', 'list'], env)).stdout);
    expect(locks).toEqual([
      {
        kind: 'election',
        name: 'scheduler',
        holder: 'o1',
        token: expect.stringMatching(/^\d+$/),
        waiters: 0,
      },
    ]);
    await leadership.resign();
    expect(await run(['leader', 'scheduler'], env)).toMatchObject({
      code: 1,
      errLines: ["rollcall: election 'scheduler' has no leader"],
    });
  });

  it('bad usage and input exit 2 with one line, before any call', async () => {
    expect(await run(['instances'], env)).toMatchObject({
      code: 2,
      stdout: '',
      errLines: ["rollcall: missing required argument 'service' (see rollcall --help)"],
    });
    expect((await run(['lock', 'hold', 'x', '--ttl', 'abc'], env)).errLines).toEqual([
      "rollcall: option '--ttl <seconds>' argument 'abc' is invalid. --ttl must be a positive integer (see rollcall --help)",
    ]);
    const badName = await run(['instances', 'Not/A/Service'], env);
    expect(badName).toMatchObject({ code: 2, stdout: '' });
    expect(badName.errLines).toEqual([expect.stringMatching(/^rollcall: service: /)]);
    // A configuration key inside the registry subtree would forge an instance: refused.
    const forged = await run(['kv', 'put', 'rollcall/services/orders/x', '{}'], env);
    expect(forged.code).toBe(2);
    expect(forged.errLines).toHaveLength(1);
    const unknown = await run(['-b', 'nosuch', 'services'], env);
    expect(unknown).toMatchObject({
      code: 2,
      errLines: [
        'rollcall: invalid configuration: backend: unknown backend "nosuch"; valid backends: memory, etcd, consul, migrating',
      ],
    });
    const scheme = await run(['services'], { ...env, ETCD_ENDPOINTS: 'ftp://x:1' });
    expect(scheme.code).toBe(2);
    expect(scheme.errLines).toEqual([
      expect.stringMatching(/^rollcall: invalid configuration: etcd.endpoints\[0\]: /),
    ]);
    expect((await run(['--version'], env)).lines).toEqual([expect.stringMatching(/^\d+\.\d+\.\d+/)]);
  });

  it('a dead endpoint is one clear line naming it and exit 1, within the call timeout, for every kind of command', async () => {
    const port = await freePort();
    const dead = { ROLLCALL_BACKEND: 'etcd', ETCD_ENDPOINTS: `127.0.0.1:${port}` };
    const commands = [
      ['services'],
      ['instances', 'orders'],
      ['kv', 'get', 'x'],
      ['lock', 'list'],
      ['leader', 'x'],
    ];
    // All at once; each is killed (and so fails) if it outlives its 1 s deadline by far.
    const results = await Promise.all(
      commands.map((args) => run(['--timeout', '1000', ...args], dead, 8000)),
    );
    for (const [i, r] of results.entries()) {
      expect({ args: commands[i], code: r.code, stdout: r.stdout }).toEqual({
        args: commands[i],
        code: 1,
        stdout: '',
      });
      expect(r.errLines).toEqual([
        expect.stringMatching(new RegExp(`^rollcall: etcd: .*127\\.0\\.0\\.1:${port}`)),
      ]);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const [health, doctor, debug] = await Promise.all([
      run(['--json', '--timeout', '1000', 'health'], dead, 8000),
      run(['--timeout', '1000', 'doctor'], dead, 8000),
      run(['--debug', '--timeout', '1000', 'services'], dead, 8000),
    ]);
    expect(health.code).toBe(1);
    expect(JSON.parse(health.stdout)).toMatchObject({ reachable: false, server: `http://127.0.0.1:${port}` });
    expect(doctor.code).toBe(1);
    expect(doctor.lines[2]).toMatch(/^fail +reachable +etcd: /);
    // --debug adds the stack.
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/\n\s+at /);
  });

  it('watch prints the sync and each change, and exits 0 on SIGINT', async () => {
    const watch = start(['watch', 'payments'], env);
    await watch.line(/^sync \(none\)$/);
    const registration = await client().discovery.register({
      id: 'p1',
      service: 'payments',
      host: '10.2.0.1',
      port: 1,
    });
    await watch.line(/^change \+p1 \(1 instances\)$/);
    await registration.deregister();
    await watch.line(/^change -p1 \(0 instances\)$/);
    watch.child.kill('SIGINT');
    expect(await watch.exit).toBe(0);
    const json = start(['--json', 'watch', 'payments'], env);
    expect(JSON.parse(await json.line(/"type":"sync"/))).toMatchObject({
      type: 'sync',
      snapshot: { instances: [] },
    });
    json.child.kill('SIGTERM');
    expect(await json.exit).toBe(0);
  });

  it('lock hold prints the fencing token, holds until SIGTERM, then releases at once and exits 0', async () => {
    const hold = start(['--json', 'lock', 'hold', 'deploy', '--ttl', '5'], env);
    const held = JSON.parse(await hold.line(/"held":true/)) as { fencingToken: string };
    expect(held.fencingToken).toMatch(/^\d+$/);
    const other = client();
    expect(await other.locks.tryAcquire('deploy', { ttlSeconds: 2 })).toBeUndefined();
    expect(JSON.parse((await run(['--json', 'lock', 'list'], env)).stdout)).toEqual([
      {
        kind: 'lock',
        name: 'deploy',
        holder: expect.stringMatching(/^lease /),
        token: held.fencingToken,
        waiters: 0,
      },
    ]);
    hold.child.kill('SIGTERM');
    expect(await hold.exit).toBe(0);
    expect(hold.lines()[1]).toBe(`{"lock":"deploy","fencingToken":"${held.fencingToken}","held":false}`);
    // Released, not left to expire: the next holder gets it now, with a greater token.
    const next = await other.locks.tryAcquire('deploy', { ttlSeconds: 2 });
    expect(next?.fencingToken).toBeGreaterThan(BigInt(held.fencingToken));
    await next?.release();

    const text = start(['lock', 'hold', 'deploy'], env);
    expect(await text.line(/^holding lock 'deploy' \(fencing token \d+\); Ctrl-C releases it$/)).toBeTruthy();
    text.child.kill('SIGINT');
    expect(await text.exit).toBe(0);
    expect(text.lines().at(-1)).toBe("released lock 'deploy'");
  });

  it('health and doctor pass on a working etcd, with a verdict per line', async () => {
    const health = JSON.parse((await run(['--json', 'health'], env)).stdout);
    expect(health).toMatchObject({ backend: 'etcd', server: etcd.clientUrl, reachable: true });
    const doctor = await run(['doctor'], env);
    expect(doctor.code).toBe(0);
    const verdicts = Object.fromEntries(
      doctor.lines.slice(1, -1).map((l) => [l.split(/ {2,}/)[1], l.split(/ +/)[0]]),
    );
    expect(verdicts).toEqual(DOCTOR_ALL_OK);
    const report = JSON.parse((await run(['--json', 'doctor'], env)).stdout) as {
      checks: { check: string; detail: string }[];
    };
    expect(report.checks.find((c) => c.check === 'server version')?.detail).toMatch(/^etcd 3\.\d+\.\d+$/);
    // Its test instance is gone.
    expect((await client().discovery.getInstances('rollcall-doctor')).instances).toEqual([]);
  });

  it('ui serves the dashboard until SIGINT; a non-loopback host without a token is refused (exit 2)', async () => {
    const ui = start(['--json', 'ui', '--port', '0'], env);
    const { url } = JSON.parse(await ui.line(/"url"/)) as { url: string };
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    const state = (await (await fetch(`${url}api/state`)).json()) as {
      backend: { name: string; server: string };
    };
    expect(state.backend).toMatchObject({ name: 'etcd', server: etcd.clientUrl });
    ui.child.kill('SIGINT');
    expect(await ui.exit).toBe(0);
    const open = await run(['ui', '--host', '0.0.0.0', '--port', '0'], env);
    expect(open.code).toBe(2);
    expect(open.errLines).toEqual([expect.stringMatching(/refusing to serve without a token/)]);
  });

  it('refused credentials: a clear line without the password, and doctor fails reachability or auth', async () => {
    // The test's own clients have no credentials: close them while etcd still lets them.
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await etcd.enableAuth({ username: 'app', password: 'right-horse-battery' });
    const wrong = { ...env, ETCD_USERNAME: 'app', ETCD_PASSWORD: 'Wrong-Pa55-Zq' };
    const r = await run(['--timeout', '2000', 'services'], wrong);
    expect(r.code).toBe(1);
    expect(r.errLines).toHaveLength(1);
    expect(r.stderr).toMatch(/authentication failed|permission denied|invalid/i);
    expect(r.stderr).not.toContain('Wrong-Pa55-Zq');
    const doctor = await run(['--timeout', '2000', 'doctor'], wrong);
    expect(doctor.code).toBe(1);
    expect(doctor.stdout).not.toContain('Wrong-Pa55-Zq');
    expect(
      doctor.lines.filter((l) => /^(ok|fail) /.test(l)).map((l) => l.split(/ {2,}/).slice(0, 2).join(' ')),
    ).toEqual(['ok configuration', 'ok reachable', 'fail auth']);
    expect(doctor.lines.find((l) => l.startsWith('fail'))).toMatch(
      /authentication failed|invalid auth|user name/i,
    );
    const right = { ...env, ETCD_USERNAME: 'app', ETCD_PASSWORD: 'right-horse-battery' };
    expect((await run(['services'], right)).code).toBe(0);
    const ok = await run(['doctor'], right);
    expect(ok.lines.find((l) => l.startsWith('ok       auth'))).toContain("credentials of user 'app'");
    // The dashboard never hands the credentials to the page.
    const ui = start(['--json', 'ui', '--port', '0'], right);
    const { url } = JSON.parse(await ui.line(/"url"/)) as { url: string };
    const state = await (await fetch(`${url}api/state`)).text();
    expect(state).toContain('"name":"etcd"');
    expect(state).not.toContain('right-horse-battery');
    ui.child.kill('SIGTERM');
    expect(await ui.exit).toBe(0);
  });
});
