import { parseArgs } from 'node:util';
import { InstallError } from './install/apt.js';
import { installServers } from './install/servers.js';
import { serversDir } from './servers/binaries.js';
import { CONSUL_VERSIONS_TEXT } from './servers/consul-version.js';

/** Where {@link runCli} writes, one line at a time. */
export interface TestkitCliIo {
  /** Help and the report lines of `install-servers`. */
  stdout(line: string): void;
  /** Usage errors and the reason an installation step failed. */
  stderr(line: string): void;
}

function usage(): string {
  return `Usage: rollcall-testkit install-servers [--with-browser] [--with-zsh]
       rollcall-testkit --help

install-servers   make etcd, etcdctl and Consul available to @rollcall/testkit's server harnesses
                  (startEtcd, startEtcdCluster, startConsul); idempotent, fast when all is present
  --with-browser  also install Chromium (Debian package chromium), for browser tests
  --with-zsh      also install zsh (Debian package zsh), for shell-completion tests
  -h, --help      print this help

Where the harnesses look for each server, first match wins:
  etcd     $ROLLCALL_ETCD_BIN, then PATH, then <cache>/etcd/usr/bin/etcd
  etcdctl  $ROLLCALL_ETCDCTL_BIN, then PATH, then <cache>/etcd/usr/bin/etcdctl
  consul   $ROLLCALL_CONSUL_BIN, then PATH, then <cache>/consul/usr/bin/consul;
           only Consul ${CONSUL_VERSIONS_TEXT} is used
<cache> is $ROLLCALL_SERVERS_DIR, else $XDG_CACHE_HOME/rollcall/servers, else
~/.cache/rollcall/servers (here: ${serversDir()}).

What install-servers installs when a server is not found (Debian and derivatives; the package
mirror is read from this machine's /etc/apt configuration, which is left unchanged):
  etcd     as root: apt-get install etcd-server etcd-client; as another user: those packages
           unpacked into <cache>/etcd
  consul   Consul 1.8.7 from Debian bullseye, unpacked into <cache>/consul (no root needed)

Exit codes: 0 done, 1 an installation step failed, 2 bad usage.`;
}

/**
 * Runs the `rollcall-testkit` command line with `argv` (without `node` and the script) and returns
 * the exit code: 0 done, 1 failed, 2 bad usage.
 */
export function runCli(argv: string[], io: TestkitCliIo): number {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (error) {
    // parseArgs explains at length how to pass a positional starting with '-': the first sentence says it.
    const reason = (error as Error).message.split('. ')[0];
    io.stderr(`rollcall-testkit: ${reason} (see rollcall-testkit --help)`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help || positionals[0] === 'help') {
    io.stdout(usage());
    return 0;
  }
  const [command, ...rest] = positionals;
  if (command !== 'install-servers' || rest.length > 0) {
    const what = command === undefined ? 'no command given' : `unknown command '${positionals.join(' ')}'`;
    io.stderr(`rollcall-testkit: ${what} (see rollcall-testkit --help)`);
    return 2;
  }
  const start = performance.now();
  try {
    installServers({ browser: values['with-browser'], zsh: values['with-zsh'], log: io.stdout });
    io.stdout(`install-servers: done in ${Math.round(performance.now() - start)} ms`);
    return 0;
  } catch (error) {
    const message = error instanceof InstallError ? error.message : ((error as Error).stack ?? String(error));
    io.stderr(`install-servers: FAILED\n${message}`);
    return 1;
  }
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      help: { type: 'boolean', short: 'h', default: false },
      'with-browser': { type: 'boolean', default: false },
      'with-zsh': { type: 'boolean', default: false },
    },
  });
}
