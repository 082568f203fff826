// The benchmark's greeter: JSON on the wire, one unary method.
import { Metadata } from '@grpc/grpc-js';

const PATH = '/rollcall.bench.Greeter/SayHello';
const serialize = (value) => Buffer.from(JSON.stringify(value));
const deserialize = (bytes) => JSON.parse(bytes.toString());

export const greeterDefinition = {
  sayHello: {
    path: PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: serialize,
    requestDeserialize: deserialize,
    responseSerialize: serialize,
    responseDeserialize: deserialize,
  },
};

/** One SayHello on `client` (a plain grpc-js `Client`), with a 5 s deadline. */
export function hello(client) {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest(
      PATH,
      serialize,
      deserialize,
      { name: 'bench' },
      new Metadata(),
      { deadline: Date.now() + 5000 },
      (error, reply) => (error ? reject(error) : resolve(reply)),
    ),
  );
}

/** `concurrency` loops of back-to-back calls until `stop()`; counts calls and failures. */
export function load(client, concurrency) {
  const counts = { ok: 0, failed: 0 };
  let running = true;
  const loops = Array.from({ length: concurrency }, async () => {
    while (running) {
      try {
        await hello(client);
        counts.ok += 1;
      } catch {
        counts.failed += 1;
      }
    }
  });
  return {
    counts,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}
