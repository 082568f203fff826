import { statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { repoRoot } from './util.js';

const INSTALL_HINT =
  'run `node scripts/install-servers.mjs` from the repository root (npm test runs it as pretest)';

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function onPath(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/bin'];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (isFile(candidate)) return candidate;
  }
  return undefined;
}

function fromEnv(variable: string): string | undefined {
  const value = process.env[variable];
  if (value === undefined || value === '') return undefined;
  if (!isFile(value)) throw new Error(`${variable}=${value} does not point to a file`);
  return value;
}

/**
 * Path of the `etcd` binary: `$ROLLCALL_ETCD_BIN`, else `etcd` on PATH or in /usr/bin.
 * Throws an Error telling you to run `node scripts/install-servers.mjs` if it is missing.
 */
export function etcdBinary(): string {
  const found = fromEnv('ROLLCALL_ETCD_BIN') ?? onPath('etcd');
  if (!found) throw new Error(`etcd binary not found (ROLLCALL_ETCD_BIN, PATH, /usr/bin): ${INSTALL_HINT}`);
  return found;
}

/**
 * Path of the `etcdctl` binary: `$ROLLCALL_ETCDCTL_BIN`, else `etcdctl` on PATH or in /usr/bin.
 * Throws an Error telling you to run `node scripts/install-servers.mjs` if it is missing.
 */
export function etcdctlBinary(): string {
  const found = fromEnv('ROLLCALL_ETCDCTL_BIN') ?? onPath('etcdctl');
  if (!found)
    throw new Error(`etcdctl binary not found (ROLLCALL_ETCDCTL_BIN, PATH, /usr/bin): ${INSTALL_HINT}`);
  return found;
}

/**
 * Path of the `consul` binary (1.8.x): `$ROLLCALL_CONSUL_BIN`, else the repo-local
 * `<repoRoot>/.cache/servers/consul/usr/bin/consul` unpacked by the install script.
 * A system `consul` on PATH is deliberately not used (its version is unknown).
 * Throws an Error telling you to run `node scripts/install-servers.mjs` if it is missing.
 */
export function consulBinary(): string {
  const env = fromEnv('ROLLCALL_CONSUL_BIN');
  if (env) return env;
  const root = repoRoot();
  const local = root ? join(root, '.cache', 'servers', 'consul', 'usr', 'bin', 'consul') : undefined;
  if (local && isFile(local)) return local;
  throw new Error(
    `consul binary not found (ROLLCALL_CONSUL_BIN, ${local ?? '<repoRoot>/.cache/servers/consul/usr/bin/consul'}): ${INSTALL_HINT}`,
  );
}
