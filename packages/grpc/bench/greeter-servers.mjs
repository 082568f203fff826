#!/usr/bin/env node
// Greeter servers for the throughput benchmark, in their own process so that the measuring
// process runs only client code. Prints one line of JSON with the bound ports, then serves until
// its stdin closes.  Usage: node greeter-servers.mjs <count>
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { greeterDefinition } from './greeter.mjs';

const count = Number(process.argv[2] ?? 2);
const ports = [];
for (let i = 0; i < count; i++) {
  const server = new Server();
  server.addService(greeterDefinition, {
    sayHello: (_call, callback) => callback(null, { server: `s${i}` }),
  });
  ports.push(
    await new Promise((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, port) =>
        e ? reject(e) : resolve(port),
      ),
    ),
  );
}
process.stdout.write(`${JSON.stringify({ ports })}\n`);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
