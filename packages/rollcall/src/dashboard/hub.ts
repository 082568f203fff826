import { type Backend, type KvEvent, type Logger } from '@rollcall/core';
import { sleep } from '@rollcall/core/driver';
import { canListLocks, discoveryHealth, listLocks, migrationOf } from '../capabilities.js';
import { ServiceFeeds, type ServiceView } from './feeds.js';

/** Sends one server-sent event to one browser; `json` is its data, serialized once for every browser. */
export type Send = (event: string, json: string) => void;

/** Options of {@link DashboardHub}. */
export interface HubOptions {
  backend: Backend;
  /** Configuration keys shown: those under this prefix (`''`: every key). */
  kvPrefix: string;
  /** How often the service list is read (new services appear within this). */
  listIntervalMs: number;
  /** How often connection state, locks and the migration comparison are read. */
  pollIntervalMs: number;
  /** Instances per service counting unhealthy ones, where the backend keeps those (Consul); else healthy = total. */
  totals?: () => Promise<Map<string, number>>;
  /** The server the backend talks to, shown on the page (never credentials). */
  server?: string;
  logger: Logger;
}

/** Key names whose values the page never gets (it shows that a value exists, not the value). */
export const SECRET_KEY_PATTERN = /pass(word|wd)?|secret|token|credential|private|api[-_]?key|auth/i;

interface Client {
  send: Send;
  services: Set<string>;
}

const stringify = (value: unknown) =>
  JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));

/**
 * The dashboard's live state, shared by every browser. The first browser starts the backend
 * reads (one discovery watch per listed service, one kv watch, polls of the service list,
 * connection, locks and migration); the last one to leave stops them. Each browser gets the
 * latest of every message on connecting, then every change.
 */
export class DashboardHub {
  readonly feeds: ServiceFeeds;
  private readonly clients = new Set<Client>();
  /** The latest message of each kind (`services`, `service:<name>`, `kv`, ...), replayed to new browsers. */
  private readonly latest = new Map<string, { event: string; data: unknown; text: string }>();
  private listed: string[] = [];
  private totals = new Map<string, number>();
  private views = new Map<string, ServiceView>();
  private running: AbortController | undefined;
  private listError: string | undefined;

  constructor(private readonly options: HubOptions) {
    this.feeds = new ServiceFeeds(options.backend.discovery, (view) => {
      this.views.set(view.service, view);
      this.publishService(view.service);
    });
  }

  /** Browsers connected now. */
  get clientCount(): number {
    return this.clients.size;
  }

  /** Adds a browser: it gets the current state at once, then every change. Returns its disconnect. */
  connect(send: Send): () => void {
    const client: Client = { send, services: new Set() };
    this.clients.add(client);
    send('backend', stringify(this.backendInfo()));
    for (const message of this.latest.values()) send(message.event, message.text);
    for (const service of this.listed) this.subscribe(client, service);
    if (!this.running) this.start();
    return () => {
      if (!this.clients.delete(client)) return;
      for (const service of client.services) this.feeds.release(service);
      if (this.clients.size === 0) this.stop();
    };
  }

  /** Every latest message, as `/api/state` answers. */
  state(): Record<string, unknown> {
    return {
      backend: this.backendInfo(),
      ...Object.fromEntries([...this.latest].map(([key, m]) => [key, m.data])),
    };
  }

  /** Disconnects every browser and stops every read. */
  close(): void {
    for (const client of this.clients) for (const service of client.services) this.feeds.release(service);
    this.clients.clear();
    this.stop();
    this.feeds.close();
  }

  private backendInfo() {
    const { backend, kvPrefix, server } = this.options;
    return {
      name: backend.name,
      server: server ?? null,
      kvPrefix,
      locksListable: canListLocks(backend),
      migration: migrationOf(backend) !== undefined,
    };
  }

  private subscribe(client: Client, service: string): void {
    if (client.services.has(service)) return;
    client.services.add(service);
    this.feeds.acquire(service);
  }

  private unsubscribe(client: Client, service: string): void {
    if (client.services.delete(service)) this.feeds.release(service);
  }

  /** Records `data` as the latest `key` message and sends it to every browser, unless unchanged. */
  private publish(key: string, event: string, data: unknown): void {
    const text = stringify(data);
    if (this.latest.get(key)?.text === text) return;
    this.latest.set(key, { event, data: JSON.parse(text) as unknown, text });
    for (const client of this.clients) client.send(event, text);
  }

  private publishService(service: string): void {
    const view = this.views.get(service);
    if (!view) return;
    const healthy = view.instances.length;
    this.publish(`service:${service}`, 'service', {
      ...view,
      healthy,
      total: Math.max(healthy, this.totals.get(service) ?? healthy),
    });
  }

  private start(): void {
    const running = new AbortController();
    this.running = running;
    const { listIntervalMs, pollIntervalMs } = this.options;
    this.every(listIntervalMs, running.signal, () => this.refreshServices());
    this.every(pollIntervalMs, running.signal, () => this.refreshConnection());
    if (canListLocks(this.options.backend))
      this.every(pollIntervalMs, running.signal, () => this.refreshLocks());
    if (this.options.totals) this.every(pollIntervalMs, running.signal, () => this.refreshTotals());
    this.watchMigration(running.signal);
    void this.watchKv(running.signal);
  }

  private stop(): void {
    this.running?.abort();
    this.running = undefined;
    this.latest.clear();
    this.views.clear();
    this.listed = [];
  }

  /** Runs `fn` now and then `ms` after each run ends, until `signal` aborts; failures are logged, never thrown. */
  private every(ms: number, signal: AbortSignal, fn: () => Promise<void>): void {
    void (async () => {
      while (!signal.aborted) {
        try {
          await fn();
        } catch (error) {
          this.options.logger.warn({ error: String(error) }, 'dashboard: a refresh failed');
        }
        await sleep(ms, signal).catch(() => {});
      }
    })();
  }

  private async refreshServices(): Promise<void> {
    let names: string[];
    try {
      names = await this.options.backend.discovery.listServices();
      this.listError = undefined;
    } catch (error) {
      // Keep the last list: an outage is not an empty registry.
      this.listError = error instanceof Error ? error.message : String(error);
      return;
    }
    if (!this.running) return;
    const gone = this.listed.filter((s) => !names.includes(s));
    this.listed = names;
    for (const client of this.clients) {
      for (const service of names) this.subscribe(client, service);
      for (const service of gone) this.unsubscribe(client, service);
    }
    for (const service of gone) {
      this.views.delete(service);
      this.latest.delete(`service:${service}`);
      const removed = stringify({ service });
      for (const client of this.clients) client.send('service-removed', removed);
    }
    this.publish('services', 'services', { names });
  }

  private async refreshConnection(): Promise<void> {
    const health = discoveryHealth(this.options.backend.discovery, this.options.pollIntervalMs);
    const report = health ? await health : undefined;
    const reachable = report ? report.reachable : this.listError === undefined;
    const error = report?.error ?? this.listError;
    this.publish('connection', 'connection', { reachable, ...(reachable || !error ? {} : { error }) });
  }

  private async refreshLocks(): Promise<void> {
    try {
      this.publish('locks', 'locks', { items: await listLocks(this.options.backend) });
    } catch (error) {
      this.publish('locks', 'locks', {
        items: [],
        error: error instanceof Error ? error.message : String(error),
      });
    }
  }

  private async refreshTotals(): Promise<void> {
    this.totals = (await this.options.totals?.()) ?? new Map();
    for (const service of this.views.keys()) this.publishService(service);
  }

  private watchMigration(signal: AbortSignal): void {
    const migration = migrationOf(this.options.backend);
    if (!migration) return;
    const refresh = async () => {
      const phase = migration.phase;
      try {
        const comparisons = migration.compare ? await migration.compare() : [];
        this.publish('migration', 'migration', { phase, comparisons });
      } catch (error) {
        this.publish('migration', 'migration', {
          phase,
          comparisons: [],
          error: error instanceof Error ? error.message : String(error),
        });
      }
    };
    const off = migration.on?.('phase', () => void refresh());
    signal.addEventListener('abort', () => off?.(), { once: true });
    // Comparing reads both registries: no more often than every 5 s.
    this.every(Math.max(this.options.pollIntervalMs, 5000), signal, refresh);
  }

  private async watchKv(signal: AbortSignal): Promise<void> {
    const { backend, kvPrefix } = this.options;
    const entries = new Map<string, string>();
    const publish = (stale: boolean, error?: string) => {
      const sorted = [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      this.publish('kv', 'kv', {
        prefix: kvPrefix,
        stale,
        ...(error ? { error } : {}),
        entries: sorted.map(([key, value]) =>
          SECRET_KEY_PATTERN.test(key) ? { key, masked: true } : { key, value },
        ),
      });
    };
    try {
      for await (const event of backend.kv.watchPrefix(kvPrefix, { signal }) as AsyncIterable<KvEvent>) {
        if (event.type === 'sync') {
          entries.clear();
          for (const [k, v] of event.entries) entries.set(k, v);
        } else if (event.type === 'change') {
          for (const [k, v] of event.put) entries.set(k, v);
          for (const k of event.deleted) entries.delete(k);
        }
        publish(event.type === 'stale', event.type === 'stale' ? event.error.message : undefined);
      }
    } catch (error) {
      if (!signal.aborted) publish(true, error instanceof Error ? error.message : String(error));
    }
  }
}
