import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import {
  cacheUnpackDir,
  everyOnPath,
  type LocatedBinary,
  locateBinary,
  type ServerBinaryName,
} from '../servers/binaries.js';
import { consulVersionOf } from '../servers/consul-version.js';
import { aptInstall, InstallError, isRoot, machineMirror, unpackDebs } from './apt.js';

/** Options of {@link installServers}. */
export interface InstallServersOptions {
  /** Also install Chromium (Debian package `chromium`), e.g. for browser tests. Default `false`. */
  browser?: boolean;
  /** Also install zsh (Debian package `zsh`), e.g. for shell-completion tests. Default `false`. */
  zsh?: boolean;
  /** Receives one line per server or tool: what was found or installed, its version and path. Default: none. */
  log?: (line: string) => void;
}

/**
 * The Debian release Consul 1.8 comes from: bookworm and later have no `consul` package (its
 * licence changed), bullseye ships 1.8.7.
 */
const CONSUL_SUITE = 'bullseye';

const firstLine = (text: string) => text.trim().split('\n')[0] ?? '';
const since = (start: number) => `${Math.round(performance.now() - start)} ms`;

function versionOf(bin: string, args: string[]): string {
  return firstLine(
    execFileSync(bin, args, {
      encoding: 'utf8',
      env: { ...process.env, HOME: tmpdir() },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

/** Where the harnesses would find `name`; a `ROLLCALL_*_BIN` that names no usable binary is an {@link InstallError}. */
function found(name: ServerBinaryName): LocatedBinary | undefined {
  try {
    return locateBinary(name).found;
  } catch (error) {
    throw new InstallError((error as Error).message);
  }
}

/**
 * etcd and etcdctl: used where they are found (`ROLLCALL_ETCD_BIN` / `ROLLCALL_ETCDCTL_BIN`,
 * `PATH`, the install cache). Else, as root, `apt-get install etcd-server etcd-client` from the
 * machine's archive; as any other user, the same packages unpacked into the install cache.
 */
function ensureEtcd(log: (line: string) => void): void {
  const start = performance.now();
  let action = 'present';
  if (!found('etcd') || !found('etcdctl')) {
    if (isRoot) {
      // The package's system service is never used or stopped: harnesses start their own etcd.
      aptInstall(['etcd-server', 'etcd-client']);
      action = 'installed';
    } else {
      const mirror = machineMirror();
      const debs = unpackDebs({
        packages: ['etcd-server', 'etcd-client'],
        suite: mirror.suite,
        dest: cacheUnpackDir('etcd'),
        mirror,
      });
      action = `installed from ${debs.join(', ')} (${mirror.suite})`;
    }
  }
  const etcd = found('etcd');
  const etcdctl = found('etcdctl');
  if (!etcd || !etcdctl)
    throw new InstallError('etcd-server/etcd-client were installed but etcd/etcdctl are still not found');
  log(
    `etcd    ${action}: ${versionOf(etcd.path, ['--version'])} (${etcd.path}); ` +
      `${versionOf(etcdctl.path, ['version'])} (${etcdctl.path}) [${since(start)}]`,
  );
}

/**
 * Consul: used where an accepted version is found (`ROLLCALL_CONSUL_BIN`, `PATH`, the install
 * cache). Else Debian bullseye's 1.8.7, fetched through the mirror this machine is configured with
 * and unpacked into the install cache (no root needed, apt sources untouched).
 */
function ensureConsul(log: (line: string) => void): void {
  const start = performance.now();
  let action = 'present';
  if (!found('consul')) {
    const mirror = machineMirror();
    const [deb] = unpackDebs({
      packages: ['consul'],
      suite: CONSUL_SUITE,
      dest: cacheUnpackDir('consul'),
      mirror,
    });
    action = `installed from ${deb} via ${mirror.uri} ${CONSUL_SUITE}`;
  }
  const consul = found('consul');
  if (!consul) {
    throw new InstallError(
      `Consul was unpacked but is still not usable: ${locateBinary('consul').notes.join('; ')}`,
    );
  }
  log(`consul  ${action}: ${consulVersionOf(consul.path)?.line} (${consul.path}) [${since(start)}]`);
}

/** Debian packages whose executable is missing, installed in one apt-get run (root only). */
function ensureTools(
  tools: { bin: string; pkg: string; versionArgs: string[] }[],
  log: (line: string) => void,
): void {
  const start = performance.now();
  const which = (bin: string): string | undefined => everyOnPath(bin)[0];
  const missing = tools.filter((t) => !which(t.bin));
  if (missing.length > 0) aptInstall(missing.map((t) => t.pkg));
  for (const tool of tools) {
    const bin = which(tool.bin);
    if (!bin)
      throw new InstallError(`apt-get installed ${tool.pkg} but ${tool.bin} is still not found on PATH`);
    const action = missing.includes(tool) ? 'installed' : 'present';
    log(`${tool.bin.padEnd(7)} ${action}: ${versionOf(bin, tool.versionArgs)} (${bin}) [${since(start)}]`);
  }
}

/**
 * Makes etcd, etcdctl and Consul available to the harnesses (see `locateBinary` for where they
 * are looked up), and Chromium / zsh when asked. Idempotent:
 * when everything is present it only checks versions. Throws an {@link InstallError} saying what to
 * run when a step fails.
 */
export function installServers(options: InstallServersOptions = {}): void {
  const log = options.log ?? (() => {});
  ensureEtcd(log);
  ensureConsul(log);
  const tools = [
    ...(options.browser ? [{ bin: 'chromium', pkg: 'chromium', versionArgs: ['--version'] }] : []),
    ...(options.zsh ? [{ bin: 'zsh', pkg: 'zsh', versionArgs: ['--version'] }] : []),
  ];
  if (tools.length > 0) ensureTools(tools, log);
  // startEtcd({ tls: true }) makes its certificates with openssl: say so now rather than in a test.
  const openssl = everyOnPath('openssl')[0];
  log(
    openssl
      ? `openssl present: ${versionOf(openssl, ['version'])} (${openssl})`
      : 'openssl missing: startEtcd({ tls: true }) will not work (apt-get install -y openssl)',
  );
}
