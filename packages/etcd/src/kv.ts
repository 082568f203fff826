import { type KvDriver, type MirrorFeed, UpstreamCounter } from '@rollcall/core/driver';
import type { EtcdConnection } from './connection.js';
import { ownSubtrees } from './options.js';
import { PrefixWatch } from './prefix-watch.js';

/**
 * The etcd key/value driver. Keys arrive validated and normalized (no leading `/`); key `k` is the
 * etcd key `<kvPrefix>k`. Watches share {@link PrefixWatch} with discovery. The registry, lock and
 * election subtrees under the namespace, as seen through `kvPrefix`, are reserved: core refuses
 * kv keys inside them and leaves them out of wider listings.
 */
export class EtcdKvDriver implements KvDriver {
  readonly backend = 'etcd';
  /** etcd watches held now, by prefix. */
  readonly watches = new UpstreamCounter();
  readonly reservedKeys: readonly string[];
  private readonly liveWatches = new Set<PrefixWatch<string>>();
  private readonly root: string;

  constructor(private readonly conn: EtcdConnection) {
    this.root = conn.options.kvPrefix;
    // Options validation refuses a kvPrefix inside one of these subtrees; a subtree outside
    // kvPrefix cannot be reached by any kv key.
    this.reservedKeys = ownSubtrees(conn.options.namespace)
      .filter((subtree) => subtree.startsWith(this.root))
      .map((subtree) => subtree.slice(this.root.length));
  }

  async get(key: string): Promise<string | undefined> {
    this.conn.assertOpen();
    const value = await this.conn.call(`get '${key}'`, (o) =>
      this.conn.client
        .get(this.root + key)
        .options(o)
        .string(),
    );
    return value ?? undefined;
  }

  async getAll(prefix: string): Promise<Map<string, string>> {
    this.conn.assertOpen();
    const all = await this.conn.call(`get prefix '${prefix}'`, (o) =>
      this.conn.client
        .getAll()
        .prefix(this.root + prefix)
        .options(o)
        .strings(),
    );
    const out = new Map<string, string>();
    for (const [key, value] of Object.entries(all)) out.set(key.slice(this.root.length), value);
    return out;
  }

  async put(key: string, value: string): Promise<void> {
    this.conn.assertOpen();
    await this.conn.call(`put '${key}'`, (o) =>
      this.conn.client
        .put(this.root + key)
        .value(value)
        .options(o)
        .exec(),
    );
  }

  async delete(key: string): Promise<void> {
    this.conn.assertOpen();
    await this.conn.call(`delete '${key}'`, (o) =>
      this.conn.client
        .delete()
        .key(this.root + key)
        .options(o)
        .exec(),
    );
  }

  watch(prefix: string, feed: MirrorFeed<string>): () => void {
    const full = this.root + prefix;
    const root = this.root;
    const watch = new PrefixWatch<string>(
      this.conn,
      full,
      {
        id: (key) => (key.startsWith(full) ? key.slice(root.length) : undefined),
        decode: (_id, value) => value.toString('utf8'),
      },
      feed,
      `prefix '${prefix}'`,
    );
    this.liveWatches.add(watch);
    watch.start();
    return this.watches.track(prefix, () => {
      watch.stop();
      this.liveWatches.delete(watch);
    });
  }

  /** Stops every watch (a simulated crash). */
  stopAll(): void {
    for (const w of this.liveWatches) w.stop();
    this.liveWatches.clear();
    this.watches.clear();
  }
}
