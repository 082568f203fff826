/**
 * What Consul's key/value store holds beyond what the `KeyValueSource` API can say: `flags` (an
 * integer per key that etcd has no place for), values that are not UTF-8 text, and folder keys
 * (ending with `/`, made by the Consul UI). Read straight from the agent's HTTP API, so that
 * `rollcall migrate kv` reports them instead of dropping them silently.
 */

/** Facts about one Consul key that the kv API hides. */
export interface RawKeyInfo {
  /** Consul's `Flags` (0 when unused). */
  flags: number;
  /** False when the value's bytes are not valid UTF-8 (it cannot be copied as text byte for byte). */
  utf8: boolean;
}

/** Reads {@link RawKeyInfo} for every key under a prefix. */
export type KvInspector = (prefix: string) => Promise<Map<string, RawKeyInfo>>;

/** Where the Consul agent is: the `consul` section of the configuration (token never logged). */
export interface ConsulAgentAddress {
  /** Default `127.0.0.1`. */
  host?: string;
  /** Default 8500. */
  port?: number;
  /** HTTPS (with the system's CAs). Default `false`. */
  secure?: boolean;
  /** ACL token, sent as `X-Consul-Token`. */
  token?: string;
  /** Datacenter to read from. Default: the agent's. */
  datacenter?: string;
  /** Request deadline. Default 10000 ms. */
  timeoutMs?: number;
}

/** A {@link KvInspector} on a Consul agent's `GET /v1/kv/<prefix>?recurse`. */
export function consulKvInspector(agent: ConsulAgentAddress = {}): KvInspector {
  const base = `${agent.secure ? 'https' : 'http'}://${agent.host ?? '127.0.0.1'}:${agent.port ?? 8500}`;
  return async (prefix) => {
    const path = prefix.split('/').map(encodeURIComponent).join('/');
    const query = new URLSearchParams({
      recurse: 'true',
      ...(agent.datacenter ? { dc: agent.datacenter } : {}),
    });
    const response = await fetch(`${base}/v1/kv/${path}?${query}`, {
      headers: agent.token ? { 'X-Consul-Token': agent.token } : {},
      signal: AbortSignal.timeout(agent.timeoutMs ?? 10_000),
    });
    const out = new Map<string, RawKeyInfo>();
    if (response.status === 404) return out;
    if (!response.ok) throw new Error(`consul: GET /v1/kv/${path}: HTTP ${response.status}`);
    const items = (await response.json()) as { Key?: unknown; Flags?: unknown; Value?: unknown }[];
    const strict = new TextDecoder('utf-8', { fatal: true });
    for (const item of items) {
      if (typeof item.Key !== 'string') continue;
      let utf8 = true;
      if (typeof item.Value === 'string') {
        try {
          strict.decode(Buffer.from(item.Value, 'base64'));
        } catch {
          utf8 = false;
        }
      }
      out.set(item.Key, { flags: typeof item.Flags === 'number' ? item.Flags : 0, utf8 });
    }
    return out;
  };
}
