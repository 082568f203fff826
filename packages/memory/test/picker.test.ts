import {
  AbortedError,
  BackendUnavailableError,
  ClosedError,
  createPicker,
  ValidationError,
} from '@rollcall/core';
import { describe, expect, it } from 'vitest';
import { createMemoryBackend, MemoryStore } from '../src/index.js';

// core's createPicker on the memory backend: ready() settles in every case, with a typed error.
// (The timeout and the abort of a pending wait are tested on a frozen etcd: packages/etcd/test/picker.test.ts.)
describe('createPicker(...).ready({ signal, timeoutMs })', () => {
  const instance = { id: 'o1', service: 'orders', host: '127.0.0.1', port: 8080 };

  it('resolves after the first list, and at once when called again', async () => {
    await using backend = createMemoryBackend();
    await backend.discovery.register(instance);
    using picker = createPicker(backend.discovery, 'orders');
    await picker.ready();
    expect(picker.pick()).toEqual(instance);
    await picker.ready({ timeoutMs: 0 });
  });

  it('backend down at start: rejects with BackendUnavailableError; ready() works again once it returns', async () => {
    const store = new MemoryStore();
    store.outage();
    try {
      await using backend = createMemoryBackend({ store });
      using picker = createPicker(backend.discovery, 'orders');
      await expect(picker.ready()).rejects.toBeInstanceOf(BackendUnavailableError);
      store.restore();
      await picker.ready({ timeoutMs: 2000 });
      expect(picker.snapshot?.instances).toEqual([]);
    } finally {
      store.dispose();
    }
  });

  it('the watch closes before the first list: rejects with ClosedError, then and later', async () => {
    await using backend = createMemoryBackend();
    const picker = createPicker(backend.discovery, 'orders');
    const pending = picker.ready({ timeoutMs: Number.POSITIVE_INFINITY });
    picker.close();
    await expect(pending).rejects.toBeInstanceOf(ClosedError);
    await expect(picker.ready()).rejects.toBeInstanceOf(ClosedError);
  });

  it('an aborted signal rejects with AbortedError; bad options are ValidationErrors naming the field', async () => {
    await using backend = createMemoryBackend();
    const picker = createPicker(backend.discovery, 'orders');
    await expect(picker.ready({ signal: AbortSignal.abort('stop') })).rejects.toBeInstanceOf(AbortedError);
    for (const [options, field] of [
      [null, 'options'],
      [42, 'options'],
      [{ signal: {} }, 'options.signal'],
      [{ signal: 'x' }, 'options.signal'],
      [{ timeoutMs: -1 }, 'options.timeoutMs'],
      [{ timeoutMs: Number.NaN }, 'options.timeoutMs'],
      [{ timeoutMs: '5' }, 'options.timeoutMs'],
    ] as const) {
      const error = await picker.ready(options as never).catch((e: unknown) => e);
      expect(error, JSON.stringify(options)).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field).toBe(field);
    }
    picker.close();
  });
});
