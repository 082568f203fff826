import type { Backend } from '@rollcall/core';
import { createMemoryBackend, type MemoryStore } from '@rollcall/memory';
import type { Command } from 'commander';
import { backendFactory } from '../backends.js';
import { consulAddressOf, etcdEndpointsOf } from '../capabilities.js';
import { loadConfig, type RollcallConfig } from '../config.js';
import { toJson } from './output.js';

/** Where the CLI writes, and what it talks to (injectable for tests). */
export interface CliIo {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  /** Use this backend instead of the configured one (it is not closed by the CLI). */
  backend?: Backend;
  /**
   * Makes another client of the same registry, for checks that need a second one (`doctor`).
   * Default: a new client from the configuration, or over the injected memory backend's store.
   */
  connect?: () => Backend;
  /** Environment variables. Default `process.env`. */
  env?: Record<string, string | undefined>;
  /** Ends `watch`, `lock hold`, `ui` and `migrate bridge` (default: SIGINT or SIGTERM). */
  signal?: AbortSignal;
  /** Raw writes to a terminal (progress bars); leave out when the output is not a terminal. */
  tty?: (text: string) => void;
  /** Called with the dashboard's URL once `rollcall ui` listens (tests, embedding). */
  onListening?: (url: string) => void;
}

/** The options every command takes (before or after the command name). */
export interface GlobalOptions {
  env?: string;
  config?: string;
  backend?: string;
  json?: boolean;
  debug?: boolean;
  timeout?: number;
}

/**
 * What a command needs: its output, the configured backend (opened on first use, closed at the
 * end), extra clients, the interrupt signal and the global options.
 */
export class CliContext {
  /** Set by a command that printed its own verdict and must still exit non-zero (1). */
  exitCode = 0;
  private readonly opened: Backend[] = [];
  private main: Backend | undefined;
  private loaded: RollcallConfig | undefined;
  private interrupt: { controller: AbortController; dispose: () => void } | undefined;

  constructor(
    readonly io: CliIo,
    private readonly program: Command,
  ) {}

  get options(): GlobalOptions {
    return this.program.opts<GlobalOptions>();
  }

  get json(): boolean {
    return this.options.json === true;
  }

  out(line: string): void {
    this.io.stdout(line);
  }

  err(line: string): void {
    this.io.stderr(line);
  }

  /** Prints `value` as one line of JSON with `--json`, else the text lines `text()` makes. */
  print(value: unknown, text: () => readonly string[]): void {
    if (this.json) this.out(toJson(value));
    else for (const line of text()) this.out(line);
  }

  /** The configuration (file, environment, `--backend`, `--timeout`), loaded once; throws `ConfigError`. */
  config(): RollcallConfig {
    if (this.loaded) return this.loaded;
    const { env, config: file, backend, timeout } = this.options;
    const config = loadConfig({
      env: { ...(this.io.env ?? process.env), ...(backend ? { ROLLCALL_BACKEND: backend } : {}) },
      ...(env ? { environment: env } : {}),
      ...(file ? { file } : {}),
    });
    this.loaded =
      timeout === undefined
        ? config
        : {
            ...config,
            ...(config.backend === 'etcd' || config.etcd
              ? { etcd: { ...config.etcd, callTimeoutMs: timeout, dialTimeoutMs: timeout } }
              : {}),
            ...(config.backend === 'consul' || config.consul
              ? { consul: { ...config.consul, callTimeoutMs: timeout } }
              : {}),
          };
    return this.loaded;
  }

  /** The backend commands talk to: the injected one, else one made from the configuration. */
  backend(): Backend {
    if (this.io.backend) return this.io.backend;
    if (!this.main) {
      const config = this.config();
      this.main = this.own(backendFactory(config)(config));
    }
    return this.main;
  }

  /** A second, separate client of the same registry (closed at the end). */
  connect(): Backend {
    if (this.io.connect) return this.own(this.io.connect());
    const store = (this.io.backend as { store?: MemoryStore } | undefined)?.store;
    if (this.io.backend && store) return this.own(createMemoryBackend({ store }));
    if (this.io.backend) throw new Error('a second client cannot be made for the injected backend');
    const config = this.config();
    return this.own(backendFactory(config)(config));
  }

  /** The server the backend talks to (endpoints or agent address; never credentials), for messages. */
  get target(): string | undefined {
    const backend = this.main ?? this.io.backend;
    return backend ? targetOf(backend) : undefined;
  }

  /** Aborts on `io.signal`, or on SIGINT / SIGTERM (whose default exit is then suspended until `close()`). */
  interrupted(): AbortSignal {
    if (this.io.signal) return this.io.signal;
    if (!this.interrupt) {
      const controller = new AbortController();
      const stop = (signal: NodeJS.Signals) => {
        // A second interrupt while the first one's clean-up runs: stop at once, as an uncaught one would.
        if (controller.signal.aborted) process.exit(130);
        controller.abort(new Error(`interrupted by ${signal}`));
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
      this.interrupt = {
        controller,
        dispose: () => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        },
      };
    }
    return this.interrupt.controller.signal;
  }

  /** Closes every backend the CLI opened and removes its signal handlers. */
  async close(): Promise<void> {
    this.interrupt?.dispose();
    await Promise.allSettled(this.opened.map((b) => b.close()));
  }

  /** Closes `backend` at the end, with the others the CLI opened. */
  own<B extends Backend>(backend: B): B {
    this.opened.push(backend);
    return backend;
  }
}

/** Resolves when `signal` aborts. */
export function untilAborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', () => resolve(), { once: true });
  });
}

/** The server of an etcd (`options.endpoints`) or Consul (`address`) backend, for messages. */
function targetOf(backend: Backend): string | undefined {
  return consulAddressOf(backend) ?? etcdEndpointsOf(backend)?.join(', ');
}
