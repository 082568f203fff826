import { ValidationError } from '@rollcall/core';
import { createMemoryBackend, MemoryStore } from '@rollcall/memory';
import { afterEach, describe, expect, it } from 'vitest';
import { applyKvCopy, checksum, type KvCopyProgress, planKvCopy, progressReporter } from '../src/index.js';

const stores: MemoryStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.dispose();
});
function pair() {
  const [a, b] = [new MemoryStore(), new MemoryStore()];
  stores.push(a, b);
  return { from: createMemoryBackend({ store: a }), to: createMemoryBackend({ store: b }) };
}

describe('kv copy', () => {
  it('cuts writes into batches within the op and byte limits, and reports progress after each', async () => {
    const { from, to } = pair();
    for (let i = 0; i < 300; i++)
      await from.kv.put(
        `configs/k${String(i).padStart(3, '0')}`,
        'v'.repeat(i === 7 || i === 8 ? 300_000 : 10),
      );
    const batches: number[] = [];
    const batch = to.kv.batch.bind(to.kv);
    to.kv.batch = async (put, deleted) => {
      batches.push(Object.keys(put).length + (deleted?.length ?? 0));
      await batch(put, deleted);
    };
    const progress: KvCopyProgress[] = [];
    const { result } = await applyKvCopy(
      { from: from.kv, to: to.kv, prefix: 'configs/' },
      { onProgress: (p) => progress.push(p), maxBatchBytes: 500_000 },
    );
    // k008 (300 kB) does not fit beside k007 (300 kB) under 500 kB: it starts a new batch.
    expect(batches).toEqual([8, 128, 128, 36]);
    expect(progress.map((p) => p.done)).toEqual([8, 136, 264, 300]);
    expect(progress.at(-1)!.total).toBe(300);
    expect(result).toMatchObject({ created: 300, batches: 4, checksum: { match: true } });
    expect(checksum(await to.kv.getAll('configs/'))).toBe(result.checksum.to);
    expect((await planKvCopy({ from: from.kv, to: to.kv, prefix: 'configs/' })).unchanged).toHaveLength(300);
  });

  it('refuses prefixes that are empty, escape, or cover Rollcall keys, before reading anything', async () => {
    const { from, to } = pair();
    for (const prefix of ['', '/', '../x/', 'a/./b', 'rollcall/', 'rollcall/locks/']) {
      const error = await planKvCopy({ from: from.kv, to: to.kv, prefix }).catch((e: unknown) => e);
      expect(error, prefix).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field).toBe('prefix');
    }
  });
});

describe('progress', () => {
  it('redraws one bar on a terminal', () => {
    const written: string[] = [];
    const p = progressReporter({ line: () => written.push('LINE'), tty: (t) => written.push(t) });
    p.update({ done: 5, total: 10, bytes: 1024 * 1024 });
    p.update({ done: 10, total: 10, bytes: 2 * 1024 * 1024 });
    p.end();
    expect(written).toEqual([
      `\r[${'#'.repeat(15)}${'-'.repeat(15)}] 5/10 keys (50%, 1.0 MiB)`,
      `\r[${'#'.repeat(30)}] 10/10 keys (100%, 2.0 MiB)`,
      '\n',
    ]);
  });

  it('writes plain lines at most once a second, and the last one always', () => {
    let now = 0;
    const lines: string[] = [];
    const p = progressReporter({ line: (l) => lines.push(l), now: () => now });
    for (let done = 1; done <= 10; done++) {
      now += 300;
      p.update({ done, total: 10, bytes: 0 });
    }
    expect(lines).toEqual([
      'progress: 1/10 keys (10%, 0.0 MiB)',
      'progress: 5/10 keys (50%, 0.0 MiB)',
      'progress: 9/10 keys (90%, 0.0 MiB)',
      'progress: 10/10 keys (100%, 0.0 MiB)',
    ]);
  });
});
