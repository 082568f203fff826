import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHealthHandler, type Registration, type ServiceDiscovery } from '@rollcall/core';

/** One running instance of the order service: an HTTP server registered in the registry. */
export interface OrderService {
  readonly id: string;
  readonly port: number;
  readonly registration: Registration;
  /** Graceful stop: deregister first, then stop serving. */
  stop(): Promise<void>;
  /** Stop serving at once without deregistering, like a process killed with SIGKILL. */
  kill(): Promise<void>;
}

/** Starts an order-service instance on a free loopback port and registers it. */
export async function startOrderService(
  discovery: ServiceDiscovery,
  id: string,
  ttlSeconds = 2,
): Promise<OrderService> {
  const health = createHealthHandler(discovery);
  const server: Server = createServer((req, res) => {
    if (req.url === '/health' || req.url === '/livez' || req.url === '/readyz') return health(req, res);
    const match = /^\/orders\/(\w+)$/.exec(req.url ?? '');
    if (!match) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ order: match[1], status: 'shipped', servedBy: id }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const registration = await discovery.register(
    { id, service: 'orders', host: '127.0.0.1', port, version: '1.0.0', metadata: { zone: 'demo' } },
    { ttlSeconds },
  );
  const close = () => new Promise<void>((resolve) => server.close(() => resolve()).closeAllConnections());
  return {
    id,
    port,
    registration,
    async stop() {
      await registration.deregister();
      await close();
    },
    kill: close,
  };
}
