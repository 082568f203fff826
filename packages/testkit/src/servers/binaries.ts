import { accessSync, constants, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { CONSUL_VERSIONS_TEXT, consulVersionOf } from './consul-version.js';

/** The command that installs the servers, from any project that depends on `@rollcall/testkit`. */
export const INSTALL_SERVERS_COMMAND = 'npx rollcall-testkit install-servers';

/** A server binary the harnesses start. */
export type ServerBinaryName = 'etcd' | 'etcdctl' | 'consul';

/** Where a server binary was found, and through which rule. */
export interface LocatedBinary {
  /** Path of the executable, as found (a symlink is not resolved). */
  readonly path: string;
  /** `'env'`: its `ROLLCALL_*_BIN` variable; `'PATH'`; `'cache'`: the install cache ({@link serversDir}). */
  readonly source: 'env' | 'PATH' | 'cache';
}

const ENV_VARS: Record<ServerBinaryName, string> = {
  etcd: 'ROLLCALL_ETCD_BIN',
  etcdctl: 'ROLLCALL_ETCDCTL_BIN',
  consul: 'ROLLCALL_CONSUL_BIN',
};

/**
 * The testkit's install cache, where `rollcall-testkit install-servers` unpacks what it cannot
 * install system-wide: `$ROLLCALL_SERVERS_DIR` (relative paths against the working directory),
 * else `$XDG_CACHE_HOME/rollcall/servers`, else `~/.cache/rollcall/servers`. One per user, shared
 * by every project (and every clone of Rollcall), so a server is fetched once per machine.
 */
export function serversDir(): string {
  const explicit = process.env.ROLLCALL_SERVERS_DIR;
  if (explicit) return resolve(explicit);
  const xdg = process.env.XDG_CACHE_HOME;
  // The XDG spec says a relative XDG_CACHE_HOME is invalid and must be ignored.
  const cache = xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache');
  return join(cache, 'rollcall', 'servers');
}

/**
 * The directory the install cache unpacks `name`'s Debian packages into: `<serversDir>/consul` or
 * `<serversDir>/etcd`.
 *
 * @internal
 */
export function cacheUnpackDir(name: ServerBinaryName): string {
  return join(serversDir(), name === 'consul' ? 'consul' : 'etcd');
}

/** Where the install cache keeps `name`: `<serversDir>/consul/usr/bin/consul`, `<serversDir>/etcd/usr/bin/etcd[ctl]`. */
function cachedBinaryPath(name: ServerBinaryName): string {
  return join(cacheUnpackDir(name), 'usr', 'bin', name);
}

function isExecutableFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Every executable file called `name` in the directories of `PATH`, in order. @internal */
export function everyOnPath(name: string): string[] {
  return (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '')
    .map((dir) => join(dir, name))
    .filter(isExecutableFile);
}

/** Why `path` cannot be used as `name`, or `undefined` when it can. Only Consul's version is checked. */
function unusable(name: ServerBinaryName, path: string): string | undefined {
  if (name !== 'consul') return undefined;
  const version = consulVersionOf(path);
  if (!version) return `${path} does not answer \`consul version\` like Consul`;
  if (!version.accepted)
    return `${path} is Consul v${version.version}; the testkit runs Consul ${CONSUL_VERSIONS_TEXT}`;
  return undefined;
}

/**
 * Looks `name` up: its environment variable, then `PATH`, then the install cache. A variable
 * that is set must point to a usable binary (else this throws: it was asked for explicitly); a
 * Consul on `PATH` or in the cache outside the accepted versions is passed over, and `notes`
 * says why.
 */
export function locateBinary(name: ServerBinaryName): { found?: LocatedBinary; notes: string[] } {
  const variable = ENV_VARS[name];
  const fromEnv = process.env[variable];
  if (fromEnv) {
    if (!isExecutableFile(fromEnv)) throw new Error(`${variable}=${fromEnv} is not an executable file`);
    const problem = unusable(name, fromEnv);
    if (problem) throw new Error(`${variable}: ${problem}`);
    return { found: { path: fromEnv, source: 'env' }, notes: [] };
  }
  const notes: string[] = [];
  for (const candidate of everyOnPath(name)) {
    const problem = unusable(name, candidate);
    if (!problem) return { found: { path: candidate, source: 'PATH' }, notes };
    notes.push(`on PATH, ${problem}`);
  }
  const cached = cachedBinaryPath(name);
  if (isExecutableFile(cached)) {
    const problem = unusable(name, cached);
    if (!problem) return { found: { path: cached, source: 'cache' }, notes };
    notes.push(`in the install cache, ${problem}`);
  } else {
    notes.push(`not in the install cache (${cached})`);
  }
  return { notes };
}

function binary(name: ServerBinaryName): string {
  const { found, notes } = locateBinary(name);
  if (found) return found.path;
  throw new Error(
    `${name} binary not found in $${ENV_VARS[name]} (not set), PATH or the install cache: ${notes.join('; ')}. ` +
      `Run \`${INSTALL_SERVERS_COMMAND}\`, or set ${ENV_VARS[name]} to the binary.`,
  );
}

/**
 * Path of the `etcd` binary: `$ROLLCALL_ETCD_BIN`, else `etcd` on `PATH`, else the install cache.
 * Throws an Error naming `npx rollcall-testkit install-servers` when there is none.
 */
export function etcdBinary(): string {
  return binary('etcd');
}

/**
 * Path of the `etcdctl` binary: `$ROLLCALL_ETCDCTL_BIN`, else `etcdctl` on `PATH`, else the
 * install cache. Throws an Error naming `npx rollcall-testkit install-servers` when there is none.
 */
export function etcdctlBinary(): string {
  return binary('etcdctl');
}

/**
 * Path of a `consul` binary of an accepted version (see `CONSUL_VERSIONS`): `$ROLLCALL_CONSUL_BIN`
 * (which must be one, else this throws), else the first accepted `consul` on `PATH`, else the
 * install cache. Throws an Error naming `npx rollcall-testkit install-servers`, and every Consul
 * passed over and why, when there is none.
 */
export function consulBinary(): string {
  return binary('consul');
}
