import type { SessionMessage } from '@rollcall/core';
import { describe, expect, it } from 'vitest';
import { Connectivity } from '../src/connectivity.js';

// rollcall.backend.connected folds session state changes; the real backends' sequences are in
// memory.test.ts and etcd.test.ts. These are the sequences a test server cannot easily produce.
type State = SessionMessage['state'];
const step = (c: Connectivity, previous: State | undefined, state: State, backend = 'consul') =>
  c.apply({ backend, ttlSeconds: 10, state, previous });
const values = (c: Connectivity) => Object.fromEntries(c.values());

describe('Connectivity', () => {
  it('a lost lock session beside a confirmed registration session: still connected', () => {
    const c = new Connectivity();
    step(c, undefined, 'alive'); // registration session
    step(c, undefined, 'alive'); // lock session
    step(c, 'alive', 'lost'); // the lock's session invalidated on the server
    expect(values(c)).toEqual({ consul: 1 });
  });

  it('the only session lost: not connected until a new one is granted; a closed client reports nothing', () => {
    const c = new Connectivity();
    step(c, undefined, 'alive');
    step(c, 'alive', 'unconfirmed');
    expect(values(c)).toEqual({ consul: 0 });
    step(c, 'unconfirmed', 'lost');
    expect(values(c)).toEqual({ consul: 0 });
    step(c, undefined, 'alive');
    expect(values(c)).toEqual({ consul: 1 });
    step(c, 'alive', 'ended');
    expect(values(c)).toEqual({});
  });

  it('sessions granted before it was installed never count below zero; backends apart', () => {
    const c = new Connectivity();
    step(c, 'alive', 'unconfirmed', 'etcd');
    step(c, undefined, 'alive', 'memory');
    expect(values(c)).toEqual({ etcd: 0, memory: 1 });
    step(c, 'unconfirmed', 'alive', 'etcd');
    step(c, 'alive', 'ended', 'etcd');
    step(c, 'alive', 'ended', 'etcd');
    expect(values(c)).toEqual({ memory: 1 });
  });
});
