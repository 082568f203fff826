import { AbortedError, BackendUnavailableError, ClosedError } from '@rollcall/core';
import { abortable } from '@rollcall/core/driver';
import type { ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from 'etcd3';
import type { EtcdConnection } from './connection.js';
import type { EtcdSessionCounters } from './sessions.js';

/** etcd3's duplex keepalive stream, as far as it is used here. */
interface Duplex {
  write(request: ILeaseKeepAliveRequest): boolean;
  end(): void;
  on(event: 'data', listener: (response: ILeaseKeepAliveResponse) => void): unknown;
  on(event: 'error' | 'end' | 'close', listener: (error?: Error) => void): unknown;
  removeAllListeners(): unknown;
}

/** A renewal waiting for its answer. `settled` once answered, aborted or failed: a late answer is then dropped. */
interface Outstanding {
  settled: boolean;
  resolve(alive: boolean): void;
  reject(error: Error): void;
}

/**
 * One long-lived `LeaseKeepAlive` stream per client, shared by every lease of the client. A renewal
 * writes the lease id and waits for the answer to that request: etcd answers each request on a
 * stream in order, so answers are matched to requests per lease id, first in first out (a request
 * whose caller gave up still takes its answer, so a late answer never confirms a later renewal).
 * The stream is opened on first use and again after it fails; a failure fails every renewal waiting.
 */
export class KeepaliveStream {
  private stream: Duplex | undefined;
  private opening: Promise<Duplex> | undefined;
  private readonly outstanding = new Map<string, Outstanding[]>();
  private closed = false;

  constructor(
    private readonly conn: EtcdConnection,
    private readonly counters: EtcdSessionCounters,
  ) {}

  /** Renews `lease`: `true` once etcd renewed it, `false` when etcd says it does not exist. */
  async renew(lease: string, signal: AbortSignal): Promise<boolean> {
    if (this.closed) throw new ClosedError('etcd backend');
    const stream = await this.open(signal);
    return new Promise<boolean>((resolve, reject) => {
      const entry: Outstanding = {
        settled: false,
        resolve: (alive) => {
          if (entry.settled) return;
          entry.settled = true;
          signal.removeEventListener('abort', onAbort);
          resolve(alive);
        },
        reject: (error) => {
          if (entry.settled) return;
          entry.settled = true;
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      const onAbort = () => entry.reject(new AbortedError(signal.reason));
      if (signal.aborted) return onAbort();
      signal.addEventListener('abort', onAbort, { once: true });
      const queue = this.outstanding.get(lease) ?? [];
      queue.push(entry);
      this.outstanding.set(lease, queue);
      this.counters.keepalives += 1;
      try {
        stream.write({ ID: lease });
      } catch (error) {
        this.fail(stream, error);
      }
    });
  }

  /** Ends the stream; renewals waiting fail. Idempotent. */
  close(): void {
    this.closed = true;
    if (this.stream) this.fail(this.stream, new ClosedError('etcd backend'));
  }

  private open(signal: AbortSignal): Promise<Duplex> {
    if (this.stream) return Promise.resolve(this.stream);
    this.opening ??= (async () => {
      try {
        const stream = (await this.conn.client.leaseClient.leaseKeepAlive()) as unknown as Duplex;
        if (this.closed) {
          stream.end();
          throw new ClosedError('etcd backend');
        }
        stream.on('data', (response) => this.answer(response));
        stream.on('error', (error) => this.fail(stream, error));
        stream.on('end', () => this.fail(stream, new Error('keepalive stream ended')));
        this.stream = stream;
        return stream;
      } finally {
        this.opening = undefined;
      }
    })();
    return abortable(
      this.opening.catch((error) => {
        throw this.conn.error(error, 'open the keepalive stream');
      }),
      signal,
    );
  }

  private answer(response: ILeaseKeepAliveResponse): void {
    const id = String(response.ID);
    const queue = this.outstanding.get(id);
    const entry = queue?.shift();
    if (queue && queue.length === 0) this.outstanding.delete(id);
    if (!entry) return;
    this.counters.keepaliveAcks += 1;
    // etcd answers a keepalive for a lease it does not know with TTL <= 0.
    entry.resolve(Number(response.TTL) > 0);
  }

  private fail(stream: Duplex, error: unknown): void {
    if (this.stream !== stream) return;
    this.stream = undefined;
    stream.removeAllListeners();
    // etcd3 may still emit on it; an 'error' with no listener would throw.
    stream.on('error', () => {});
    try {
      stream.end();
    } catch {
      // already ended
    }
    const mapped =
      error instanceof ClosedError
        ? error
        : new BackendUnavailableError(
            'etcd',
            `keepalive stream failed: ${this.conn.redact(String((error as Error)?.message ?? error))}`,
          );
    const waiting = [...this.outstanding.values()].flat();
    this.outstanding.clear();
    for (const entry of waiting) entry.reject(mapped);
  }
}
