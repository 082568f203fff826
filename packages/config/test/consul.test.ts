import { createConsulBackend } from '@rollcall/consul';
import { startConsul } from '@rollcall/testkit';
import { describeLiveConfig } from './live-config-suite.js';

// Real Consul agent: "backend down" is the agent killed, "back" is a new dev agent on the same
// ports (a dev agent keeps everything in memory, so it comes back empty: a real state loss).
describeLiveConfig(
  'consul',
  async () => {
    const agent = await startConsul();
    return {
      newClient: async () => createConsulBackend({ host: agent.host, port: agent.port, callTimeoutMs: 1000 }),
      // One Consul transaction (PUT /v1/txn): one index bump, one watch answer.
      batch: async (_client, put, deleted = []) => {
        const key = (k: string) => k.replace(/^\//, '');
        const ops = [
          ...Object.entries(put).map(([k, v]) => ({
            KV: { Verb: 'set', Key: key(k), Value: Buffer.from(v).toString('base64') },
          })),
          ...deleted.map((k) => ({ KV: { Verb: 'delete', Key: key(k) } })),
        ];
        const res = await fetch(`${agent.url}/v1/txn`, { method: 'PUT', body: JSON.stringify(ops) });
        if (!res.ok) throw new Error(`txn failed: HTTP ${res.status} ${await res.text()}`);
      },
      outage: () => agent.kill(),
      restore: async () => {
        if (!(await agent.isReady())) await agent.restart();
      },
      teardown: () => agent.stop(),
    };
  },
  4000,
);
