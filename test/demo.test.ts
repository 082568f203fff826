import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

describe('npm start demo', () => {
  it('runs its whole scenario on the memory backend and exits 0', async () => {
    const child = spawn(process.execPath, [join(root, 'examples/orders-demo/dist/demo.js')], { cwd: root });
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    child.stderr.on('data', (chunk) => {
      out += chunk;
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    expect(out).toContain('[checkout watch] sync: orders-1, orders-2, orders-3');
    expect(out).toContain('change -orders-2 -> now orders-1, orders-3');
    expect(out).toContain('orders-3 did not answer');
    expect(out).toContain('change -orders-3 -> now orders-1');
    expect(out).toContain('getInstances during the outage -> orders-1 (stale: true)');
    expect(out).toMatch(/GET \/health during the outage -> 503/);
    expect(out).toMatch(/done: 18 calls, all answered/);
    expect(code, out).toBe(0);
  });
});
