import { describe, expect, it } from 'vitest';
import { createLockService, type LockDriver } from '../src/driver.js';
import { NotSupportedError } from '../src/index.js';

const never = () => Promise.reject(new Error('not called in this test'));

/** A driver of a backend that cannot enumerate holders: no `list`. */
const unlistable: LockDriver = {
  backend: 'zk',
  minTtlSeconds: 2,
  acquire: never,
  tryAcquire: never,
  campaign: never,
  leader: never,
};

describe('ManagedLockService.list', () => {
  it('is a NotSupportedError naming the backend when its driver cannot list', async () => {
    const locks = createLockService(unlistable);
    expect(locks.listable).toBe(false);
    const error = await locks.list().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NotSupportedError);
    expect((error as NotSupportedError).code).toBe('ERR_NOT_SUPPORTED');
    expect((error as Error).message).toBe('zk: listing locks is not supported by this backend');
  });

  it('sorts what the driver lists: locks first, then elections, each by name', async () => {
    const locks = createLockService({
      ...unlistable,
      list: async () => [
        { kind: 'election', name: 'b', waiters: 0 },
        { kind: 'lock', name: 'z', waiters: 2 },
        { kind: 'election', name: 'a', holder: 'n1', waiters: 0 },
        { kind: 'lock', name: 'c', holder: 'h', token: 7n, waiters: 0 },
      ],
    });
    expect(locks.listable).toBe(true);
    expect((await locks.list()).map((l) => `${l.kind}:${l.name}`)).toEqual([
      'lock:c',
      'lock:z',
      'election:a',
      'election:b',
    ]);
  });
});
