import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { credentials, ServerCredentials, status } from '@grpc/grpc-js';
import { createMemoryBackend, MemoryStore } from '@rollcall/memory';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerResolver } from '../src/index.js';
import { GreeterClient, type ServedGreeter, startGreeter } from './greeter.js';

const run = promisify(execFile);

/** A test CA and a server certificate it signed for `dnsName` (SAN), made by `openssl` in `dir`. */
async function certificateFor(dir: string, dnsName: string): Promise<{ cert: Buffer; key: Buffer }> {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  writeFileSync(join(dir, `${dnsName}.ext`), `basicConstraints=CA:FALSE\nsubjectAltName=DNS:${dnsName}\n`);
  await run(
    'openssl',
    ['req', ...ec, '-keyout', `${dnsName}.key`, '-out', `${dnsName}.csr`, '-subj', `/CN=${dnsName}`],
    { cwd: dir },
  );
  await run(
    'openssl',
    [
      'x509',
      '-req',
      '-in',
      `${dnsName}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${dnsName}.crt`,
      '-days',
      '2',
      '-extfile',
      `${dnsName}.ext`,
    ],
    { cwd: dir },
  );
  return { cert: readFileSync(join(dir, `${dnsName}.crt`)), key: readFileSync(join(dir, `${dnsName}.key`)) };
}

// The channel's authority is the service name, so with TLS the server must present a certificate
// for that name; `grpc.ssl_target_name_override` names another one.
describe('TLS: the server certificate is checked against the service name', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rollcall-grpc-tls-'));
  const store = new MemoryStore();
  const servers = createMemoryBackend({ store });
  const client = createMemoryBackend({ store });
  const resolver = registerResolver(client.discovery);
  let ca: Buffer;
  const started: ServedGreeter[] = [];
  const channels: GreeterClient[] = [];

  async function tlsGreeter(service: string, id: string, certName: string) {
    const { cert, key } = await certificateFor(dir, certName);
    const greeter = await startGreeter(servers.discovery, service, id, {
      credentials: ServerCredentials.createSsl(null, [{ cert_chain: cert, private_key: key }]),
    });
    started.push(greeter);
  }
  function secureClient(service: string, options = {}) {
    const channel = new GreeterClient(`rollcall:///${service}`, options, credentials.createSsl(ca));
    channels.push(channel);
    return channel;
  }

  beforeAll(async () => {
    await run(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        'ca.key',
        '-out',
        'ca.crt',
        '-days',
        '2',
        '-subj',
        '/CN=rollcall-grpc-test-ca',
      ],
      { cwd: dir },
    );
    ca = readFileSync(join(dir, 'ca.crt'));
    await tlsGreeter('greeter', 'right', 'greeter');
    await tlsGreeter('billing', 'wrong', 'elsewhere.internal');
  });
  afterAll(async () => {
    for (const channel of channels) channel.close();
    await Promise.all(started.map((g) => g.serving.stop()));
    resolver.close();
    await Promise.all([servers.close(), client.close()]);
    store.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a certificate for the service name is accepted', async () => {
    expect(await secureClient('greeter').hello()).toEqual({ ok: true, server: 'right' });
  });

  it('a certificate for another name is refused (UNAVAILABLE), unless grpc.ssl_target_name_override names it', async () => {
    const refused = await secureClient('billing').hello();
    expect(refused).toMatchObject({ ok: false, code: status.UNAVAILABLE });
    // Refused for the name, not for want of a connection.
    expect(refused.ok ? '' : refused.details).toMatch(/Host: billing\. is not in the cert's altnames/);
    const overridden = secureClient('billing', { 'grpc.ssl_target_name_override': 'elsewhere.internal' });
    expect(await overridden.hello()).toEqual({ ok: true, server: 'wrong' });
  });
});
