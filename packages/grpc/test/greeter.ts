// A tiny gRPC greeter for the tests: JSON on the wire (no .proto needed), real grpc-js servers
// on loopback ports, each counting the calls it answered, and a client calling through any target.
import {
  type ChannelCredentials,
  type ChannelOptions,
  Client,
  credentials,
  Metadata,
  Server,
  type ServerCredentials,
  type ServiceDefinition,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import type { ServiceDiscovery } from '@rollcall/core';
import { type GrpcServing, serveGrpc } from '../src/index.js';

interface HelloRequest {
  name: string;
  delayMs?: number;
}
interface HelloReply {
  message: string;
  server: string;
}

const json = {
  serialize: (value: unknown) => Buffer.from(JSON.stringify(value)),
  deserialize: (bytes: Buffer) => JSON.parse(bytes.toString()),
};

export const greeterService: ServiceDefinition = {
  sayHello: {
    path: '/rollcall.test.Greeter/SayHello',
    requestStream: false,
    responseStream: false,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
  },
};

/** A greeter server: answers with its own name and counts the calls it got. */
export class GreeterServer {
  readonly server = new Server();
  calls = 0;
  /** `performance.now()` of the last call received. */
  lastCallAt = Number.NEGATIVE_INFINITY;
  constructor(readonly name: string) {
    this.server.addService(greeterService, {
      sayHello: (
        call: { request: HelloRequest },
        callback: (error: ServiceError | null, reply?: HelloReply) => void,
      ) => {
        this.calls += 1;
        this.lastCallAt = performance.now();
        const answer = () => callback(null, { message: `hello ${call.request.name}`, server: this.name });
        if (call.request.delayMs) setTimeout(answer, call.request.delayMs);
        else answer();
      },
    });
  }
}

/** A greeter bound and registered by {@link serveGrpc}. */
export type ServedGreeter = GreeterServer & { serving: GrpcServing };

/**
 * Starts a greeter named `id` on a free loopback port and registers it as an instance of `service`
 * through {@link serveGrpc}.
 */
export async function startGreeter(
  discovery: ServiceDiscovery,
  service: string,
  id: string,
  extra: { weight?: number; credentials?: ServerCredentials; drainMs?: number; ttlSeconds?: number } = {},
): Promise<ServedGreeter> {
  const greeter = new GreeterServer(id);
  const serving = await serveGrpc(greeter.server, {
    discovery,
    instance: { service, id, host: '127.0.0.1', ...(extra.weight ? { weight: extra.weight } : {}) },
    listenHost: '127.0.0.1',
    port: 0,
    drainMs: extra.drainMs ?? 0,
    shutdownTimeoutMs: 2000,
    ...(extra.credentials ? { credentials: extra.credentials } : {}),
    ...(extra.ttlSeconds ? { ttlSeconds: extra.ttlSeconds } : {}),
  });
  return Object.assign(greeter, { serving });
}

/** The outcome of one call: the answering server's name, or the gRPC error. */
export type CallResult = { ok: true; server: string } | { ok: false; code: status; details: string };

/** A greeter client on any target (`rollcall:///greeter`, `ipv4:127.0.0.1:5000`, ...). */
export class GreeterClient extends Client {
  constructor(
    target: string,
    options: ChannelOptions = {},
    creds: ChannelCredentials = credentials.createInsecure(),
  ) {
    super(target, creds, options);
  }

  /** One call with a deadline (default 5 s); never rejects. */
  hello(name = 'test', options: { deadlineMs?: number; delayMs?: number; waitForReady?: boolean } = {}) {
    return new Promise<CallResult>((resolve) => {
      this.makeUnaryRequest<HelloRequest, HelloReply>(
        greeterService.sayHello!.path,
        json.serialize,
        json.deserialize,
        { name, ...(options.delayMs ? { delayMs: options.delayMs } : {}) },
        new Metadata(),
        {
          deadline: Date.now() + (options.deadlineMs ?? 5000),
          ...(options.waitForReady ? { waitForReady: true } : {}),
        },
        (error, reply) => {
          if (error) resolve({ ok: false, code: error.code, details: error.details });
          else resolve({ ok: true, server: reply!.server });
        },
      );
    });
  }

  /** `n` sequential calls; the answering servers by name, and every failure. */
  async helloMany(n: number): Promise<{ servers: Map<string, number>; failures: CallResult[] }> {
    const servers = new Map<string, number>();
    const failures: CallResult[] = [];
    for (let i = 0; i < n; i++) {
      const result = await this.hello();
      if (result.ok) servers.set(result.server, (servers.get(result.server) ?? 0) + 1);
      else failures.push(result);
    }
    return { servers, failures };
  }
}

/** Calls made by {@link startTraffic}: when each started and how it ended. */
export interface Traffic {
  readonly results: { at: number; result: CallResult }[];
  failures(): CallResult[];
  /** Calls answered by `server` so far. */
  countFor(server: string): number;
  stop(): Promise<void>;
}

/** Keeps `concurrency` loops of back-to-back calls (paced by 2 ms) running until `stop()`. */
export function startTraffic(client: GreeterClient, concurrency = 2): Traffic {
  const results: Traffic['results'] = [];
  let running = true;
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      results.push({ at: performance.now(), result: await client.hello() });
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
  });
  return {
    results,
    failures: () => results.filter((r) => !r.result.ok).map((r) => r.result),
    countFor: (server) => results.filter((r) => r.result.ok && r.result.server === server).length,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

/** True once the last `n` calls of `traffic` all started after `since`, succeeded, and none reached `server`. */
export function recentlyAvoided(traffic: Traffic, server: string, since: number, n = 20): boolean {
  const recent = traffic.results.slice(-n);
  return (
    recent.length === n && recent.every((r) => r.at > since && r.result.ok && r.result.server !== server)
  );
}
