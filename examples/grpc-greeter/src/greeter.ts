/** The Greeter service from `proto/greeter.proto`, loaded at run time with `@grpc/proto-loader`. */
import { fileURLToPath } from 'node:url';
import {
  type ChannelCredentials,
  type Client,
  type ClientOptions,
  credentials,
  loadPackageDefinition,
  type ServerUnaryCall,
  type ServiceDefinition,
  type ServiceError,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';

export interface HelloRequest {
  name: string;
}
export interface HelloReply {
  message: string;
  instance: string;
}

export interface GreeterClient extends Client {
  sayHello(
    request: HelloRequest,
    options: { deadline: number },
    callback: (error: ServiceError | null, reply?: HelloReply) => void,
  ): void;
}

type GreeterConstructor = {
  new (target: string, creds: ChannelCredentials, options?: ClientOptions): GreeterClient;
  service: ServiceDefinition;
};

const definition = loadSync(fileURLToPath(new URL('../proto/greeter.proto', import.meta.url)), {
  keepCase: true,
  defaults: true,
});
const Greeter = (
  loadPackageDefinition(definition) as unknown as { rollcall: { examples: { Greeter: GreeterConstructor } } }
).rollcall.examples.Greeter;

/** The service definition to `server.addService(greeterService, handlers)`. */
export const greeterService: ServiceDefinition = Greeter.service;

/** The handlers of one greeter instance: it answers with its own id. */
export function greeterHandlers(instance: string) {
  return {
    sayHello(call: ServerUnaryCall<HelloRequest, HelloReply>, callback: sendUnaryData<HelloReply>) {
      callback(null, { message: `Hello, ${call.request.name}`, instance });
    },
  };
}

/** A Greeter client on `target` (here always `rollcall:///greeter`), without TLS. */
export function greeterClient(target: string): GreeterClient {
  return new Greeter(target, credentials.createInsecure());
}

/** One SayHello with a 2 s deadline: the answering instance, or the error. */
export function sayHello(client: GreeterClient, name: string): Promise<HelloReply> {
  return new Promise((resolve, reject) =>
    client.sayHello({ name }, { deadline: Date.now() + 2000 }, (error, reply) =>
      error ? reject(error) : resolve(reply!),
    ),
  );
}
