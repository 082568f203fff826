import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONSUL_OPTION_NAMES } from '@rollcall/consul';
import { ConfigError } from '@rollcall/core';
import { ETCD_OPTION_NAMES } from '@rollcall/etcd';
import { Ajv2020 } from 'ajv/dist/2020.js';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  availableBackends,
  configFileJsonSchema,
  createContainer,
  ENV_VARIABLES,
  loadConfig,
  rollcallModule,
} from '../src/index.js';

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

  it('ETCD_ENDPOINTS takes host:port as etcdctl does: http://, or https:// when a TLS file is set', () => {
    const endpoints = (env: Record<string, string>) =>
      loadConfig({ file, environment: 'production', env }).etcd?.endpoints;
    expect(endpoints({ ETCD_ENDPOINTS: 'localhost:2379' })).toEqual(['http://localhost:2379']);
    expect(endpoints({ ETCD_ENDPOINTS: '10.0.0.1:2379,[::1]:2379, http://c:2379' })).toEqual([
      'http://10.0.0.1:2379',
      'http://[::1]:2379',
      'http://c:2379',
    ]);
    const ca = configFile('-----BEGIN CERTIFICATE-----\n');
    expect(endpoints({ ETCD_ENDPOINTS: 'etcd-1:2379', ETCD_CA_FILE: ca })).toEqual(['https://etcd-1:2379']);
  });

  it('an unknown backend name lists only the backends this installation can create', () => {
    const error = (() => {
      try {
        loadConfig({ file, env: { ROLLCALL_BACKEND: 'nosuch' } });
      } catch (e) {
        return e as ConfigError;
      }
    })();
    expect(error!.message).toBe(
      `invalid configuration: backend: unknown backend "nosuch"; valid backends: ${availableBackends().join(', ')}`,
    );
    // Every backend this installation has, the migrating one included (its package is installed here).
    expect(availableBackends()).toEqual(['memory', 'etcd', 'consul', 'migrating']);
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

describe('loadConfig against hostile files and environments', () => {
  const caught = (f: () => unknown): unknown => {
    try {
      f();
    } catch (e) {
      return e;
    }
    throw new Error('expected a ConfigError, got a result');
  };

  it('a malformed file is reported by line and column, never quoting its text (it may hold a password)', () => {
    const secret = 'Zq7Xw9Vb3KpJm4';
    const text = `{\n  "production": {\n    "backend": "etcd",\n    "etcd": { "auth": { "username": "u", "password":${secret}" } }\n  }\n}\n`;
    const path = configFile(text);
    const error = caught(() => loadConfig({ file: path, environment: 'production', env: {} })) as ConfigError;
    expect(error).toBeInstanceOf(ConfigError);
    const message = error.message.split(path).join('');
    expect(message).toMatch(/not valid JSON at line 4, column 53/);
    for (let i = 0; i + 4 <= secret.length; i++) expect(message).not.toContain(secret.slice(i, i + 4));
  });

  it('(property) whatever the damage to a file holding a secret, the error names a position and no part of the secret', () => {
    const secret = 'QZXJWVKQZXJWVKQZ';
    const body = JSON.stringify({
      production: { backend: 'etcd', etcd: { auth: { username: 'u', password: secret } } },
    });
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: body.length - 1 }),
        fc.constantFrom('', '"', '}', ',', 'x', '\n', '{'),
        fc.integer({ min: 0, max: 3 }),
        (at, insert, cut) => {
          const text = body.slice(0, at) + insert + body.slice(at + cut);
          let valid = true;
          try {
            JSON.parse(text);
          } catch {
            valid = false;
          }
          fc.pre(!valid);
          const path = configFile(text);
          const error = caught(() => loadConfig({ file: path, environment: 'production', env: {} }));
          expect(error).toBeInstanceOf(ConfigError);
          const message = (error as ConfigError).message.split(path).join('');
          expect(message).toMatch(/not valid JSON at line \d+, column \d+/);
          for (let i = 0; i + 4 <= secret.length; i++) expect(message).not.toContain(secret.slice(i, i + 4));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('bad options are a ConfigError naming them, not a TypeError', () => {
    for (const [options, path] of [
      [{ file: 42 }, 'file'],
      [{ file: '' }, 'file'],
      [{ environment: 42 }, 'environment'],
      [{ environment: '' }, 'environment'],
      [{ env: 42 }, 'env'],
      [{ env: null }, 'env'],
      [{ env: { ETCD_PASSWORD: 42 } }, 'env.ETCD_PASSWORD'],
      [null, ''],
    ] as const) {
      const error = caught(() => loadConfig(options as never)) as ConfigError;
      expect(error, JSON.stringify(options)).toBeInstanceOf(ConfigError);
      expect(error.issues.map((i) => i.path)).toContain(path);
    }
    const dir = mkdtempSync(join(tmpdir(), 'rollcall-config-dir-'));
    dirs.push(dir);
    expect(caught(() => loadConfig({ file: dir, env: {} }))).toBeInstanceOf(ConfigError);
  });

  it('environments named like Object.prototype members are plain absent sections; a file cannot reach Object.prototype', () => {
    for (const environment of ['valueOf', 'toString', 'constructor', '__proto__', 'hasOwnProperty']) {
      const error = caught(() => loadConfig({ file, environment, env: {} })) as ConfigError;
      expect(error, environment).toBeInstanceOf(ConfigError);
      expect(error.issues[0]!.path).toBe('backend');
      const viaEnv = caught(() => loadConfig({ file, env: { ROLLCALL_ENV: environment } }));
      expect(viaEnv).toBeInstanceOf(ConfigError);
    }
    // A section literally named __proto__ (JSON makes it an own key) is used like any other.
    const own = configFile('{"__proto__": {"backend": "memory"}}');
    expect(loadConfig({ file: own, environment: '__proto__', env: {} })).toEqual({ backend: 'memory' });
    // Nested prototype keys are refused by path; nothing leaks into the result or Object.prototype.
    const hostile = configFile(
      '{"production": {"__proto__": {"backend": "etcd", "polluted": "yes"}, "consul": {"constructor": {"prototype": {"polluted": "yes"}}}}}',
    );
    const error = caught(() =>
      loadConfig({ file: hostile, environment: 'production', env: {} }),
    ) as ConfigError;
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.issues.map((i) => i.path).sort()).toEqual(['__proto__', 'consul.constructor']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const section = configFile('{"production": "memory"}');
    expect(
      (caught(() => loadConfig({ file: section, environment: 'production', env: {} })) as ConfigError)
        .issues[0]!.path,
    ).toBe('production');
  });

  it('(property) any file contents and environment variables give a config or a ConfigError, never another error', () => {
    const names = [...Object.keys(ENV_VARIABLES), 'CONSUL_HTTP_ADDR', 'ROLLCALL_ENV', 'NODE_ENV'];
    fc.assert(
      fc.property(
        fc.oneof(fc.json(), fc.string(), fc.constant('{"production": {"backend": "etcd"}}')),
        fc.dictionary(
          fc.constantFrom(...names),
          fc.oneof(fc.string(), fc.constantFrom('valueOf', '__proto__', 'etcd', 'consul', 'http://x:1')),
        ),
        (text, env) => {
          const path = configFile(text);
          try {
            const config = loadConfig({ file: path, env });
            expect(['memory', 'etcd', 'consul', 'migrating']).toContain(config.backend);
          } catch (error) {
            expect(error).toBeInstanceOf(ConfigError);
          }
          expect(({} as Record<string, unknown>).backend).toBeUndefined();
        },
      ),
      { numRuns: 150 },
    );
  });
});

describe('the JSON Schema of rollcall.config.json', () => {
  const schemaFile = new URL('../schema/rollcall.config.schema.json', import.meta.url);
  const committed = JSON.parse(readFileSync(schemaFile, 'utf8')) as Record<string, unknown>;

  it('is the one generated from the zod schema (regenerate: npm run schema -w rollcall)', () => {
    expect(committed).toEqual(configFileJsonSchema());
  });

  it('describes every option the etcd and Consul backends take from a file (not the functions: now, logger)', () => {
    const fileOptions = (names: readonly string[]) =>
      names.filter((n) => n !== 'now' && n !== 'logger').sort();
    const section = (name: 'etcd' | 'consul') =>
      Object.keys(
        (
          (committed.additionalProperties as Record<string, unknown>).properties as Record<
            string,
            { properties: object }
          >
        )[name]!.properties,
      ).sort();
    expect(section('etcd')).toEqual(fileOptions(ETCD_OPTION_NAMES));
    expect(section('consul')).toEqual(fileOptions(CONSUL_OPTION_NAMES));
  });

  it("accepts every example's configuration, which loads in each of its environments; refuses a bad one with the path", () => {
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    const validate = ajv.compile(committed);
    const examples = new URL('../../../examples/', import.meta.url);
    const files = readdirSync(examples)
      .map((name) => new URL(`${name}/rollcall.config.json`, examples))
      .filter((file) => existsSync(file));
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const file of files) {
      const content = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
      expect(validate(content), `${file.pathname}: ${ajv.errorsText(validate.errors)}`).toBe(true);
      for (const environment of Object.keys(content).filter((k) => k !== '$schema' && k !== 'default'))
        expect(loadConfig({ file: fileURLToPath(file), environment, env: {} }).backend).toBeDefined();
    }
    const bad = {
      production: { backend: 'etcd', etcd: { endpoints: 'http://x', callTimeoutMs: -1, bogus: 1 } },
    };
    expect(validate(bad)).toBe(false);
    const paths = (validate.errors ?? []).map((e) => e.instancePath);
    expect(paths).toEqual(
      expect.arrayContaining([
        '/production/etcd/endpoints',
        '/production/etcd/callTimeoutMs',
        '/production/etcd',
      ]),
    );
  });
});
