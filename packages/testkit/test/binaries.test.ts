import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { runCli } from '../src/cli.js';
import { parseConsulVersion } from '../src/servers/consul-version.js';
import {
  consulBinary,
  etcdBinary,
  etcdctlBinary,
  INSTALL_SERVERS_COMMAND,
  locateBinary,
  serversDir,
} from '../src/servers/index.js';

// The real binaries, found the ordinary way before any variable is stubbed (npm test installs them).
let realEtcd: string;
let realConsul: string;
let scratch: string;

/** A new empty directory under the scratch dir. */
function dir(name: string): string {
  const path = join(scratch, name);
  mkdirSync(path, { recursive: true });
  return path;
}

/** A directory holding `name` as a link to `target`, e.g. to put a real binary on a PATH of its own. */
function dirWith(name: string, target: string, sub = ''): string {
  const path = dir(`${name}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(join(path, sub), { recursive: true });
  symlinkSync(target, join(path, sub, name));
  return path;
}

beforeAll(() => {
  realEtcd = etcdBinary();
  realConsul = consulBinary();
  scratch = mkdtempSync(join(tmpdir(), 'rollcall-binaries-'));
});
afterEach(() => {
  vi.unstubAllEnvs();
});
afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

/** Nothing set, an empty PATH, and an empty install cache: nothing is found unless a test adds it. */
function bareEnvironment(): void {
  for (const v of ['ROLLCALL_ETCD_BIN', 'ROLLCALL_ETCDCTL_BIN', 'ROLLCALL_CONSUL_BIN']) vi.stubEnv(v, '');
  vi.stubEnv('PATH', dir('empty-path'));
  vi.stubEnv('ROLLCALL_SERVERS_DIR', dir(`empty-cache-${Math.random().toString(36).slice(2)}`));
}

describe('serversDir', () => {
  it('is $ROLLCALL_SERVERS_DIR (resolved), else $XDG_CACHE_HOME/rollcall/servers, else ~/.cache/rollcall/servers', () => {
    vi.stubEnv('ROLLCALL_SERVERS_DIR', 'relative/servers');
    vi.stubEnv('XDG_CACHE_HOME', '/xdg');
    expect(serversDir()).toBe(resolve('relative/servers'));
    vi.stubEnv('ROLLCALL_SERVERS_DIR', '');
    expect(serversDir()).toBe('/xdg/rollcall/servers');
    // The XDG spec says to ignore a relative value.
    vi.stubEnv('XDG_CACHE_HOME', 'not/absolute');
    expect(serversDir()).toBe(join(homedir(), '.cache', 'rollcall', 'servers'));
    vi.stubEnv('XDG_CACHE_HOME', '');
    expect(serversDir()).toBe(join(homedir(), '.cache', 'rollcall', 'servers'));
  });
});

describe('binary lookup: the variable, then PATH, then the install cache', () => {
  it('etcd: $ROLLCALL_ETCD_BIN wins over PATH, PATH over the cache', () => {
    bareEnvironment();
    const cache = dirWith('etcd', realEtcd, 'etcd/usr/bin');
    vi.stubEnv('ROLLCALL_SERVERS_DIR', cache);
    expect(locateBinary('etcd').found).toEqual({ path: join(cache, 'etcd/usr/bin/etcd'), source: 'cache' });
    const onPath = dirWith('etcd', realEtcd);
    vi.stubEnv('PATH', `${dir('no-etcd-here')}:${onPath}`);
    expect(locateBinary('etcd').found).toEqual({ path: join(onPath, 'etcd'), source: 'PATH' });
    vi.stubEnv('ROLLCALL_ETCD_BIN', realEtcd);
    expect(etcdBinary()).toBe(realEtcd);
  });

  it('a variable that is set must name an executable file: the error names the variable', () => {
    bareEnvironment();
    vi.stubEnv('ROLLCALL_ETCDCTL_BIN', join(scratch, 'missing-etcdctl'));
    expect(() => etcdctlBinary()).toThrow(/ROLLCALL_ETCDCTL_BIN=.*missing-etcdctl is not an executable file/);
  });

  it('nothing found: the error names the install command, the variable and the cache path', () => {
    bareEnvironment();
    const cache = serversDir();
    expect(() => etcdBinary()).toThrow(INSTALL_SERVERS_COMMAND);
    expect(() => etcdctlBinary()).toThrow(/ROLLCALL_ETCDCTL_BIN/);
    expect(() => consulBinary()).toThrow(join(cache, 'consul/usr/bin/consul'));
    expect(INSTALL_SERVERS_COMMAND).toBe('npx rollcall-testkit install-servers');
  });

  it('consul: an accepted Consul on PATH is used; a binary there that is not Consul is passed over, saying why', () => {
    bareEnvironment();
    const notConsul = dirWith('consul', realEtcd);
    const consul = dirWith('consul', realConsul);
    vi.stubEnv('PATH', `${notConsul}:${consul}`);
    expect(locateBinary('consul')).toEqual({
      found: { path: join(consul, 'consul'), source: 'PATH' },
      notes: [`on PATH, ${join(notConsul, 'consul')} does not answer \`consul version\` like Consul`],
    });
    vi.stubEnv('PATH', notConsul);
    expect(() => consulBinary()).toThrow(
      /does not answer `consul version` like Consul.*not in the install cache/,
    );
  });

  it('consul: $ROLLCALL_CONSUL_BIN must be an accepted Consul, else it throws (it was asked for explicitly)', () => {
    bareEnvironment();
    vi.stubEnv('PATH', dirWith('consul', realConsul));
    vi.stubEnv('ROLLCALL_CONSUL_BIN', realEtcd);
    expect(() => consulBinary()).toThrow(
      /^ROLLCALL_CONSUL_BIN: .* does not answer `consul version` like Consul$/,
    );
    vi.stubEnv('ROLLCALL_CONSUL_BIN', realConsul);
    expect(locateBinary('consul').found).toEqual({ path: realConsul, source: 'env' });
  });
});

describe('accepted Consul versions', () => {
  it('1.8.0 up to 1.13.x, read from the first line of `consul version`', () => {
    const accepted = (out: string) => parseConsulVersion(out)?.accepted;
    expect(parseConsulVersion('Consul v1.8.7\nProtocol 2 spoken by default, understands 2 to 3\n')).toEqual({
      version: '1.8.7',
      line: 'Consul v1.8.7',
      accepted: true,
    });
    expect(accepted('Consul v1.8.0')).toBe(true);
    expect(accepted('Consul v1.13.9+ent')).toBe(true);
    expect(accepted('Consul v1.7.14')).toBe(false);
    expect(accepted('Consul v1.14.0')).toBe(false);
    expect(accepted('Consul v1.21.4\nRevision 1234')).toBe(false);
    expect(accepted('Consul v2.0.0')).toBe(false);
    expect(accepted('Consul v0.9.3')).toBe(false);
    expect(parseConsulVersion('etcd Version: 3.4.23')).toBeUndefined();
    expect(parseConsulVersion('')).toBeUndefined();
  });
});

describe('rollcall-testkit command line', () => {
  const run = (argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = runCli(argv, { stdout: (l) => out.push(l), stderr: (l) => err.push(l) });
    return { code, out: out.join('\n'), err: err.join('\n') };
  };

  it('--help documents the command, the lookup order and the cache, exit 0', () => {
    const { code, out, err } = run(['--help']);
    expect(code).toBe(0);
    expect(err).toBe('');
    for (const text of [
      'install-servers',
      '--with-browser',
      '--with-zsh',
      'ROLLCALL_ETCD_BIN',
      'ROLLCALL_ETCDCTL_BIN',
      'ROLLCALL_CONSUL_BIN',
      'ROLLCALL_SERVERS_DIR',
      `(here: ${serversDir()})`,
      'Consul >= 1.8.0 and < 1.14.0',
    ])
      expect(out).toContain(text);
    expect(run(['help']).out).toBe(out);
  });

  it('bad usage is one line on stderr and exit 2', () => {
    expect(run([])).toEqual({ code: 2, out: '', err: expect.stringMatching(/no command given/) });
    expect(run(['install'])).toMatchObject({
      code: 2,
      err: expect.stringMatching(/unknown command 'install'/),
    });
    expect(run(['install-servers', 'now'])).toMatchObject({ code: 2 });
    expect(run(['install-servers', '--with-chrome'])).toEqual({
      code: 2,
      out: '',
      err: "rollcall-testkit: Unknown option '--with-chrome' (see rollcall-testkit --help)",
    });
  });

  it('install-servers with everything present reports each server where the harnesses find it, exit 0', () => {
    const { code, out } = run(['install-servers']);
    expect(code, out).toBe(0);
    expect(out).toMatch(new RegExp(`^etcd +present: etcd Version: 3\\.\\d+\\.\\d+ \\(${realEtcd}\\)`, 'm'));
    expect(out).toContain(`consul  present: Consul v1.8.7 (${realConsul})`);
    expect(out).not.toMatch(/chromium|zsh/);
    expect(out).toMatch(/^install-servers: done in \d+ ms$/m);
  });
});
