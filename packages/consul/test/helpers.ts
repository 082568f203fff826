import { type ConsulAgent, freePort, startConsul } from '@rollcall/testkit';
import { afterAll } from 'vitest';
import { type ConsulBackend, type ConsulOptions, createConsulBackend, simulateCrash } from '../src/index.js';

/** The shortest poll interval the backend accepts: tests use it to stay quick. */
export const POLL_MS = 5000;

/** A backend on `agent` (or any host/port), with the test poll interval. */
export function backendOn(
  agent: Pick<ConsulAgent, 'host' | 'port'>,
  options: ConsulOptions = {},
): ConsulBackend {
  return createConsulBackend({ host: agent.host, port: agent.port, pollIntervalMs: POLL_MS, ...options });
}

/** A raw `GET` of the agent's HTTP API (no Rollcall code involved): a truly fresh view. */
export async function rawGet<T>(
  agent: Pick<ConsulAgent, 'url'>,
  path: string,
  headers: Record<string, string> = {},
): Promise<T> {
  const response = await fetch(`${agent.url}${path}`, { headers, signal: AbortSignal.timeout(2000) });
  if (!response.ok) throw new Error(`GET ${path}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

/** Rollcall ids of the passing instances of `service`, straight from the agent. */
export async function passingIds(
  agent: Pick<ConsulAgent, 'url'>,
  service: string,
  headers: Record<string, string> = {},
): Promise<string[]> {
  const entries = await rawGet<{ Service: { Meta: Record<string, string> | null } }[]>(
    agent,
    `/v1/health/service/${service}?passing`,
    headers,
  );
  return entries.map((e) => e.Service.Meta?.rollcall_id ?? '?').sort();
}

/**
 * One real Consul 1.8.7 dev agent for the calling test file (started on first use, stopped after
 * the file), and the compliance suites' harness on it: crash = `simulateCrash`; outage = the agent
 * killed; restore = a new dev agent on the same ports, which has lost everything it held, so
 * registrations and locks must recover by themselves.
 */
export function agentForFile(options: ConsulOptions = {}) {
  let agent: Promise<ConsulAgent> | undefined;
  const shared = () => {
    agent ??= startConsul();
    return agent;
  };
  afterAll(async () => {
    await (await agent)?.stop();
  });
  const harness = async () => {
    const a = await shared();
    return {
      newClient: async () => backendOn(a, options),
      crash: async (client: unknown) => simulateCrash(client as ConsulBackend),
      outage: async () => a.kill(),
      restore: async () => a.restart(),
      upstreams: (client: unknown, service: string) => (client as ConsulBackend).pollerCount(service),
      // A closed loopback port: any request would fail, so bad input must be refused before one.
      unreachableClient: async () => backendOn({ host: '127.0.0.1', port: await freePort() }, options),
    };
  };
  return { shared, harness };
}
