import { type ChildProcess, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type EtcdServer, eventually, freePort, startEtcd } from '@rollcall/testkit';
import { afterAll, describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const main = join(root, 'examples/otel-prometheus/dist/main.js');

/** The example as a child process serving /metrics on its own free port. */
async function start(env: Record<string, string>) {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [main], {
    cwd: root,
    env: { ...process.env, METRICS_PORT: String(port), METRICS_HOST: '127.0.0.1', DRAIN_MS: '100', ...env },
  });
  const proc = {
    child,
    out: '',
    exited: new Promise<number | null>((resolve) => child.on('exit', resolve)),
    /** GET /metrics, parsed. */
    scrape: async () => new Scrape(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text()),
  };
  child.stdout?.on('data', (chunk) => {
    proc.out += chunk;
  });
  child.stderr?.on('data', (chunk) => {
    proc.out += chunk;
  });
  return proc;
}

/** Prometheus text format: `name{label="value",...} number` lines. */
class Scrape {
  private readonly samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  constructor(readonly text: string) {
    for (const line of text.split('\n')) {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!match) continue;
      const labels: Record<string, string> = {};
      for (const [, key, value] of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g))
        labels[key!] = value!;
      this.samples.push({ name: match[1]!, labels, value: Number(match[3]) });
    }
  }

  /** The value of the one sample `name` whose labels include `labels`. */
  value(name: string, labels: Record<string, string> = {}): number | undefined {
    const found = this.samples.filter(
      (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
    );
    if (found.length > 1)
      throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`);
    return found[0]?.value;
  }
}

describe('examples/otel-prometheus', () => {
  const children: Awaited<ReturnType<typeof start>>[] = [];
  let etcd: EtcdServer | undefined;
  afterAll(async () => {
    for (const c of children) c.child.kill('SIGKILL');
    await etcd?.stop();
  });

  it('memory backend: the real /metrics text carries instance counts, states, lock waits and config updates', async () => {
    const service = await start({ ROLLCALL_ENV: 'development', REPORT_EVERY_MS: '100' });
    children.push(service);
    await eventually(() => service.out.includes('[report] first'), {
      timeoutMs: 20_000,
      message: () => `the service starts and writes a report:\n${service.out}`,
    });
    const orders = { rollcall_backend: 'memory', rollcall_service: 'orders' };
    const scrape = await eventually(async () => {
      const s = await service.scrape();
      return (s.value('rollcall_lock_acquire_duration_count', { rollcall_lock_name: 'orders-report' }) ??
        0) >= 2
        ? s
        : undefined;
    });
    expect(scrape.text).toMatch(
      /^rollcall_service_instances\{rollcall_backend="memory",rollcall_service="orders",.*\} 2$/m,
    );
    expect(scrape.value('rollcall_service_instances', orders)).toBe(2);
    expect(
      scrape.value('rollcall_registration_state', { ...orders, rollcall_registration_state: 'active' }),
    ).toBe(2);
    expect(scrape.value('rollcall_backend_connected', { rollcall_backend: 'memory' })).toBe(1);
    expect(scrape.value('rollcall_watch_syncs_total', orders)).toBe(1);
    expect(
      scrape.value('rollcall_config_applied_total', {
        rollcall_config_prefix: 'configs/orders/development/',
      }),
    ).toBe(1);
    const report = { rollcall_lock_name: 'orders-report', rollcall_lock_outcome: 'acquired' };
    const count = scrape.value('rollcall_lock_acquire_duration_count', report)!;
    expect(scrape.value('rollcall_lock_acquire_duration_bucket', { ...report, le: '+Inf' })).toBe(count);
    expect(scrape.value('rollcall_lock_acquire_duration_sum', report)).toBeGreaterThan(0);

    service.child.kill('SIGTERM');
    expect(await service.exited, service.out).toBe(0);
    expect(service.out).toMatch(/stopped after \d+ reports/);
  });

  it('etcd, two processes: each sees the other in rollcall_service_instances, and the count drops when one leaves', async () => {
    etcd = await startEtcd({ name: 'otel-prometheus-e2e' });
    const env = { ROLLCALL_ENV: 'test', ROLLCALL_BACKEND: 'etcd', ETCD_ENDPOINTS: etcd.endpoints.join(',') };
    const [a, b] = await Promise.all([
      start({ ...env, INSTANCE_IDS: 'orders-a' }),
      start({ ...env, INSTANCE_IDS: 'orders-b' }),
    ]);
    children.push(a, b);
    const orders = { rollcall_backend: 'etcd', rollcall_service: 'orders' };
    const both = await eventually(
      async () => {
        const s = await a.scrape();
        return s.value('rollcall_service_instances', orders) === 2 ? s : undefined;
      },
      { timeoutMs: 20_000, message: () => `process a sees both instances:\n${a.out}\n${b.out}` },
    );
    expect(
      both.value('rollcall_registration_state', { ...orders, rollcall_registration_state: 'active' }),
    ).toBe(1);
    expect(both.value('rollcall_backend_connected', { rollcall_backend: 'etcd' })).toBe(1);

    b.child.kill('SIGTERM');
    expect(await b.exited, b.out).toBe(0);
    const after = await eventually(async () => {
      const s = await a.scrape();
      return s.value('rollcall_service_instances', orders) === 1 ? s : undefined;
    });
    expect(
      after.value('rollcall_membership_changes_total', { ...orders, rollcall_membership_change: 'removed' }),
    ).toBe(1);

    // A SIGTERM as early as the instance is listed. The handler is installed before anything is
    // registered: before, a SIGTERM between another process seeing the instance and register()
    // resolving here killed the process with Node's default action (exit code null; seen once, on b
    // above, in a full run).
    const c = await start({ ...env, INSTANCE_IDS: 'orders-c' });
    children.push(c);
    await eventually(() => c.out.includes('[orders-c] registered'), {
      timeoutMs: 20_000,
      message: () => `process c registers:\n${c.out}`,
    });
    c.child.kill('SIGTERM');
    expect(await c.exited, c.out).toBe(0);
    expect(c.out).toMatch(/stopped after \d+ reports/);

    a.child.kill('SIGTERM');
    expect(await a.exited, a.out).toBe(0);
  });
});
