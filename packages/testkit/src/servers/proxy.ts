import * as http from 'node:http';
import * as net from 'node:net';
import { releasePorts, reservePorts } from './ports.js';
import { LOOPBACK } from './util.js';

/** Where a proxy forwards to. */
export interface ProxyTarget {
  host: string;
  port: number;
}

/**
 * A TCP proxy on 127.0.0.1 between a client and a server (e.g. an etcd gRPC client and etcd) that
 * can simulate network faults. Each accepted connection gets its own upstream connection.
 */
export interface TcpProxy extends AsyncDisposable {
  /** Listening port (stays the same across `refuse()` / `accept()`). */
  readonly port: number;
  /** `'127.0.0.1:PORT'`. */
  readonly address: string;
  /** `'http://127.0.0.1:PORT'` (for etcd endpoints). */
  readonly url: string;
  /** Client connections currently open. */
  readonly connections: number;
  /** Client connections accepted since start. */
  readonly totalConnections: number;
  /** True between `blackhole()` and `heal()`. */
  readonly blackholed: boolean;
  /**
   * Network partition: keep accepting connections but forward nothing in either direction. Both
   * sockets of every connection stop being read, so bytes sent meanwhile wait in socket/kernel
   * buffers (the senders see TCP back-pressure, no error, no FIN, no RST); new connections are
   * accepted but not connected upstream; a side that closes is not told to the other side.
   *
   * `direction` holds back one way only: `'replies'` forwards the client's requests but none of
   * the server's answers (the server acts on keepalives and writes; the client hears nothing),
   * `'requests'` the reverse. Default `'both'`.
   */
  blackhole(direction?: 'both' | 'requests' | 'replies'): void;
  /**
   * End the partition: forwarding resumes and the bytes held back are delivered in order (like TCP
   * retransmission after a short partition; nothing is dropped). Connections accepted during the
   * partition are connected upstream now; connections whose other side closed meanwhile are
   * destroyed.
   */
  heal(): void;
  /** Destroy every open connection with a TCP RST on both sides. The listener stays open. */
  reset(): void;
  /** Close the listener: new connections get ECONNREFUSED. Open connections are kept. */
  refuse(): void;
  /** Listen again on the same port after `refuse()`; resolves once listening. */
  accept(): Promise<void>;
  /** Close the listener and destroy every connection. Idempotent. */
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket | undefined;
  clientClosed: boolean;
  upstreamClosed: boolean;
}

function listen(server: net.Server, port: number): Promise<number> {
  return new Promise((resolveListen, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port, LOOPBACK, () => {
      server.removeListener('error', onError);
      const address = server.address();
      if (address === null || typeof address === 'string') reject(new Error('proxy has no TCP address'));
      else resolveListen(address.port);
    });
  });
}

class TcpProxyImpl implements TcpProxy {
  port = 0;
  totalConnections = 0;
  /** Client-to-server bytes held back. */
  private holdRequests = false;
  /** Server-to-client bytes held back. */
  private holdReplies = false;
  private server: net.Server | undefined;
  private readonly pairs = new Set<Pair>();
  private closing: Promise<void> | undefined;

  constructor(private readonly target: ProxyTarget) {}

  get address(): string {
    return `${LOOPBACK}:${this.port}`;
  }

  get url(): string {
    return `http://${this.address}`;
  }

  get connections(): number {
    return this.pairs.size;
  }

  get blackholed(): boolean {
    return this.holdRequests || this.holdReplies;
  }

  async open(port: number): Promise<void> {
    const server = net.createServer({ pauseOnConnect: true }, (socket) => this.onConnection(socket));
    server.on('error', () => {});
    this.port = await listen(server, port);
    this.server = server;
  }

  private onConnection(client: net.Socket): void {
    if (this.closing) {
      client.destroy();
      return;
    }
    this.totalConnections++;
    const pair: Pair = { client, upstream: undefined, clientClosed: false, upstreamClosed: false };
    this.pairs.add(pair);
    client.setNoDelay(true);
    client.on('error', () => {});
    client.on('close', () => {
      pair.clientClosed = true;
      if (this.blackholed) return; // the other side must not notice during a partition
      this.pairs.delete(pair);
      pair.upstream?.destroy();
    });
    // A full partition does not even connect; a one-way one connects and holds its direction back.
    if (!(this.holdRequests && this.holdReplies)) this.connectUpstream(pair);
  }

  private connectUpstream(pair: Pair): void {
    const upstream = net.connect({ host: this.target.host, port: this.target.port });
    pair.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('error', () => {});
    upstream.on('close', () => {
      pair.upstreamClosed = true;
      if (this.blackholed) return;
      this.pairs.delete(pair);
      pair.client.destroy();
    });
    this.pump(pair.client, upstream, () => this.holdRequests);
    this.pump(upstream, pair.client, () => this.holdReplies);
    if (!this.holdRequests) pair.client.resume();
    if (this.holdReplies) upstream.pause();
  }

  private pump(from: net.Socket, to: net.Socket, held: () => boolean): void {
    from.on('data', (chunk: Buffer) => {
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => {
          if (!held()) from.resume();
        });
      }
    });
    from.on('end', () => to.end());
  }

  blackhole(direction: 'both' | 'requests' | 'replies' = 'both'): void {
    if (direction !== 'replies') this.holdRequests = true;
    if (direction !== 'requests') this.holdReplies = true;
    for (const pair of this.pairs) {
      if (this.holdRequests) pair.client.pause();
      if (this.holdReplies) pair.upstream?.pause();
    }
  }

  heal(): void {
    if (!this.blackholed) return;
    this.holdRequests = false;
    this.holdReplies = false;
    for (const pair of [...this.pairs]) {
      if (pair.clientClosed || pair.upstreamClosed) {
        this.pairs.delete(pair);
        pair.client.destroy();
        pair.upstream?.destroy();
      } else if (pair.upstream === undefined) {
        this.connectUpstream(pair);
      } else {
        pair.client.resume();
        pair.upstream.resume();
      }
    }
  }

  reset(): void {
    for (const pair of [...this.pairs]) {
      this.pairs.delete(pair);
      pair.client.resetAndDestroy();
      pair.upstream?.resetAndDestroy();
    }
  }

  refuse(): void {
    this.server?.close();
    this.server = undefined;
  }

  async accept(): Promise<void> {
    if (this.server || this.closing) return;
    await this.open(this.port);
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.holdRequests = false;
      this.holdReplies = false;
      const server = this.server;
      this.server = undefined;
      for (const pair of this.pairs) {
        pair.client.destroy();
        pair.upstream?.destroy();
      }
      this.pairs.clear();
      if (server) await new Promise<void>((r) => server.close(() => r()));
      releasePorts([this.port]);
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Starts a {@link TcpProxy} on a free loopback port forwarding to `target`.
 *
 * @example
 * const proxy = await startTcpProxy({ host: '127.0.0.1', port: etcd.clientPort });
 * // give the client proxy.url instead of etcd.clientUrl, then proxy.blackhole() / heal()
 */
export async function startTcpProxy(target: ProxyTarget): Promise<TcpProxy> {
  for (let attempt = 1; ; attempt++) {
    const [port] = (await reservePorts(1)) as [number];
    const proxy = new TcpProxyImpl(target);
    try {
      await proxy.open(port);
      return proxy;
    } catch (err) {
      releasePorts([port]);
      // taken between the check and the bind by a process that is not a testkit's: pick another
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 3) throw err;
    }
  }
}

/** One request seen by a {@link CountingHttpProxy}. */
export interface RecordedRequest {
  /** HTTP method, e.g. `'GET'`. */
  readonly method: string;
  /** Path including the query string, e.g. `'/v1/health/service/orders?index=12&wait=5s'`. */
  readonly path: string;
  /** `Date.now()` when the request arrived. */
  readonly at: number;
}

/** An HTTP reverse proxy on 127.0.0.1 that records every request it forwards (e.g. to Consul). */
export interface CountingHttpProxy extends AsyncDisposable {
  /** Listening port. */
  readonly port: number;
  /** `'127.0.0.1:PORT'`. */
  readonly address: string;
  /** `'http://127.0.0.1:PORT'`. */
  readonly url: string;
  /** Requests seen since start or the last `reset()`, in arrival order. */
  readonly requests: ReadonlyArray<RecordedRequest>;
  /** Number of recorded requests matching `filter` (all when omitted). */
  count(filter?: (r: { method: string; path: string }) => boolean): number;
  /** Forget the recorded requests. */
  reset(): void;
  /** Close the listener and every connection (in-flight requests are aborted). Idempotent. */
  close(): Promise<void>;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
]);

function endToEnd(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

class CountingHttpProxyImpl implements CountingHttpProxy {
  port = 0;
  readonly requests: RecordedRequest[] = [];
  private readonly agent = new http.Agent({ keepAlive: true });
  private readonly server: http.Server;
  private closing: Promise<void> | undefined;

  constructor(private readonly target: ProxyTarget) {
    this.server = http.createServer((req, res) => this.forward(req, res));
    this.server.keepAliveTimeout = 60_000;
  }

  get address(): string {
    return `${LOOPBACK}:${this.port}`;
  }

  get url(): string {
    return `http://${this.address}`;
  }

  async open(): Promise<void> {
    this.port = await listen(this.server as net.Server, 0);
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse): void {
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    this.requests.push({ method, path, at: Date.now() });
    const upstream = http.request(
      {
        host: this.target.host,
        port: this.target.port,
        method,
        path,
        headers: endToEnd(req.headers),
        agent: this.agent,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.statusMessage, endToEnd(upRes.headers));
        upRes.pipe(res);
        upRes.on('error', () => res.destroy());
      },
    );
    upstream.on('error', (err) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`counting proxy: upstream ${this.target.host}:${this.target.port} failed: ${err.message}\n`);
      } else {
        res.destroy();
      }
    });
    // Client went away (e.g. an aborted blocking query): abort the upstream request too.
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    req.pipe(upstream);
  }

  count(filter?: (r: { method: string; path: string }) => boolean): number {
    return filter ? this.requests.filter(filter).length : this.requests.length;
  }

  reset(): void {
    this.requests.length = 0;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      const closed = new Promise<void>((r) => this.server.close(() => r()));
      this.server.closeAllConnections();
      this.agent.destroy();
      await closed;
    })();
    return this.closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Starts a {@link CountingHttpProxy} on a free loopback port forwarding to `target` (streaming, so
 * Consul blocking queries work; hop-by-hop headers are not forwarded).
 */
export async function startCountingHttpProxy(target: ProxyTarget): Promise<CountingHttpProxy> {
  const proxy = new CountingHttpProxyImpl(target);
  await proxy.open();
  return proxy;
}
