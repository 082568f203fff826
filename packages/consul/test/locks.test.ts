import { hostname } from 'node:os';
import { describeLockContract } from '@rollcall/testkit';
import { vi } from 'vitest';
import { agentForFile } from './helpers.js';

// Real Consul sessions: the TTL is 10 s at least and a crashed holder's session lives up to 2 x TTL.
vi.setConfig({ testTimeout: 90_000 });

// Outage = the agent is killed and restarted empty: it has forgotten every session, so every held lock is lost.
describeLockContract('consul', agentForFile().harness, {
  ttlSeconds: 10,
  // A release deletes the lock key and wakes the head waiter's blocking query at once (~5 ms measured).
  handoffMs: 1000,
  // Consul invalidates a session exactly 2 x TTL after its last renewal (measured: 20.04 s for a
  // 10 s TTL); renewals are ttl/2 apart, so a crashed holder's lock passes on 1.5-2 x TTL after the
  // crash: up to TTL + 10 s, plus the hand-off.
  expiryGraceMs: 11_000,
  iterations: 60,
  crash: true,
  outage: true,
  list: true,
  // A lock's holder is the host and process that hold its session.
  lockHolder: `${hostname()}:${process.pid}`,
});
