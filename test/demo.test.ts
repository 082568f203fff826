import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Runs an example's built entry point to its end; returns its exit code and output. */
async function runExample(file: string): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [join(root, file)], {
    cwd: root,
    env: { ...process.env, ROLLCALL_ENV: 'development' },
  });
  let out = '';
  child.stdout.on('data', (chunk) => {
    out += chunk;
  });
  child.stderr.on('data', (chunk) => {
    out += chunk;
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  return { code, out };
}

describe('examples', () => {
  it('npm start: the orders demo runs its whole scenario on the memory backend and exits 0', async () => {
    const { code, out } = await runExample('examples/orders-demo/dist/demo.js');
    expect(out).toContain('[checkout watch] sync: orders-1, orders-2, orders-3');
    expect(out).toContain('change -orders-2 -> now orders-1, orders-3');
    expect(out).toContain('orders-3 did not answer');
    expect(out).toContain('change -orders-3 -> now orders-1');
    expect(out).toContain('getInstances during the outage -> orders-1 (stale: true)');
    expect(out).toContain('GET /livez during the outage -> 200');
    expect(out).toMatch(/GET \/readyz once its ttl passed -> 503 \(orders\/orders-1 is recovering/);
    expect(out).toContain('GET /livez still -> 200');
    expect(out).toContain('GET /readyz after the outage -> 200');
    expect(out).toMatch(/done: 18 calls, all answered/);
    expect(code, out).toBe(0);
  });

  it('config-hot-reload: log level and feature flag change live; an invalid value is refused', async () => {
    const { code, out } = await runExample('examples/config-hot-reload/dist/main.js');
    expect(out).toContain('[client] GET / -> Hello, world.');
    expect(out).toContain('[debug] request GET /');
    expect(out).toContain('[client] GET / -> Hey Ada, welcome back!');
    expect(out).toMatch(
      /configuration update refused, keeping the last good one: configs\/greeter\/development\/log_level/,
    );
    expect(out).toContain('[client] GET / -> Hey world, welcome back!');
    expect(code, out).toBe(0);
  });
});
