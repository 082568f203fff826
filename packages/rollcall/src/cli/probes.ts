import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

/** What a server says about itself over HTTP: its version and its clock. */
export interface ServerFacts {
  /** e.g. `etcd 3.4.23`, `Consul 1.8.7`. */
  version?: string;
  /** Server clock minus local clock, in ms, from the HTTP `Date` header (which has 1 s resolution). */
  skewMs?: number;
  /** Why a fact is missing. */
  note?: string;
}

/** TLS material for HTTPS probes (PEM contents). */
export interface ProbeTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

interface HttpAnswer {
  status: number;
  date: string | undefined;
  body: string;
  sentAt: number;
  receivedAt: number;
}

/** One GET with a deadline; the body is capped at 1 MiB. Headers may carry a token: it is never part of an error. */
function get(
  url: string,
  options: { timeoutMs: number; tls?: ProbeTls; headers?: Record<string, string> },
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const secure = url.startsWith('https:');
    const send = secure ? httpsRequest : httpRequest;
    const sentAt = Date.now();
    const req = send(
      url,
      {
        method: 'GET',
        headers: options.headers ?? {},
        timeout: options.timeoutMs,
        ...(secure ? { ca: options.tls?.ca, cert: options.tls?.cert, key: options.tls?.key } : {}),
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (body.length < 1 << 20) body += chunk;
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            date: res.headers.date,
            body,
            sentAt,
            receivedAt: Date.now(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${options.timeoutMs} ms`)));
    req.on('error', (error: NodeJS.ErrnoException) =>
      reject(new Error(`GET ${url}: ${error.code ?? error.message}`)),
    );
    req.end();
  });
}

/** Server minus local clock, taking the server's `Date` (truncated to the second) as the middle of its second. */
function skewOf(answer: HttpAnswer): number | undefined {
  const server = answer.date ? Date.parse(answer.date) : Number.NaN;
  if (Number.isNaN(server)) return undefined;
  return Math.round(server + 500 - (answer.sentAt + answer.receivedAt) / 2);
}

/** etcd's HTTP `/version` on its client URL: the server version, and its clock from the `Date` header. */
export async function etcdFacts(endpoint: string, timeoutMs: number, tls?: ProbeTls): Promise<ServerFacts> {
  const answer = await get(`${endpoint.replace(/\/+$/, '')}/version`, {
    timeoutMs,
    ...(tls ? { tls } : {}),
  });
  if (answer.status !== 200) return { note: `GET /version answered HTTP ${answer.status}` };
  const version = (JSON.parse(answer.body) as { etcdserver?: unknown }).etcdserver;
  const skewMs = skewOf(answer);
  return {
    ...(typeof version === 'string' ? { version: `etcd ${version}` } : {}),
    ...(skewMs !== undefined ? { skewMs } : { note: 'etcd sent no Date header' }),
  };
}

/** Consul's `/v1/agent/self`: `Config.Version`, and the agent's clock from the `Date` header. */
export async function consulFacts(address: string, timeoutMs: number, token?: string): Promise<ServerFacts> {
  const answer = await get(`${address}/v1/agent/self`, {
    timeoutMs,
    ...(token ? { headers: { 'X-Consul-Token': token } } : {}),
  });
  const skewMs = skewOf(answer);
  const facts: ServerFacts = skewMs !== undefined ? { skewMs } : {};
  if (answer.status !== 200)
    return {
      ...facts,
      note: `GET /v1/agent/self answered HTTP ${answer.status} (the token needs agent read)`,
    };
  const version = (JSON.parse(answer.body) as { Config?: { Version?: unknown } }).Config?.Version;
  return { ...facts, ...(typeof version === 'string' ? { version: `Consul ${version}` } : {}) };
}

/**
 * Instances per service in Consul whatever their checks' state (`/v1/health/state/any`: one
 * request for every service), for the dashboard's healthy / total counts.
 */
export async function consulTotals(
  address: string,
  timeoutMs: number,
  options: { token?: string; datacenter?: string } = {},
): Promise<Map<string, number>> {
  const query = options.datacenter ? `?dc=${encodeURIComponent(options.datacenter)}` : '';
  const answer = await get(`${address}/v1/health/state/any${query}`, {
    timeoutMs,
    ...(options.token ? { headers: { 'X-Consul-Token': options.token } } : {}),
  });
  if (answer.status !== 200) throw new Error(`GET /v1/health/state/any answered HTTP ${answer.status}`);
  const instances = new Map<string, Set<string>>();
  for (const check of JSON.parse(answer.body) as { ServiceName?: string; ServiceID?: string }[]) {
    if (!check.ServiceName || !check.ServiceID) continue;
    const ids = instances.get(check.ServiceName) ?? new Set<string>();
    instances.set(check.ServiceName, ids.add(check.ServiceID));
  }
  return new Map([...instances].map(([service, ids]) => [service, ids.size]));
}
