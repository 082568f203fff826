import { EventEmitter } from 'node:events';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { AbortedError, BackendUnavailableError, PermissionDeniedError, redactSecrets } from '@rollcall/core';
import { Gate } from '@rollcall/core/driver';
import Consul from 'consul';
import type { ResolvedConsulOptions } from './options.js';

/**
 * A thin typed layer over the `consul` npm client (2.0.1): the calls Rollcall makes, each with a
 * deadline, optional cancellation, response headers where blocking queries need them, and errors
 * mapped to Rollcall's typed errors with the token removed.
 *
 * The client's typings miss the per-call `timeout` and `ctx` options that it honours at run time
 * (papi), so the calls go through the small {@link RawClient} interface below.
 */

/** Per-call options the `consul` client understands (keys are case-insensitive there). */
interface CallOptions {
  timeout?: number;
  ctx?: RequestContext;
  dc?: string;
  index?: string;
  wait?: string;
  filter?: string;
}

/** What papi resolves with for a raw request, and what `ctx.includeResponse` adds in front of the data. */
interface RawResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body?: unknown;
}

interface RawClient {
  agent: {
    check: { pass(options: CallOptions & { id: string; note?: string }): Promise<unknown> };
    service: {
      deregister(options: CallOptions & { id: string }): Promise<unknown>;
      list(options: CallOptions): Promise<unknown>;
    };
  };
  health: { service(options: CallOptions & { service: string; passing?: boolean }): Promise<unknown> };
  catalog: { service: { list(options: CallOptions): Promise<unknown> } };
  status: { leader(options: CallOptions): Promise<unknown> };
  kv: {
    get(options: CallOptions & { key: string; recurse?: boolean }): Promise<unknown>;
    set(options: CallOptions & { key: string; value: string }): Promise<unknown>;
    del(options: CallOptions & { key: string }): Promise<unknown>;
  };
  /** papi's request method: used for service registration (`agent.service.register` drops `Weights`), sessions and transactions. */
  _put(request: {
    name: string;
    path: string;
    type?: 'json';
    body?: unknown;
    timeout?: number;
    ctx?: RequestContext;
  }): Promise<RawResponse>;
  destroy(): void;
}

/** papi aborts a request when its `ctx` emits `cancel`; node-consul returns `[response, data]` when `includeResponse` is set. */
class RequestContext extends EventEmitter {
  readonly includeResponse = true;
}

/** A failed Consul call that reached the agent: its HTTP status is kept for callers that branch on it (404). */
export class ConsulHttpError extends BackendUnavailableError {
  readonly status: number;
  /** The agent's error text (token removed). */
  readonly body: string;
  constructor(status: number, body: string, message: string) {
    super('consul', message);
    this.status = status;
    this.body = body;
  }
}

/** A Consul key/value entry as the client returns it (`Value` already base64-decoded to UTF-8). */
export interface KvItem {
  Key: string;
  Value: string | null;
  ModifyIndex: number;
  CreateIndex?: number;
  Flags?: number;
  /** The session holding the key (`?acquire`), when one does. */
  Session?: string;
}

/** One operation of `PUT /v1/txn` (KV only; `Value` is base64). */
export interface TxnOp {
  KV: {
    Verb:
      | 'get'
      | 'get-tree'
      | 'lock'
      | 'delete'
      | 'delete-cas'
      | 'check-not-exists'
      | 'check-index'
      | 'check-session';
    Key: string;
    Value?: string;
    Flags?: number;
    Index?: number;
    Session?: string;
  };
}

/** A raw KV entry of a transaction result (`Value` still base64, `null` for writes). */
export interface TxnKv {
  Key: string;
  Value: string | null;
  Flags: number;
  Session?: string;
  CreateIndex: number;
  ModifyIndex: number;
}

/** The outcome of `PUT /v1/txn`: applied with its results (HTTP 200), or rolled back with the failed operations (HTTP 409). */
export type TxnOutcome =
  | { ok: true; results: TxnKv[] }
  | { ok: false; errors: { OpIndex: number; What: string }[] };

/** An answer of a query endpoint with its `X-Consul-Index`. */
export interface QueryAnswer<T> {
  data: T;
  /** `X-Consul-Index`, when the agent sent one. */
  index: bigint | undefined;
}

interface PapiLikeError {
  message?: string;
  code?: string;
  isTimeout?: boolean;
  isAbort?: boolean;
  response?: { statusCode?: number; body?: unknown };
}

export class ConsulApi {
  // Private fields: `util.inspect` (console.log of a backend) never shows them, so the token held
  // by the client's headers cannot leak through a logged object.
  readonly #client: RawClient;
  /** A second connection pool for blocking queries: a query held for a whole wait never delays a heartbeat. */
  readonly #blocking: RawClient;
  /** Requests in flight on each pool, at most its size; the others wait in arrival order. */
  readonly #gate: Gate;
  readonly #blockingGate: Gate;
  readonly #secrets: string[];
  readonly #options: ResolvedConsulOptions;
  readonly address: string;

  constructor(options: ResolvedConsulOptions) {
    const { host, port, secure, token } = options;
    this.#options = options;
    const hostPart = host.includes(':') ? `[${host}]` : host;
    this.address = `${secure ? 'https' : 'http'}://${hostPart}:${port}`;
    this.#secrets = token ? [token] : [];
    // The token goes in a header set once for every request (papi's client-level headers), never in a URL.
    const config: Record<string, unknown> = { host: hostPart, port, secure };
    if (token) config.headers = { 'x-consul-token': token };
    // Bounded keep-alive pools (the consul client's default pool is unbounded: a burst of 1,000
    // registrations opened ~1,000 connections and Consul, which allows 200 per client address,
    // reset most of them). Requests beyond a pool's size wait for a free connection.
    const Agent = secure ? HttpsAgent : HttpAgent;
    const client = (maxSockets: number) =>
      new Consul({
        ...config,
        agent: new Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets }),
      } as ConstructorParameters<typeof Consul>[0]) as unknown as RawClient;
    this.#client = client(options.maxConnections);
    this.#blocking = client(options.maxBlockingConnections);
    this.#gate = new Gate(options.maxConnections);
    this.#blockingGate = new Gate(options.maxBlockingConnections);
  }

  private get client(): RawClient {
    return this.#client;
  }

  /** The pool for a request: blocking queries have their own. */
  private pool(blocking: boolean): RawClient {
    return blocking ? this.#blocking : this.#client;
  }

  private get options(): ResolvedConsulOptions {
    return this.#options;
  }

  /** Closes the keep-alive sockets. */
  destroy(): void {
    this.#client.destroy();
    this.#blocking.destroy();
  }

  // ---- agent ----

  /** `PUT /v1/agent/service/register` with the given body (Consul's field names). */
  async registerService(body: Record<string, unknown>, signal?: AbortSignal): Promise<void> {
    await this.call(
      `register ${String(body.Name)}/${String((body.Meta as Record<string, string> | undefined)?.rollcall_id ?? body.ID)}`,
      signal,
      this.options.callTimeoutMs,
      (o) =>
        this.client._put({
          name: 'agent.service.register',
          path: '/agent/service/register',
          type: 'json',
          body,
          ...o,
        }),
    );
  }

  /** `PUT /v1/agent/check/pass/<id>`. */
  async passCheck(checkId: string, signal?: AbortSignal): Promise<void> {
    await this.call('pass the TTL check', signal, this.options.callTimeoutMs, (o) =>
      this.client.agent.check.pass({ id: checkId, ...o }),
    );
  }

  /** `GET /v1/agent/services`: the services registered with this agent, by service ID. */
  async agentServices(): Promise<Record<string, { Meta?: Record<string, string> | null }>> {
    const [, data] = await this.call('list the agent services', undefined, this.options.callTimeoutMs, (o) =>
      this.client.agent.service.list(o),
    );
    return data && typeof data === 'object'
      ? (data as Record<string, { Meta?: Record<string, string> }>)
      : {};
  }

  /** `PUT /v1/agent/service/deregister/<id>`. */
  async deregisterService(serviceId: string): Promise<void> {
    await this.call('deregister the service', undefined, this.options.callTimeoutMs, (o) =>
      this.client.agent.service.deregister({ id: serviceId, ...o }),
    );
  }

  // ---- health, catalog, status ----

  /**
   * `GET /v1/health/service/<name>?passing`. With `index`, a blocking query of at most `waitMs`.
   * `local`: ask the agent's own datacenter even when a `datacenter` option is set. `passing`
   * (default true): only instances whose checks all pass; false lists every instance with its checks.
   */
  async healthService(
    service: string,
    options: {
      index?: bigint;
      waitMs?: number;
      filter?: string;
      signal?: AbortSignal;
      local?: boolean;
      passing?: boolean;
    } = {},
  ): Promise<QueryAnswer<unknown[]>> {
    const blocking = options.index !== undefined && options.index > 0n && options.waitMs !== undefined;
    const timeout = blocking ? this.blockingTimeout(options.waitMs as number) : this.options.callTimeoutMs;
    const query: CallOptions = {};
    if (this.options.datacenter && !options.local) query.dc = this.options.datacenter;
    if (blocking) {
      query.index = String(options.index);
      query.wait = `${Math.ceil((options.waitMs as number) / 1000)}s`;
    }
    if (options.filter) query.filter = options.filter;
    const [response, data] = await this.call(
      `read service '${service}'`,
      options.signal,
      timeout,
      (o) =>
        this.pool(blocking).health.service({
          service,
          ...(options.passing === false ? {} : { passing: true }),
          ...query,
          ...o,
        }),
      blocking,
    );
    return { data: Array.isArray(data) ? data : [], index: indexOf(response) };
  }

  /** `GET /v1/catalog/services`: service name to tags. */
  async catalogServices(): Promise<Record<string, unknown>> {
    const query: CallOptions = this.options.datacenter ? { dc: this.options.datacenter } : {};
    const [, data] = await this.call('list services', undefined, this.options.callTimeoutMs, (o) =>
      this.client.catalog.service.list({ ...query, ...o }),
    );
    return data && typeof data === 'object' ? (data as Record<string, unknown>) : {};
  }

  /** `GET /v1/status/leader`: the leader's address, `''` when there is none. */
  async leader(signal?: AbortSignal): Promise<string> {
    const [, data] = await this.call('ask for the cluster leader', signal, this.options.callTimeoutMs, (o) =>
      this.client.status.leader(o),
    );
    return typeof data === 'string' ? data : '';
  }

  // ---- key/value ----

  /** `GET /v1/kv/<key>`: the entry, or `undefined` when the key does not exist. */
  async kvGet(key: string): Promise<KvItem | undefined> {
    const [, data] = await this.call(`read key '${key}'`, undefined, this.options.callTimeoutMs, (o) =>
      this.client.kv.get({ key, ...this.dc(), ...o }),
    );
    return data && typeof data === 'object' ? (data as KvItem) : undefined;
  }

  /** `GET /v1/kv/<prefix>?recurse`, optionally blocking. A missing prefix (404) is an empty list. */
  async kvList(
    prefix: string,
    options: { index?: bigint; waitMs?: number; signal?: AbortSignal } = {},
  ): Promise<QueryAnswer<KvItem[]>> {
    const blocking = options.index !== undefined && options.index > 0n && options.waitMs !== undefined;
    const timeout = blocking ? this.blockingTimeout(options.waitMs as number) : this.options.callTimeoutMs;
    const query: CallOptions = this.dc();
    if (blocking) {
      query.index = String(options.index);
      query.wait = `${Math.ceil((options.waitMs as number) / 1000)}s`;
    }
    const [response, data] = await this.call(
      `read prefix '${prefix}'`,
      options.signal,
      timeout,
      (o) => this.pool(blocking).kv.get({ key: prefix, recurse: true, ...query, ...o }),
      blocking,
    );
    const items = Array.isArray(data)
      ? (data as KvItem[])
      : data && typeof data === 'object'
        ? [data as KvItem]
        : [];
    return { data: items, index: indexOf(response) };
  }

  /** `PUT /v1/kv/<key>` with the value as the body. */
  async kvSet(key: string, value: string): Promise<void> {
    const [, ok] = await this.call(`write key '${key}'`, undefined, this.options.callTimeoutMs, (o) =>
      this.client.kv.set({ key, value, ...this.dc(), ...o }),
    );
    if (ok === false)
      throw new BackendUnavailableError('consul', `write key '${key}': the agent refused the write`);
  }

  /** `DELETE /v1/kv/<key>`. */
  async kvDelete(key: string): Promise<void> {
    await this.call(`delete key '${key}'`, undefined, this.options.callTimeoutMs, (o) =>
      this.client.kv.del({ key, ...this.dc(), ...o }),
    );
  }

  // ---- sessions and transactions (locks) ----
  // Locks always use the agent's own datacenter: a session belongs to a node of one datacenter.

  /** `PUT /v1/session/create`: the new session's ID. */
  async createSession(body: Record<string, unknown>): Promise<string> {
    const [, data] = await this.call('create a lock session', undefined, this.options.callTimeoutMs, (o) =>
      this.client._put({ name: 'session.create', path: '/session/create', type: 'json', body, ...o }),
    );
    const id = (data as { ID?: unknown } | undefined)?.ID;
    if (typeof id !== 'string' || id === '')
      throw new BackendUnavailableError(
        'consul',
        'create a lock session: the agent answered without a session ID',
      );
    return id;
  }

  /**
   * `PUT /v1/session/renew/<id>`: `true` when the session lives on, `false` when Consul no longer
   * knows it (404, or an empty answer from older agents).
   */
  async renewSession(id: string, signal?: AbortSignal): Promise<boolean> {
    try {
      const [, data] = await this.call('renew the lock session', signal, this.options.callTimeoutMs, (o) =>
        this.client._put({ name: 'session.renew', path: `/session/renew/${encodeURIComponent(id)}`, ...o }),
      );
      return Array.isArray(data) && data.length > 0;
    } catch (error) {
      if (error instanceof ConsulHttpError && error.status === 404) return false;
      throw error;
    }
  }

  /** `PUT /v1/session/destroy/<id>`: deletes the keys it holds (`Behavior: delete`). Unknown IDs are fine. */
  async destroySession(id: string): Promise<void> {
    await this.call('destroy the lock session', undefined, this.options.callTimeoutMs, (o) =>
      this.client._put({ name: 'session.destroy', path: `/session/destroy/${encodeURIComponent(id)}`, ...o }),
    );
  }

  /**
   * `PUT /v1/txn`: the operations apply together or not at all. A rolled-back transaction (HTTP 409)
   * is an answer, not an error. Never cancelled: a write whose fate is unknown must be cleaned up
   * after, and cancelling it would not stop the agent from applying it.
   */
  async txn(what: string, ops: TxnOp[]): Promise<TxnOutcome> {
    const [, data] = await this.call(what, undefined, this.options.callTimeoutMs, async (o) => {
      try {
        return await this.client._put({ name: 'txn', path: '/txn', type: 'json', body: ops, ...o });
      } catch (error) {
        const response = (error as PapiLikeError).response;
        if (response?.statusCode === 409 && response.body && typeof response.body === 'object')
          return response;
        throw error;
      }
    });
    const body = (data ?? {}) as {
      Results?: { KV?: TxnKv }[] | null;
      Errors?: { OpIndex: number; What: string }[] | null;
    };
    if (body.Errors && body.Errors.length > 0) return { ok: false, errors: body.Errors };
    return { ok: true, results: (body.Results ?? []).flatMap((r) => (r.KV ? [r.KV] : [])) };
  }

  /**
   * `GET /v1/kv/<key>` in the agent's datacenter. With `index`, a blocking query that returns once
   * the key's index passes it (modified or deleted) or after `waitMs`.
   */
  async kvRead(
    key: string,
    options: { index?: number; waitMs?: number; signal?: AbortSignal } = {},
  ): Promise<KvItem | undefined> {
    const blocking = options.index !== undefined && options.index > 0 && options.waitMs !== undefined;
    const timeout = blocking ? this.blockingTimeout(options.waitMs as number) : this.options.callTimeoutMs;
    const query: CallOptions = {};
    if (blocking) {
      query.index = String(options.index);
      query.wait = `${Math.ceil((options.waitMs as number) / 1000)}s`;
    }
    const [, data] = await this.call(
      `read key '${key}'`,
      options.signal,
      timeout,
      (o) => this.pool(blocking).kv.get({ key, ...query, ...o }),
      blocking,
    );
    return data && typeof data === 'object' ? (data as KvItem) : undefined;
  }

  /** `GET /v1/kv/<prefix>?recurse` in the agent's datacenter; a missing prefix is an empty list. */
  async kvTree(prefix: string, signal?: AbortSignal): Promise<KvItem[]> {
    const [, data] = await this.call(`read prefix '${prefix}'`, signal, this.options.callTimeoutMs, (o) =>
      this.client.kv.get({ key: prefix, recurse: true, ...o }),
    );
    return Array.isArray(data)
      ? (data as KvItem[])
      : data && typeof data === 'object'
        ? [data as KvItem]
        : [];
  }

  /** `PUT /v1/kv/<key>?cas=0` in the agent's datacenter: `true` when this call created the key. */
  async kvCreate(key: string, value: string): Promise<boolean> {
    const [, ok] = await this.call(`create key '${key}'`, undefined, this.options.callTimeoutMs, (o) =>
      this.client.kv.set({ key, value, cas: '0', ...o } as never),
    );
    return ok === true;
  }

  /** `DELETE /v1/kv/<key>[?cas=<index>]` in the agent's datacenter: `false` when the key changed since `index`. */
  async kvRemove(key: string, cas?: number): Promise<boolean> {
    const [, ok] = await this.call(`delete key '${key}'`, undefined, this.options.callTimeoutMs, (o) =>
      this.client.kv.del({ key, ...(cas === undefined ? {} : { cas: String(cas) }), ...o } as never),
    );
    return ok === true;
  }

  // ---- plumbing ----

  private dc(): CallOptions {
    return this.options.datacenter ? { dc: this.options.datacenter } : {};
  }

  /** A blocking query's deadline: its wait, Consul's jitter of up to wait/16, plus the call deadline. */
  private blockingTimeout(waitMs: number): number {
    return Math.ceil(waitMs + waitMs / 16 + this.options.callTimeoutMs);
  }

  /**
   * Runs one client call with a deadline and optional cancellation; resolves with the response
   * (when the client gives one) and the data. Every failure becomes a Rollcall error without the token.
   */
  private async call(
    what: string,
    signal: AbortSignal | undefined,
    timeout: number,
    run: (options: { timeout: number; ctx: RequestContext }) => Promise<unknown>,
    blocking = false,
  ): Promise<[RawResponse | undefined, unknown]> {
    if (signal?.aborted) throw new AbortedError(signal.reason);
    // Wait for a connection of the pool first: the deadline counts from the moment the request
    // is sent, so a burst queued behind a bounded pool waits its turn instead of timing out.
    const release = await (blocking ? this.#blockingGate : this.#gate).enter(signal);
    const ctx = new RequestContext();
    const onAbort = () => ctx.emit('cancel');
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const result = await run({ timeout, ctx });
      if (Array.isArray(result) && result.length >= 1 && isResponse(result[0])) return [result[0], result[1]];
      if (isResponse(result)) return [result, result.body];
      return [undefined, result];
    } catch (error) {
      if (signal?.aborted) throw new AbortedError(signal.reason);
      throw this.mapError(error, what, timeout);
    } finally {
      signal?.removeEventListener('abort', onAbort);
      release();
    }
  }

  /**
   * Turns a client failure into a Rollcall error. Nothing of the original error object is kept
   * (papi attaches the response, and through it the request headers that carry the token).
   */
  mapError(error: unknown, what: string, timeout = this.options.callTimeoutMs): Error {
    const e = (error ?? {}) as PapiLikeError;
    const clean = (text: string) => redactSecrets(text, this.#secrets);
    const status = e.response?.statusCode;
    if (typeof status === 'number') {
      const raw =
        typeof e.response?.body === 'string'
          ? e.response.body
          : Buffer.isBuffer(e.response?.body)
            ? e.response.body.toString()
            : '';
      const body = clean(raw.trim().slice(0, 300));
      if (status === 403) {
        const reason = /ACL not found/i.test(body)
          ? 'the ACL token is not known to Consul (ACL not found): check the token option or CONSUL_HTTP_TOKEN'
          : `permission denied by Consul's ACLs (${body || 'Permission denied'}): the token's policy does not allow this`;
        return new PermissionDeniedError('consul', `${what}: ${reason}`);
      }
      return new ConsulHttpError(
        status,
        body,
        `${what}: the agent at ${this.address} answered HTTP ${status}${body ? `: ${body}` : ''}`,
      );
    }
    if (e.isTimeout)
      return new BackendUnavailableError(
        'consul',
        `${what}: no answer from the agent at ${this.address} within ${timeout} ms`,
      );
    const code = typeof e.code === 'string' ? e.code : undefined;
    const message = clean(
      typeof e.message === 'string' ? e.message.replace(/^consul: [\w.]+: /, '') : String(error),
    );
    return new BackendUnavailableError(
      'consul',
      `${what}: cannot reach the agent at ${this.address} (${code ?? message})`,
    );
  }
}

function isResponse(value: unknown): value is RawResponse {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as RawResponse).statusCode === 'number' &&
    'headers' in value
  );
}

function indexOf(response: RawResponse | undefined): bigint | undefined {
  const header = response?.headers['x-consul-index'];
  const text = Array.isArray(header) ? header[0] : header;
  if (!text || !/^\d+$/.test(text)) return undefined;
  return BigInt(text);
}

/** True when a check pass failed because the agent does not know the check (it lost its state). */
export function isUnknownCheck(error: unknown): boolean {
  if (!(error instanceof ConsulHttpError)) return false;
  // Consul >= 1.10 answers 404 "Unknown check ID"; 1.8.7 answers 500 `CheckID "<id>" does not have associated TTL`.
  return (
    error.status === 404 ||
    (error.status === 500 && /does not have associated TTL|Unknown check/i.test(error.body))
  );
}

/** True when a deregistration failed only because the service was already gone (404 on Consul >= 1.10; 1.8.7 answers 200). */
export function isUnknownService(error: unknown): boolean {
  return error instanceof ConsulHttpError && (error.status === 404 || /Unknown service/i.test(error.body));
}
