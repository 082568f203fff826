import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, closeSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { sleep } from './util.js';

// ------------------------------------------------------------------------------------- orphan guard
//
// Two layers make sure no server outlives the test process:
// 1. `process.on('exit')` (and SIGINT/SIGTERM/SIGHUP when nobody else handles them) SIGKILLs every
//    child still running.
// 2. A tiny detached watchdog process reads "+pid"/"-pid" (and "+dir"/"-dir" temp dir) lines on a
//    pipe from us; when the pipe closes (we exited in any way, including SIGKILL of a vitest
//    worker, where no 'exit' handler runs), it SIGKILLs the pids still registered and removes the
//    temp dirs. Set ROLLCALL_NO_WATCHDOG=1 to skip it.
// Both layers also remove the temp dirs of servers that were never stopped.

const live = new Map<number, ChildProcess>();
const dirs = new Set<string>();
let hooksInstalled = false;
let watchdog: ChildProcess | undefined;
let watchdogBroken = false;

const WATCHDOG_SOURCE = `
const pids = new Set(); const dirs = new Set(); let buf = '';
for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(s, () => {});
const reap = () => {
  for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch {} }
  for (const d of dirs) { try { require('fs').rmSync(d, { recursive: true, force: true, maxRetries: 5 }); } catch {} }
  process.exit(0);
};
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => {
  buf += d; let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, i); buf = buf.slice(i + 1);
    const set = line[1] === 'D' ? dirs : pids;
    const value = line[1] === 'D' ? line.slice(2) : Number(line.slice(1));
    if (line[0] === '+') set.add(value); else set.delete(value);
  }
});
process.stdin.on('end', reap); process.stdin.on('error', reap);
`;

function killAllNow(): void {
  for (const child of live.values()) {
    try {
      child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  for (const dir of dirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // best effort
    }
  }
}

/** Registers a temp dir to remove if the process exits without stopping its server. @internal */
export function trackDir(dir: string): void {
  installHooks();
  dirs.add(dir);
  tellWatchdog(`+D${dir}`);
}

/** Removes `dir` (recursively) and forgets it. @internal */
export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  if (dirs.delete(dir)) tellWatchdog(`-D${dir}`);
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', killAllNow);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const handler = () => {
      killAllNow();
      process.removeListener(signal, handler);
      // Keep the default behaviour (terminate) unless someone else handles this signal.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, handler);
  }
}

function tellWatchdog(line: string): void {
  if (process.env.ROLLCALL_NO_WATCHDOG === '1' || watchdogBroken) return;
  if (!watchdog) {
    try {
      watchdog = spawn(process.execPath, ['-e', WATCHDOG_SOURCE], {
        stdio: ['pipe', 'ignore', 'ignore'],
        detached: true,
      });
      watchdog.on('error', () => {
        watchdogBroken = true;
      });
      watchdog.stdin?.on('error', () => {
        watchdogBroken = true;
      });
      watchdog.unref();
      (watchdog.stdin as unknown as Socket | null)?.unref?.();
    } catch {
      watchdogBroken = true;
      return;
    }
  }
  watchdog.stdin?.write(`${line}\n`);
}

// ---------------------------------------------------------------------------------- ManagedProcess

/** How a process ended. @internal */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the process could not be spawned at all. */
  error?: Error;
}

/**
 * One long-running server process with its output appended to a log file. Can be started again
 * after it exits (same command line). @internal
 */
export class ManagedProcess {
  private child: ChildProcess | undefined;
  private exitPromise: Promise<ExitInfo> = Promise.resolve({ code: null, signal: null });
  private lastExit: ExitInfo | undefined;
  private paused = false;
  private runOffset = 0;

  constructor(
    readonly bin: string,
    readonly args: () => string[],
    readonly logFile: string,
    readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  /** Pid of the running process, `undefined` when not running. */
  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  get running(): boolean {
    return this.child !== undefined && this.lastExit === undefined;
  }

  /** How the last run ended (undefined while running or never started). */
  get exit(): ExitInfo | undefined {
    return this.lastExit;
  }

  start(): void {
    if (this.running) throw new Error(`${this.bin} is already running (pid ${this.child?.pid})`);
    installHooks();
    const args = this.args();
    try {
      this.runOffset = statSync(this.logFile).size;
    } catch {
      this.runOffset = 0;
    }
    appendFileSync(this.logFile, `\n=== ${new Date().toISOString()} start: ${this.bin} ${args.join(' ')}\n`);
    const fd = openSync(this.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(this.bin, args, { stdio: ['ignore', fd, fd], env: this.env });
    } finally {
      closeSync(fd);
    }
    this.child = child;
    this.lastExit = undefined;
    this.paused = false;
    const pid = child.pid;
    if (pid !== undefined) {
      live.set(pid, child);
      tellWatchdog(`+${pid}`);
    }
    this.exitPromise = new Promise<ExitInfo>((resolveExit) => {
      const done = (info: ExitInfo) => {
        if (this.child !== child || this.lastExit !== undefined) return;
        this.lastExit = info;
        if (pid !== undefined) {
          live.delete(pid);
          tellWatchdog(`-${pid}`);
        }
        resolveExit(info);
      };
      child.once('exit', (code, signal) => done({ code, signal }));
      child.once('error', (error) => done({ code: null, signal: null, error }));
    });
  }

  /** Resolves when the current run has ended (immediately if not running). */
  waitExit(): Promise<ExitInfo> {
    return this.exitPromise;
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.running) return;
    this.child?.kill(signal);
    if (signal === 'SIGSTOP') {
      this.paused = true;
      // kill() only queues the signal: a thread already running may still answer one more request.
      // Return once every thread of the process is stopped, so that "paused" means paused.
      waitForThreads(this.child?.pid, true);
    }
    if (signal === 'SIGCONT') {
      this.paused = false;
      waitForThreads(this.child?.pid, false);
    }
  }

  /** SIGKILL and wait for the exit. No-op when not running. */
  async kill(): Promise<void> {
    if (!this.running) return;
    this.signal('SIGKILL');
    await this.exitPromise;
  }

  /** SIGTERM (a paused process is continued so it sees it), SIGKILL after `graceMs`. */
  async terminate(graceMs = 5_000): Promise<void> {
    if (!this.running) return;
    this.signal('SIGTERM');
    if (this.paused) this.signal('SIGCONT');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), graceMs);
    });
    const result = await Promise.race([this.exitPromise, timedOut]);
    clearTimeout(timer);
    if (result === 'timeout') await this.kill();
  }

  /** Last lines the current (or last) run wrote to the log file. */
  logTail(lines = 30): string {
    try {
      const text = readFileSync(this.logFile).subarray(this.runOffset).toString('utf8');
      return text.trimEnd().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }
}

/** Thrown when a server does not become ready. @internal */
export class StartError extends Error {
  constructor(
    message: string,
    /** True when the log says a port was taken: retry with new ports. */
    readonly portInUse: boolean,
  ) {
    super(message);
    this.name = 'StartError';
  }
}

/**
 * Polls `ready` until it returns true, the process exits, or the deadline passes. On failure the
 * process is killed and a StartError carrying the last 30 log lines is thrown. @internal
 */
export async function waitReady(
  proc: ManagedProcess,
  what: string,
  ready: () => Promise<boolean>,
  timeoutMs: number,
  intervalMs = 25,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let lastError = '';
  for (;;) {
    if (!proc.running) {
      const exit = proc.exit;
      const how = exit?.error
        ? `could not be spawned: ${exit.error.message}`
        : `exited early (code ${exit?.code}, signal ${exit?.signal})`;
      const log = proc.logTail(30);
      throw new StartError(
        `${what} ${how}. Last lines of ${proc.logFile}:\n${log}`,
        /address already in use/i.test(log),
      );
    }
    try {
      if (await ready()) return;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    if (performance.now() >= deadline) {
      await proc.kill();
      throw new StartError(
        `${what} not ready within ${timeoutMs} ms${lastError ? ` (last probe error: ${lastError})` : ''}. ` +
          `Last lines of ${proc.logFile}:\n${proc.logTail(30)}`,
        /address already in use/i.test(proc.logTail(30)),
      );
    }
    await sleep(intervalMs);
  }
}

/**
 * Waits (synchronously, at most 1 s) until every thread of `pid` is stopped (`stopped`) or none is,
 * reading `/proc/<pid>/task/<tid>/stat`. Where `/proc` is missing it returns at once.
 */
function waitForThreads(pid: number | undefined, stopped: boolean): void {
  if (pid === undefined) return;
  const deadline = performance.now() + 1000;
  const nap = new Int32Array(new SharedArrayBuffer(4));
  while (performance.now() < deadline) {
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      return;
    }
    const states = tasks.map((tid) => {
      try {
        // The state is the field after the command name, which is in parentheses.
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
      } catch {
        return 'X';
      }
    });
    const isStopped = (state: string) => state === 'T' || state === 't' || state === 'X' || state === 'Z';
    if (stopped ? states.every(isStopped) : !states.some((s) => s === 'T' || s === 't')) return;
    Atomics.wait(nap, 0, 0, 1);
  }
}
