import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { consulBinary } from './binaries.js';
import { releasePorts, reservePorts } from './ports.js';
import { ManagedProcess, removeDir, StartError, trackDir, waitReady } from './process.js';
import { httpGet, LOOPBACK } from './util.js';

/** The six ports of a Consul dev agent (all on 127.0.0.1). */
export interface ConsulPorts {
  /** HTTP API (`-http-port`). */
  readonly http: number;
  /** DNS, TCP + UDP (`-dns-port`). */
  readonly dns: number;
  /** Serf LAN gossip, TCP + UDP (`-serf-lan-port`). */
  readonly serfLan: number;
  /** Serf WAN gossip, TCP + UDP (`-serf-wan-port`). */
  readonly serfWan: number;
  /** Server RPC (`-server-port`). */
  readonly server: number;
  /** gRPC (`-grpc-port`). */
  readonly grpc: number;
}

/** A real Consul 1.8 dev agent (single server, in-memory state) on loopback ports. */
export interface ConsulAgent extends AsyncDisposable {
  /** `'127.0.0.1'`. */
  readonly host: string;
  /** HTTP API port. */
  readonly port: number;
  /** `'127.0.0.1:PORT'` (HTTP API). */
  readonly address: string;
  /** `'http://127.0.0.1:PORT'` (HTTP API). */
  readonly url: string;
  /** Every port the agent uses. */
  readonly ports: ConsulPorts;
  /** ACL master token (also the agent token) when started with `acl: true`, else `undefined`. */
  readonly masterToken: string | undefined;
  /** Temporary directory (`fs.mkdtemp`) holding the config file and the log. Removed by `stop()`. */
  readonly dataDir: string;
  /** Log file (the agent's stdout and stderr). */
  readonly logFile: string;
  /** Pid while running, else `undefined`. */
  readonly pid: number | undefined;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
  /**
   * Start a NEW dev agent on the same ports (a running one is stopped with SIGTERM first) and wait
   * until ready. A dev agent keeps everything in memory, so all state (services, checks, KV,
   * sessions) is lost: this is the "agent lost its state" fault. Same master token.
   */
  restart(options?: { timeoutMs?: number }): Promise<void>;
  /** SIGSTOP. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Headers for raw HTTP calls: `{ 'X-Consul-Token': masterToken }` with ACLs, else `{}`. */
  headers(): Record<string, string>;
  /** The agent has a leader and answers `/v1/agent/self` (with the master token when ACLs are on). */
  isReady(timeoutMs?: number): Promise<boolean>;
  /** SIGTERM (SIGKILL after 5 s), then remove the temp dir. Idempotent. */
  stop(): Promise<void>;
}

/** Options of {@link startConsul}. */
export interface StartConsulOptions {
  /**
   * Enable ACLs (1.8 syntax): `default_policy: deny`, `down_policy: extend-cache`, and a random
   * UUID as both master and agent token, exposed as {@link ConsulAgent.masterToken}. Default `false`.
   */
  acl?: boolean;
  /** Master token to use with `acl`. Default: `crypto.randomUUID()`. */
  masterToken?: string;
  /** `-node` name. Default `'rollcall-consul'`. */
  nodeName?: string;
  /** Readiness deadline in ms. Default `20_000`. */
  startTimeoutMs?: number;
  /** `-log-level`. Default `'info'`. */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'err';
  /** Parent of the temporary dir. Default `os.tmpdir()`. */
  tmpDir?: string;
  /** Extra agent flags appended to the command line. Default `[]`. */
  extraArgs?: string[];
}

const DEFAULT_START_TIMEOUT_MS = 20_000;
const START_ATTEMPTS = 3;

class ConsulAgentImpl implements ConsulAgent {
  readonly host = LOOPBACK;
  readonly port: number;
  readonly address: string;
  readonly url: string;
  readonly ports: ConsulPorts;
  readonly masterToken: string | undefined;
  readonly dataDir: string;
  readonly logFile: string;
  private readonly configFile: string;
  private readonly proc: ManagedProcess;
  private stopping: Promise<void> | undefined;

  constructor(
    ports: ConsulPorts,
    private readonly options: StartConsulOptions,
  ) {
    this.ports = ports;
    this.port = ports.http;
    this.address = `${LOOPBACK}:${ports.http}`;
    this.url = `http://${this.address}`;
    this.masterToken = options.acl ? (options.masterToken ?? randomUUID()) : undefined;
    this.dataDir = mkdtempSync(join(options.tmpDir ?? tmpdir(), 'rollcall-consul-'));
    trackDir(this.dataDir);
    this.logFile = join(this.dataDir, 'consul.log');
    this.configFile = join(this.dataDir, 'config.json');
    const config: Record<string, unknown> = { disable_update_check: true };
    if (this.masterToken !== undefined) {
      config.acl = {
        enabled: true,
        default_policy: 'deny',
        down_policy: 'extend-cache',
        tokens: { master: this.masterToken, agent: this.masterToken },
      };
    }
    writeFileSync(this.configFile, `${JSON.stringify(config, null, 2)}\n`);
    this.proc = new ManagedProcess(consulBinary(), () => this.args(), this.logFile);
  }

  private args(): string[] {
    const p = this.ports;
    return [
      'agent',
      '-dev',
      `-node=${this.options.nodeName ?? 'rollcall-consul'}`,
      `-bind=${LOOPBACK}`,
      `-client=${LOOPBACK}`,
      `-http-port=${p.http}`,
      `-dns-port=${p.dns}`,
      `-serf-lan-port=${p.serfLan}`,
      `-serf-wan-port=${p.serfWan}`,
      `-server-port=${p.server}`,
      `-grpc-port=${p.grpc}`,
      `-log-level=${this.options.logLevel ?? 'info'}`,
      `-config-file=${this.configFile}`,
      ...(this.options.extraArgs ?? []),
    ];
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  headers(): Record<string, string> {
    return this.masterToken === undefined ? {} : { 'X-Consul-Token': this.masterToken };
  }

  async isReady(timeoutMs = 1_000): Promise<boolean> {
    try {
      const leader = await httpGet(`${this.url}/v1/status/leader`, { timeoutMs });
      if (leader.status !== 200) return false;
      const addr = JSON.parse(leader.body) as unknown;
      if (typeof addr !== 'string' || addr === '') return false;
      const self = await httpGet(`${this.url}/v1/agent/self`, { timeoutMs, headers: this.headers() });
      return self.status === 200;
    } catch {
      return false;
    }
  }

  spawn(): void {
    this.proc.start();
  }

  async waitReady(timeoutMs: number): Promise<void> {
    await waitReady(this.proc, `consul agent (${this.url})`, () => this.isReady(1_000), timeoutMs);
  }

  async kill(): Promise<void> {
    await this.proc.kill();
  }

  async restart(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.stopping) throw new Error('consul agent was stopped; cannot restart');
    await this.proc.terminate();
    this.proc.start();
    await this.waitReady(options.timeoutMs ?? this.options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
  }

  pause(): void {
    this.proc.signal('SIGSTOP');
  }

  resume(): void {
    this.proc.signal('SIGCONT');
  }

  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await this.proc.terminate();
      removeDir(this.dataDir);
      releasePorts(Object.values(this.ports));
    })();
    return this.stopping;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }
}

/**
 * Starts a Consul 1.8 dev agent (`agent -dev -bind 127.0.0.1 -client 127.0.0.1`) with all six
 * ports free on loopback (TCP, and UDP where Consul uses it). Ready = `/v1/status/leader` is
 * non-empty AND `/v1/agent/self` answers 200 (with the master token when `acl` is on). Port races
 * are retried with new ports (up to 3 attempts). On failure throws with the last 30 log lines.
 */
export async function startConsul(options: StartConsulOptions = {}): Promise<ConsulAgent> {
  const timeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
  for (let attempt = 1; ; attempt++) {
    const [http, dns, serfLan, serfWan, server, grpc] = (await reservePorts(6, { udp: true })) as [
      number,
      number,
      number,
      number,
      number,
      number,
    ];
    const agent = new ConsulAgentImpl({ http, dns, serfLan, serfWan, server, grpc }, options);
    try {
      agent.spawn();
      await agent.waitReady(timeoutMs);
      return agent;
    } catch (err) {
      await agent.stop();
      if (err instanceof StartError && err.portInUse && attempt < START_ATTEMPTS) continue;
      throw err;
    }
  }
}
