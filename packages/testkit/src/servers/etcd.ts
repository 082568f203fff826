import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { etcdBinary, etcdctlBinary } from './binaries.js';
import { releasePorts, reservePorts } from './ports.js';
import { ManagedProcess, removeDir, StartError, trackDir, waitReady } from './process.js';
import { canConnect, httpGet, LOOPBACK, sleep } from './util.js';

/** TLS files (PEM paths) generated for a `tls: true` etcd server. */
export interface EtcdTlsFiles {
  /** CA certificate that signed both the server and the client certificate. */
  readonly ca: string;
  /** Server certificate (SAN `IP:127.0.0.1`, `DNS:localhost`). */
  readonly cert: string;
  /** Server private key. */
  readonly key: string;
  /** Client certificate (CN `root`), accepted when `clientCertAuth` is on. */
  readonly clientCert: string;
  /** Client private key. */
  readonly clientKey: string;
}

/** Options of {@link EtcdServer.etcdctl} and {@link EtcdCluster.etcdctl}. */
export interface EtcdctlOptions {
  /** `--user`: `'name'` (with `password`) or `'name:password'`. Default: no credentials. */
  user?: string;
  /** `--password`, used with a bare `user` name. Default: none. */
  password?: string;
  /** Endpoints to talk to. Default: the server's (or cluster's) client URL(s). */
  endpoints?: string[];
  /** `--command-timeout` in ms; the process is also killed 2 s after it. Default `5_000`. */
  timeoutMs?: number;
  /** `--dial-timeout` in ms. Default `2_000`. */
  dialTimeoutMs?: number;
}

/** Credentials for {@link EtcdServer.enableAuth}. */
export interface EtcdAuthOptions {
  /** User created with role `readwrite` (read/write on every key). `'root'` creates only root. */
  username: string;
  password: string;
  /** Password of the `root` user. Default: `password`. */
  rootPassword?: string;
}

/** Options of {@link EtcdServer.restart}. */
export interface EtcdRestartOptions {
  /**
   * Wait for `/health` to say `true` (default `true`). A member of a cluster that has lost quorum
   * is never healthy on its own; pass `false` to only wait until its client port accepts TCP.
   */
  waitHealthy?: boolean;
  /** Readiness deadline in ms. Default: the start option `startTimeoutMs` (20 s). */
  timeoutMs?: number;
}

/** A real etcd process on loopback ports with its own temporary directory. */
export interface EtcdServer extends AsyncDisposable {
  /** Member name (`--name`). */
  readonly name: string;
  /** `http://127.0.0.1:PORT` (`https://` with TLS). */
  readonly clientUrl: string;
  /** `[clientUrl]`. */
  readonly endpoints: string[];
  /** Client port. */
  readonly clientPort: number;
  /** `http://127.0.0.1:PEER_PORT`. */
  readonly peerUrl: string;
  /**
   * Temporary directory of this server (`fs.mkdtemp`): etcd's `--data-dir` is `<dataDir>/data`,
   * the log is `<dataDir>/etcd.log`, TLS files are in `<dataDir>/tls`. Removed by `stop()`.
   */
  readonly dataDir: string;
  /** Log file (etcd's zap JSON output, stdout and stderr). */
  readonly logFile: string;
  /** Pid while running, else `undefined`. */
  readonly pid: number | undefined;
  /** TLS files when started with `tls: true`. */
  readonly tls: EtcdTlsFiles | undefined;
  /** SIGKILL the process and wait for it to exit (the data dir stays). */
  kill(): Promise<void>;
  /**
   * Start again on the SAME ports and data dir and wait until healthy. A running process is
   * first stopped with SIGTERM. Port races are not retried here (the ports must stay the same).
   */
  restart(options?: EtcdRestartOptions): Promise<void>;
  /** SIGSTOP: the process freezes, connections stay open but nothing answers. */
  pause(): void;
  /** SIGCONT after {@link EtcdServer.pause}. */
  resume(): void;
  /**
   * Compacts at the current revision with `etcdctl compact --physical` and returns that revision.
   * Compacting again at an already compacted revision is not an error.
   */
  compact(): Promise<bigint>;
  /** Current store revision (`etcdctl endpoint status`). */
  revision(): Promise<bigint>;
  /**
   * Adds role `root` and user `root`, role `readwrite` (read/write on all keys) and the given user
   * with it, then `auth enable`. Later `compact()`/`revision()` use the root credentials.
   */
  enableAuth(options: EtcdAuthOptions): Promise<void>;
  /**
   * Runs `etcdctl` (API v3) against this server and resolves with its stdout; rejects with an
   * Error carrying stderr and the exit code when it fails. TLS flags are added automatically.
   */
  etcdctl(args: string[], options?: EtcdctlOptions): Promise<string>;
  /** `GET /health` answered `{"health":"true"}` within `timeoutMs` (default 1 s). */
  isHealthy(timeoutMs?: number): Promise<boolean>;
  /** SIGTERM (SIGKILL after 5 s), then remove the data dir. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startEtcd}. */
export interface StartEtcdOptions {
  /** `--name`. Default `'rollcall-etcd'`. */
  name?: string;
  /**
   * Serve clients over TLS with a CA, server and client certificate generated by `openssl` in
   * `<dataDir>/tls` (see {@link EtcdServer.tls}). Default `false`.
   */
  tls?: boolean;
  /** With `tls`: require client certificates (`--client-cert-auth`). Default `false`. */
  clientCertAuth?: boolean;
  /** Readiness deadline in ms. Default `20_000`. */
  startTimeoutMs?: number;
  /** `--heartbeat-interval` in ms. Default: etcd's (100). */
  heartbeatMs?: number;
  /** `--election-timeout` in ms. Default: etcd's (1000). */
  electionTimeoutMs?: number;
  /** Parent of the temporary data dir (e.g. `/dev/shm` for speed). Default `os.tmpdir()`. */
  tmpDir?: string;
  /** Extra etcd flags appended to the command line. Default `[]`. */
  extraArgs?: string[];
}

/** Options of {@link startEtcdCluster}. */
export interface StartEtcdClusterOptions {
  /** Number of members. Default `3`. */
  size?: number;
  /** Member names are `${namePrefix}${i}` (1-based). Default `'m'`. */
  namePrefix?: string;
  /** Deadline for all members to be healthy, in ms. Default `20_000`. */
  startTimeoutMs?: number;
  /** `--heartbeat-interval` in ms. Default: etcd's (100). */
  heartbeatMs?: number;
  /** `--election-timeout` in ms. Default: etcd's (1000). */
  electionTimeoutMs?: number;
  /** Parent of the temporary data dirs. Default `os.tmpdir()`. */
  tmpDir?: string;
  /** Extra etcd flags for every member. Default `[]`. */
  extraArgs?: string[];
}

/** A real multi-member etcd cluster on loopback. */
export interface EtcdCluster extends AsyncDisposable {
  /** The members, in start order. */
  readonly members: EtcdServer[];
  /** Every member's client URL. */
  readonly endpoints: string[];
  /**
   * The current leader: a running member whose `etcdctl endpoint status` names itself as leader
   * (highest raft term wins). Polls until one is found or `timeoutMs` (default 10 s) passes.
   */
  leader(timeoutMs?: number): Promise<EtcdServer>;
  /** Client URLs of the members currently running. */
  runningEndpoints(): string[];
  /** `etcdctl` against the cluster; default endpoints: every member. */
  etcdctl(args: string[], options?: EtcdctlOptions): Promise<string>;
  /** {@link EtcdServer.enableAuth} for the whole cluster. */
  enableAuth(options: EtcdAuthOptions): Promise<void>;
  /** SIGKILL every member, then remove their data dirs (idempotent). */
  stop(): Promise<void>;
}

const DEFAULT_START_TIMEOUT_MS = 20_000;
const START_ATTEMPTS = 3;

interface MemberConfig {
  name: string;
  clientPort: number;
  peerPort: number;
  initialCluster: string;
  clusterToken: string;
  tls: boolean;
  clientCertAuth: boolean;
  startTimeoutMs: number;
  heartbeatMs: number | undefined;
  electionTimeoutMs: number | undefined;
  tmpDir: string;
  extraArgs: string[];
}

function parseBigField(output: string, field: string): bigint | undefined {
  const m = new RegExp(`"${field}":(\\d+)`).exec(output);
  return m?.[1] === undefined ? undefined : BigInt(m[1]);
}

/** Thrown by `etcdctl()` when the command fails. */
export class EtcdctlError extends Error {
  constructor(
    message: string,
    /** Exit code of etcdctl (`null` if killed). */
    readonly exitCode: number | null,
    /** What etcdctl wrote to stderr. */
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'EtcdctlError';
  }
}

function runEtcdctl(
  endpoints: string[],
  tls: EtcdTlsFiles | undefined,
  args: string[],
  options: EtcdctlOptions = {},
): Promise<string> {
  const { timeoutMs = 5_000, dialTimeoutMs = 2_000 } = options;
  const flags = [
    `--endpoints=${(options.endpoints ?? endpoints).join(',')}`,
    `--dial-timeout=${dialTimeoutMs}ms`,
    `--command-timeout=${timeoutMs}ms`,
  ];
  if (tls) flags.push(`--cacert=${tls.ca}`, `--cert=${tls.clientCert}`, `--key=${tls.clientKey}`);
  if (options.user !== undefined) flags.push(`--user=${options.user}`);
  if (options.password !== undefined) flags.push(`--password=${options.password}`);
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ETCDCTL_')) env[k] = v;
  env.ETCDCTL_API = '3';
  const bin = etcdctlBinary();
  return new Promise((resolveRun, reject) => {
    execFile(
      bin,
      [...flags, ...args],
      { env, timeout: timeoutMs + dialTimeoutMs + 2_000, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          const code = typeof error.code === 'number' ? error.code : null;
          const lines = stderr
            .split('\n')
            .filter((l) => l && !l.startsWith('{"level"'))
            .join('\n');
          reject(
            new EtcdctlError(
              `etcdctl ${args.join(' ')} failed (exit ${code ?? error.signal}): ${lines || stderr || error.message}`,
              code,
              stderr,
            ),
          );
          return;
        }
        resolveRun(stdout);
      },
    );
  });
}

function runOpenssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolveRun, reject) => {
    execFile('openssl', args, { cwd }, (error, _stdout, stderr) => {
      if (error) {
        reject(
          new Error(
            `openssl ${args.join(' ')} failed: ${stderr || error.message} (is openssl installed? apt-get install -y openssl)`,
          ),
        );
      } else resolveRun();
    });
  });
}

async function generateTls(dir: string): Promise<EtcdTlsFiles> {
  mkdirSync(dir, { recursive: true });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await runOpenssl(
    [
      'req',
      '-x509',
      ...ec,
      '-keyout',
      'ca.key',
      '-out',
      'ca.crt',
      '-days',
      '7',
      '-subj',
      '/CN=rollcall-test-ca',
    ],
    dir,
  );
  writeFileSync(
    join(dir, 'server.ext'),
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' +
      'extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n',
  );
  writeFileSync(
    join(dir, 'client.ext'),
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n',
  );
  const sign = (who: string, cn: string) =>
    (async () => {
      await runOpenssl(
        ['req', ...ec, '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${cn}`],
        dir,
      );
      await runOpenssl(
        [
          'x509',
          '-req',
          '-in',
          `${who}.csr`,
          '-CA',
          'ca.crt',
          '-CAkey',
          'ca.key',
          '-CAcreateserial',
          '-out',
          `${who}.crt`,
          '-days',
          '7',
          '-extfile',
          `${who}.ext`,
        ],
        dir,
      );
    })();
  await sign('server', '127.0.0.1');
  await sign('client', 'root');
  return {
    ca: join(dir, 'ca.crt'),
    cert: join(dir, 'server.crt'),
    key: join(dir, 'server.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
  };
}

class EtcdServerImpl implements EtcdServer {
  readonly name: string;
  readonly clientUrl: string;
  readonly endpoints: string[];
  readonly clientPort: number;
  readonly peerUrl: string;
  readonly dataDir: string;
  readonly logFile: string;
  tls: EtcdTlsFiles | undefined;
  private readonly proc: ManagedProcess;
  private rootCreds: { user: string; password: string } | undefined;
  private stopping: Promise<void> | undefined;
  private tlsMaterial: { ca?: Buffer; cert?: Buffer; key?: Buffer } | undefined;

  constructor(private readonly config: MemberConfig) {
    this.name = config.name;
    const scheme = config.tls ? 'https' : 'http';
    this.clientPort = config.clientPort;
    this.clientUrl = `${scheme}://${LOOPBACK}:${config.clientPort}`;
    this.endpoints = [this.clientUrl];
    this.peerUrl = `http://${LOOPBACK}:${config.peerPort}`;
    this.dataDir = mkdtempSync(join(config.tmpDir, `rollcall-etcd-${config.name}-`));
    trackDir(this.dataDir);
    this.logFile = join(this.dataDir, 'etcd.log');
    this.proc = new ManagedProcess(etcdBinary(), () => this.args(), this.logFile);
  }

  private args(): string[] {
    const c = this.config;
    const args = [
      `--name=${c.name}`,
      `--data-dir=${join(this.dataDir, 'data')}`,
      '--logger=zap',
      '--log-outputs=stderr',
      `--listen-client-urls=${this.clientUrl}`,
      `--advertise-client-urls=${this.clientUrl}`,
      `--listen-peer-urls=${this.peerUrl}`,
      `--initial-advertise-peer-urls=${this.peerUrl}`,
      `--initial-cluster=${c.initialCluster}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=${c.clusterToken}`,
    ];
    if (c.heartbeatMs !== undefined) args.push(`--heartbeat-interval=${c.heartbeatMs}`);
    if (c.electionTimeoutMs !== undefined) args.push(`--election-timeout=${c.electionTimeoutMs}`);
    if (this.tls) {
      args.push(
        `--cert-file=${this.tls.cert}`,
        `--key-file=${this.tls.key}`,
        `--trusted-ca-file=${this.tls.ca}`,
      );
      if (c.clientCertAuth) args.push('--client-cert-auth');
    }
    args.push(...c.extraArgs);
    return args;
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get running(): boolean {
    return this.proc.running;
  }

  async prepare(): Promise<void> {
    if (this.config.tls) {
      this.tls = await generateTls(join(this.dataDir, 'tls'));
      this.tlsMaterial = {
        ca: readFileSync(this.tls.ca),
        cert: readFileSync(this.tls.clientCert),
        key: readFileSync(this.tls.clientKey),
      };
    }
  }

  /** Spawns the process (no waiting). */
  spawn(): void {
    if (this.stopping) throw new Error(`etcd ${this.name} was stopped; start a new one`);
    this.proc.start();
  }

  async isHealthy(timeoutMs = 1_000): Promise<boolean> {
    try {
      const res = await httpGet(`${this.clientUrl}/health`, {
        timeoutMs,
        ...(this.tlsMaterial ? { tls: this.tlsMaterial } : {}),
      });
      if (res.status !== 200) return false;
      return (JSON.parse(res.body) as { health?: unknown }).health === 'true';
    } catch {
      return false;
    }
  }

  async waitHealthy(timeoutMs: number, healthy = true): Promise<void> {
    await waitReady(
      this.proc,
      `etcd ${this.name} (${this.clientUrl})`,
      healthy ? () => this.isHealthy(1_000) : () => canConnect(LOOPBACK, this.clientPort),
      timeoutMs,
    );
  }

  async kill(): Promise<void> {
    await this.proc.kill();
  }

  async restart(options: EtcdRestartOptions = {}): Promise<void> {
    if (this.stopping) throw new Error(`etcd ${this.name} was stopped (data dir removed); cannot restart`);
    await this.proc.terminate();
    this.proc.start();
    await this.waitHealthy(options.timeoutMs ?? this.config.startTimeoutMs, options.waitHealthy ?? true);
  }

  pause(): void {
    this.proc.signal('SIGSTOP');
  }

  resume(): void {
    this.proc.signal('SIGCONT');
  }

  private internalCreds(): EtcdctlOptions {
    return this.rootCreds ? { user: this.rootCreds.user, password: this.rootCreds.password } : {};
  }

  async revision(): Promise<bigint> {
    const out = await this.etcdctl(['endpoint', 'status', '-w', 'json'], this.internalCreds());
    const rev = parseBigField(out, 'revision');
    if (rev === undefined)
      throw new Error(`etcd ${this.name}: no revision in endpoint status output: ${out}`);
    return rev;
  }

  async compact(): Promise<bigint> {
    const rev = await this.revision();
    try {
      await this.etcdctl(['compact', rev.toString(), '--physical'], this.internalCreds());
    } catch (err) {
      if (!(err instanceof Error && /required revision has been compacted/.test(err.message))) throw err;
    }
    return rev;
  }

  async enableAuth(options: EtcdAuthOptions): Promise<void> {
    const rootPassword = options.rootPassword ?? options.password;
    const ctl = (args: string[]) => this.etcdctl(args);
    await ctl(['role', 'add', 'root']);
    await ctl(['user', 'add', 'root', `--new-user-password=${rootPassword}`]);
    await ctl(['user', 'grant-role', 'root', 'root']);
    if (options.username !== 'root') {
      await ctl(['role', 'add', 'readwrite']);
      await ctl(['role', 'grant-permission', '--prefix=true', 'readwrite', 'readwrite', '']);
      await ctl(['user', 'add', options.username, `--new-user-password=${options.password}`]);
      await ctl(['user', 'grant-role', options.username, 'readwrite']);
    }
    await ctl(['auth', 'enable']);
    this.setRootCreds({ user: 'root', password: rootPassword });
  }

  /** @internal used by the cluster so every member knows the root credentials. */
  setRootCreds(creds: { user: string; password: string }): void {
    this.rootCreds = creds;
  }

  etcdctl(args: string[], options: EtcdctlOptions = {}): Promise<string> {
    return runEtcdctl(this.endpoints, this.tls, args, options);
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.proc.terminate();
      removeDir(this.dataDir);
      releasePorts([this.config.clientPort, this.config.peerPort]);
    })();
    return this.stopping;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

function memberConfig(
  name: string,
  clientPort: number,
  peerPort: number,
  initialCluster: string,
  options: StartEtcdOptions & StartEtcdClusterOptions,
): MemberConfig {
  return {
    name,
    clientPort,
    peerPort,
    initialCluster,
    clusterToken: `rollcall-${randomUUID()}`,
    tls: options.tls ?? false,
    clientCertAuth: options.clientCertAuth ?? false,
    startTimeoutMs: options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS,
    heartbeatMs: options.heartbeatMs,
    electionTimeoutMs: options.electionTimeoutMs,
    tmpDir: options.tmpDir ?? tmpdir(),
    extraArgs: options.extraArgs ?? [],
  };
}

/**
 * Starts a single-member etcd on free loopback ports (client + peer) with a fresh temp data dir,
 * and resolves once `GET /health` answers `{"health":"true"}`. If a port was taken between picking
 * and binding, retries with new ports (up to 3 attempts). On failure throws an Error with the
 * last 30 lines of the etcd log.
 */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdServer> {
  const name = options.name ?? 'rollcall-etcd';
  for (let attempt = 1; ; attempt++) {
    const [clientPort, peerPort] = (await reservePorts(2)) as [number, number];
    const server = new EtcdServerImpl(
      memberConfig(name, clientPort, peerPort, `${name}=http://${LOOPBACK}:${peerPort}`, options),
    );
    try {
      await server.prepare();
      server.spawn();
      await server.waitHealthy(options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
      return server;
    } catch (err) {
      await server.stop();
      if (err instanceof StartError && err.portInUse && attempt < START_ATTEMPTS) continue;
      throw err;
    }
  }
}

class EtcdClusterImpl implements EtcdCluster {
  readonly endpoints: string[];
  private stopping: Promise<void> | undefined;

  constructor(readonly members: EtcdServerImpl[]) {
    this.endpoints = members.map((m) => m.clientUrl);
  }

  runningEndpoints(): string[] {
    return this.members.filter((m) => m.running).map((m) => m.clientUrl);
  }

  async leader(timeoutMs = 10_000): Promise<EtcdServer> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const statuses = await Promise.all(
        this.members
          .filter((m) => m.running)
          .map(async (m) => {
            try {
              const out = await m.etcdctl(['endpoint', 'status', '-w', 'json'], {
                timeoutMs: 1_000,
                dialTimeoutMs: 500,
              });
              return {
                member: m,
                id: parseBigField(out, 'member_id'),
                leader: parseBigField(out, 'leader'),
                term: parseBigField(out, 'raftTerm') ?? 0n,
              };
            } catch {
              return undefined;
            }
          }),
      );
      const leaders = statuses
        .filter((s) => s !== undefined && s.id !== undefined && s.id === s.leader)
        .sort((a, b) => (a!.term > b!.term ? -1 : a!.term < b!.term ? 1 : 0));
      if (leaders[0]) return leaders[0].member;
      if (performance.now() >= deadline) {
        throw new Error(`etcd cluster: no member reports itself leader within ${timeoutMs} ms`);
      }
      await sleep(50);
    }
  }

  etcdctl(args: string[], options: EtcdctlOptions = {}): Promise<string> {
    return runEtcdctl(this.endpoints, this.members[0]?.tls, args, options);
  }

  async enableAuth(options: EtcdAuthOptions): Promise<void> {
    const first = this.members.find((m) => m.running);
    if (!first) throw new Error('etcd cluster: no running member');
    await first.enableAuth(options);
    for (const m of this.members)
      m.setRootCreds({ user: 'root', password: options.rootPassword ?? options.password });
  }

  stop(): Promise<void> {
    // SIGKILL first: members given SIGTERM together each try to hand leadership over on shutdown
    // and hang until the 5 s grace runs out. The data dirs are removed anyway.
    this.stopping ??= (async () => {
      await Promise.all(this.members.map((m) => m.kill()));
      await Promise.all(this.members.map((m) => m.stop()));
    })();
    return this.stopping;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/**
 * Starts an etcd cluster of `size` members (default 3) on free loopback ports, each with its own
 * temp data dir, `--initial-cluster` listing all of them, `--initial-cluster-state new` and a
 * unique `--initial-cluster-token`. Resolves once every member is healthy. Port races are retried
 * with new ports (up to 3 attempts). Restarting a member reuses its data dir, so it rejoins.
 */
export async function startEtcdCluster(options: StartEtcdClusterOptions = {}): Promise<EtcdCluster> {
  const size = options.size ?? 3;
  if (!Number.isInteger(size) || size < 1)
    throw new Error(`startEtcdCluster: size must be >= 1, got ${size}`);
  const prefix = options.namePrefix ?? 'm';
  const timeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  for (let attempt = 1; ; attempt++) {
    const ports = await reservePorts(size * 2);
    const token = `rollcall-${randomUUID()}`;
    const names = Array.from({ length: size }, (_, i) => `${prefix}${i + 1}`);
    const initialCluster = names.map((n, i) => `${n}=http://${LOOPBACK}:${ports[size + i]}`).join(',');
    const members = names.map((n, i) => {
      const config = memberConfig(n, ports[i]!, ports[size + i]!, initialCluster, options);
      config.clusterToken = token;
      config.tls = false;
      return new EtcdServerImpl(config);
    });
    const cluster = new EtcdClusterImpl(members);
    try {
      for (const m of members) m.spawn();
      await Promise.all(members.map((m) => m.waitHealthy(timeoutMs)));
      return cluster;
    } catch (err) {
      await cluster.stop();
      if (err instanceof StartError && err.portInUse && attempt < START_ATTEMPTS) continue;
      throw err;
    }
  }
}
