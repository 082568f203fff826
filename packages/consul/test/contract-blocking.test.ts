import { describeDiscoveryContract } from '@rollcall/testkit';
import { agentForFile, POLL_MS } from './helpers.js';

// The discovery contract again with watchMode 'blocking' (blocking queries, still at most one
// request per 5 s per service), on its own agent so that it can run beside the poll-mode file.
describeDiscoveryContract('consul (blocking)', agentForFile({ watchMode: 'blocking' }).harness, {
  ttlSeconds: 2,
  propagationMs: POLL_MS + 1000,
  expiryGraceMs: 0,
  recoveryMs: 20_000,
  eventPerWrite: false,
  crash: true,
  outage: true,
  upstreamCount: true,
});
