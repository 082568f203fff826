import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '@rollcall/core';
import { afterAll, describe, expect, it } from 'vitest';
import { availableBackends, createContainer, loadConfig, rollcallModule } from '../src/index.js';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function configFile(content: unknown): string {
  const dir = mkdtempSync(join(tmpdir(), 'rollcall-config-'));
  dirs.push(dir);
  const file = join(dir, 'rollcall.config.json');
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

const file = configFile({
  default: { consul: { pollIntervalMs: 6000 } },
  development: { backend: 'memory' },
  staging: { backend: 'consul', consul: { host: 'consul.staging', port: 8500 } },
  production: {
    backend: 'etcd',
    etcd: { endpoints: ['http://etcd-1:2379', 'http://etcd-2:2379'], namespace: '/prod/' },
  },
});

describe('loadConfig', () => {
  it('picks the section by environment, then ROLLCALL_ENV, then NODE_ENV, then development', () => {
    expect(loadConfig({ file, env: {} }).backend).toBe('memory');
    expect(loadConfig({ file, env: { NODE_ENV: 'production' } }).backend).toBe('etcd');
    expect(loadConfig({ file, env: { NODE_ENV: 'production', ROLLCALL_ENV: 'staging' } }).backend).toBe(
      'consul',
    );
    expect(loadConfig({ file, environment: 'development', env: { ROLLCALL_ENV: 'staging' } }).backend).toBe(
      'memory',
    );
  });

  it('merges the default section under the environment and environment variables on top', () => {
    const staging = loadConfig({
      file,
      environment: 'staging',
      env: { CONSUL_HTTP_ADDR: 'https://consul.internal:8501', CONSUL_HTTP_TOKEN: 's3cr3t' },
    });
    expect(staging).toEqual({
      backend: 'consul',
      consul: { host: 'consul.internal', port: 8501, secure: true, token: 's3cr3t', pollIntervalMs: 6000 },
    });
    const prod = loadConfig({
      file,
      environment: 'production',
      env: { ETCD_ENDPOINTS: 'http://a:2379, http://b:2379', ETCD_USERNAME: 'svc', ETCD_PASSWORD: 'hunter2' },
    });
    expect(prod.etcd).toEqual({
      endpoints: ['http://a:2379', 'http://b:2379'],
      namespace: '/prod/',
      auth: { username: 'svc', password: 'hunter2' },
    });
    expect(loadConfig({ file, environment: 'production', env: { ROLLCALL_BACKEND: 'memory' } }).backend).toBe(
      'memory',
    );
  });

  it('throws a ConfigError listing every bad field, without echoing secrets', () => {
    const bad = configFile({
      production: {
        backend: 'etcd',
        etcd: {
          endpoints: ['etcd:2379'],
          callTimeoutMs: -1,
          auth: { username: 'u', password: 'topsecret' },
          endpointz: [],
        },
        consul: { pollIntervalMs: 1000 },
      },
    });
    const error = (() => {
      try {
        loadConfig({ file: bad, environment: 'production', env: {} });
      } catch (e) {
        return e;
      }
    })() as ConfigError;
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.code).toBe('ERR_CONFIG');
    const paths = error.issues.map((i) => i.path).sort();
    expect(paths).toEqual([
      'consul.pollIntervalMs',
      'etcd.callTimeoutMs',
      'etcd.endpoints[0]',
      'etcd.endpointz',
    ]);
    expect(error.message).toContain('at least 5000');
    expect(error.message).not.toContain('topsecret');
  });

  it('refuses to guess a backend outside development and test', () => {
    expect(() => loadConfig({ file: join(tmpdir(), 'nope', 'x.json'), env: {} })).toThrow(/file not found/);
    const empty = configFile({});
    expect(() => loadConfig({ file: empty, environment: 'production', env: {} })).toThrow(ConfigError);
    expect(loadConfig({ file: empty, environment: 'test', env: {} })).toEqual({ backend: 'memory' });
    expect(() => loadConfig({ file: configFile('{not json'), env: {} })).toThrow(/cannot read JSON/);
  });

  it('an unknown backend name is a ConfigError that lists the valid ones', () => {
    const error = (() => {
      try {
        loadConfig({ file, env: { ROLLCALL_BACKEND: 'zookeeper' } });
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(error).toBeInstanceOf(ConfigError);
    expect(error!.issues[0]!.path).toBe('backend');
    expect(error!.message).toContain('memory');
  });

  it('every backend of this installation is available, migrating included; others are refused', () => {
    expect(availableBackends().sort()).toEqual(['consul', 'etcd', 'memory', 'migrating']);
    expect(() => rollcallModule({ backend: 'nope' } as never)).toThrow(ConfigError);
    expect(() => createContainer({ backend: 'nope' } as never)).toThrow(ConfigError);
  });
});
