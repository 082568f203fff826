import type { MirrorFeed } from '@rollcall/core/driver';
import type { IWatchResponse } from 'etcd3';
import { describe, expect, it } from 'vitest';
import { EtcdConnection } from '../src/connection.js';
import { resolveEtcdOptions } from '../src/options.js';
import { PrefixWatch } from '../src/prefix-watch.js';

// The event grouping of PrefixWatch, fed synthetic watch responses (no server: the client never connects).
type Call = ['apply', [string, string][], string[]] | ['confirm'];

function setup() {
  const conn = new EtcdConnection(resolveEtcdOptions({ endpoints: ['http://127.0.0.1:1'] }));
  const calls: Call[] = [];
  const feed: MirrorFeed<string> = {
    replace: () => {},
    apply: (put, deleted) => {
      calls.push(['apply', [...put], [...deleted]]);
    },
    stale: () => {},
    confirm: () => {
      calls.push(['confirm']);
    },
  };
  const watch = new PrefixWatch<string>(
    conn,
    '/p/',
    {
      id: (key) => (key.startsWith('/p/') && !key.slice(3).includes('/') ? key.slice(3) : undefined),
      decode: (_id, value) => (value.toString() === 'bad' ? undefined : value.toString()),
    },
    feed,
    'test',
  );
  const onData = (response: Partial<IWatchResponse>) =>
    (watch as unknown as { onData(r: Partial<IWatchResponse>): void }).onData({
      created: false,
      ...response,
    });
  const event = (type: 'PUT' | 'DELETE', key: string, revision: number, value = '') => ({
    type,
    kv: { key: Buffer.from(key), value: Buffer.from(value), mod_revision: String(revision) },
  });
  return { conn, watch, calls, onData, event };
}

describe('PrefixWatch event handling', () => {
  it('one apply per etcd revision, in order, even when one response carries several', () => {
    const { conn, calls, onData, event } = setup();
    onData({
      header: { revision: '7' } as IWatchResponse['header'],
      events: [
        event('PUT', '/p/a', 5, '1'),
        event('PUT', '/p/b', 5, '2'),
        event('DELETE', '/p/a', 6),
        event('PUT', '/p/c', 7, '3'),
      ] as unknown as IWatchResponse['events'],
    });
    expect(calls).toEqual([
      [
        'apply',
        [
          ['a', '1'],
          ['b', '2'],
        ],
        [],
      ],
      ['apply', [], ['a']],
      ['apply', [['c', '3']], []],
    ]);
    conn.close();
  });

  it('skips revisions already mirrored, keys outside the layout, and turns invalid values into removals', () => {
    const { conn, watch, calls, onData, event } = setup();
    onData({
      header: { revision: '10' } as IWatchResponse['header'],
      events: [event('PUT', '/p/x', 10, 'v')] as never,
    });
    expect(watch.mirroredRevision).toBe(10n);
    calls.length = 0;
    onData({
      header: { revision: '12' } as IWatchResponse['header'],
      events: [
        event('PUT', '/p/old', 9, 'stale'),
        event('PUT', '/p/x', 10, 'again'),
        event('PUT', '/p/nested/deep', 11, 'n'),
        event('PUT', '/p/x', 12, 'bad'),
      ] as never,
    });
    expect(calls).toEqual([['apply', [], ['x']]]);
    expect(watch.mirroredRevision).toBe(12n);
    conn.close();
  });

  it('a progress notification confirms the list and advances the revision', () => {
    const { conn, watch, calls, onData } = setup();
    onData({ header: { revision: '42' } as IWatchResponse['header'], events: [] });
    expect(calls).toEqual([['confirm']]);
    expect(watch.mirroredRevision).toBe(42n);
    conn.close();
  });
});

describe('PrefixWatch and server-side cancels (real etcd)', () => {
  it('a cancel for compaction (or with no reason) forces a re-sync; a permission refused is stale, then a plain re-read', async () => {
    const { startEtcd, waitFor } = await import('@rollcall/testkit');
    const etcd = await startEtcd({ name: 'cancels' });
    const conn = new EtcdConnection(
      resolveEtcdOptions({ endpoints: etcd.endpoints, backoff: { initialMs: 50 } }),
    );
    const seen: string[] = [];
    const feed: MirrorFeed<string> = {
      replace: (_entries, options) => {
        seen.push(options?.forceSync ? 'forced sync' : 'sync');
      },
      apply: () => {},
      stale: (error) => {
        seen.push(`stale ${error.name}`);
      },
      confirm: () => {},
    };
    const watch = new PrefixWatch<string>(
      conn,
      '/cancels/',
      { id: (key) => key, decode: (_id, value) => value.toString() },
      feed,
      'test',
    ).start();
    const cancel = async (message: string) => {
      await waitFor(() => (watch as unknown as { watcher?: unknown }).watcher !== undefined, {
        timeoutMs: 5000,
      });
      const watcher = (watch as unknown as { watcher: { emit(e: string, err: Error): void } }).watcher;
      watcher.emit('error', new Error(`Watcher canceled: ${message}`));
    };
    try {
      await waitFor(() => seen.includes('sync'), { timeoutMs: 5000 });
      await cancel('etcdserver: permission denied');
      await waitFor(() => seen.length >= 3, { timeoutMs: 5000 });
      expect(seen).toEqual(['sync', 'stale PermissionDeniedError', 'sync']);
      expect(conn.watchStats).toMatchObject({ forcedSyncs: 0, cancels: 1 });
      await cancel('mvcc: required revision has been compacted');
      await waitFor(() => seen.length >= 4, { timeoutMs: 5000 });
      expect(seen.at(-1)).toBe('forced sync');
      expect(conn.watchStats).toMatchObject({ forcedSyncs: 1, cancels: 1 });
      // etcd 3.4 cancels a compacted watch with no reason at all.
      await cancel('');
      await waitFor(() => seen.length >= 5, { timeoutMs: 5000 });
      expect(seen.at(-1)).toBe('forced sync');
      expect(conn.watchStats).toMatchObject({ forcedSyncs: 2, cancels: 1 });
    } finally {
      watch.stop();
      conn.close();
      await etcd.stop();
    }
  });
});
