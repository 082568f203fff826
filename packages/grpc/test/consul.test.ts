import { createConsulBackend } from '@rollcall/consul';
import { startConsul } from '@rollcall/testkit';
import { describeResolverSuite } from './resolver-suite.js';

const POLL_MS = 5000;

// Real Consul agent, polled every 5 s (the contract's minimum). Outage = the agent killed; restore =
// a new dev agent on the same ports (the servers' registrations come back by themselves).
describeResolverSuite(
  'consul',
  async () => {
    const agent = await startConsul({ nodeName: 'grpc-resolver' });
    const options = { host: agent.host, port: agent.port, pollIntervalMs: POLL_MS };
    const servers = createConsulBackend(options);
    const client = createConsulBackend(options);
    return {
      servers,
      client,
      outage: () => agent.kill(),
      restore: () => agent.restart(),
      teardown: async () => {
        await Promise.all([servers.close(), client.close()]);
        await agent.stop();
      },
    };
  },
  // The bound of the issue: the poll interval + 1 s. The outage shows on the next poll.
  { propagationMs: POLL_MS + 1000, staleMs: POLL_MS + 2000 },
);
