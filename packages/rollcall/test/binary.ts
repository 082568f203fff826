import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built `rollcall` binary (run `npm run build` first: it imports dist/). */
export const BIN = join(dirname(fileURLToPath(import.meta.url)), '..', 'bin', 'rollcall.js');

/** `rollcall doctor`'s verdict per check on a working server. */
export const DOCTOR_ALL_OK = {
  configuration: 'ok',
  reachable: 'ok',
  auth: 'ok',
  registration: 'ok',
  'watch propagation': 'ok',
  'clock skew': 'ok',
  'server version': 'ok',
};

/** A working directory without a rollcall.config.json: only the environment configures the child. */
const cwd = mkdtempSync(join(tmpdir(), 'rollcall-bin-'));

/** A running `rollcall` process. */
export interface Running {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Lines of stdout so far. */
  lines(): string[];
  /** Resolves with the first stdout line matching `pattern` (rejects when the process exits first). */
  line(pattern: RegExp): Promise<string>;
  /** Resolves with the exit code (a signal death is reported as `signal:<name>`). */
  readonly exit: Promise<number | string>;
}

const running = new Set<ChildProcess>();

/** Kills every process still running (afterEach / afterAll). */
export function killAll(): void {
  for (const child of running) child.kill('SIGKILL');
  running.clear();
}

/** Starts `rollcall <args>` with only `env` (plus PATH and HOME) as its environment. */
export function start(args: string[], env: Record<string, string>): Running {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? cwd, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of waiters) w();
  });
  child.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  let exited = false;
  const exit = new Promise<number | string>((resolve) =>
    child.once('close', (code, signal) => {
      running.delete(child);
      exited = true;
      resolve(code ?? `signal:${signal}`);
      for (const w of waiters) w();
    }),
  );
  const lines = () => out.split('\n').filter(Boolean);
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    lines,
    exit,
    line: (pattern) =>
      new Promise((resolve, reject) => {
        const check = () => {
          const found = lines().find((l) => pattern.test(l));
          if (found !== undefined) {
            waiters.delete(check);
            resolve(found);
          } else if (exited) {
            waiters.delete(check);
            reject(new Error(`rollcall exited without printing ${pattern}: ${out}${err}`));
          }
        };
        waiters.add(check);
        check();
      }),
  };
}

/** Runs `rollcall <args>` to the end (killed after `timeoutMs`, which fails the caller's expectations). */
export async function run(
  args: string[],
  env: Record<string, string>,
  timeoutMs = 20_000,
): Promise<{ code: number | string; stdout: string; stderr: string; lines: string[]; errLines: string[] }> {
  const r = start(args, env);
  const timer = setTimeout(() => r.child.kill('SIGKILL'), timeoutMs);
  const code = await r.exit;
  clearTimeout(timer);
  return {
    code,
    stdout: r.stdout(),
    stderr: r.stderr(),
    lines: r.lines(),
    errLines: r.stderr().split('\n').filter(Boolean),
  };
}
