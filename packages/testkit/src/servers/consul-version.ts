import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';

/**
 * The Consul versions the testkit runs: 1.8.0 up to, not including, 1.14.0.
 *
 * - Rollcall's Consul backend needs 1.8 or later (the contract's minimum).
 * - The dev agent the harness starts is configured the 1.8 way: six ports on the command line
 *   (`-http-port`, `-dns-port`, `-serf-lan-port`, `-serf-wan-port`, `-server-port`, `-grpc-port`)
 *   and ACL tokens under `acl.tokens.master`, a name 1.11 to 1.13 still read (deprecated in
 *   favour of `initial_management`). 1.14 split gRPC into a plaintext and a TLS port, a seventh
 *   port the harness does not allocate: two agents on one machine could collide on its default.
 * - Only 1.8.7 (Debian bullseye's, what `rollcall-testkit install-servers` fetches) is run in
 *   this repository's CI. 1.9 to 1.13 are accepted because their documented flags and
 *   configuration keys cover the ones used here; they are not run here (none is obtainable).
 */
export const CONSUL_VERSIONS = { min: '1.8.0', below: '1.14.0' } as const;

/** `'>= 1.8.0 and < 1.14.0'`, for messages. */
export const CONSUL_VERSIONS_TEXT = `>= ${CONSUL_VERSIONS.min} and < ${CONSUL_VERSIONS.below}`;

/** A parsed `consul version` answer. */
export interface ConsulVersion {
  /** `'1.8.7'` (any `+ent` / `-dev` suffix dropped). */
  readonly version: string;
  /** First line of `consul version`, e.g. `'Consul v1.8.7'`. */
  readonly line: string;
  /** Within {@link CONSUL_VERSIONS}. */
  readonly accepted: boolean;
}

function parts(version: string): number[] {
  return version.split('.').map(Number);
}

function compare(a: number[], b: number[]): number {
  for (let i = 0; i < 3; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Parses the output of `consul version` (`Consul v1.8.7` on its first line); `undefined` if it is not one. */
export function parseConsulVersion(output: string): ConsulVersion | undefined {
  const line = output.trim().split('\n')[0]?.trim() ?? '';
  const match = /^Consul v(\d+)\.(\d+)\.(\d+)/.exec(line);
  if (!match) return undefined;
  const version = `${match[1]}.${match[2]}.${match[3]}`;
  const v = parts(version);
  const accepted =
    compare(v, parts(CONSUL_VERSIONS.min)) >= 0 && compare(v, parts(CONSUL_VERSIONS.below)) < 0;
  return { version, line, accepted };
}

// Asking a binary its version costs a process start (~20 ms); harnesses ask once per agent.
const asked = new Map<string, ConsulVersion | undefined>();

/**
 * Runs `<bin> version` and parses it; `undefined` when it does not run or does not answer like
 * Consul. Remembered per path, size and modification time.
 */
export function consulVersionOf(bin: string): ConsulVersion | undefined {
  let key: string;
  try {
    const stat = statSync(bin);
    key = `${bin}\0${stat.size}\0${stat.mtimeMs}`;
  } catch {
    return undefined;
  }
  if (asked.has(key)) return asked.get(key);
  let version: ConsulVersion | undefined;
  try {
    version = parseConsulVersion(
      execFileSync(bin, ['version'], {
        encoding: 'utf8',
        timeout: 10_000,
        stdio: ['ignore', 'pipe', 'ignore'],
      }),
    );
  } catch {
    version = undefined;
  }
  asked.set(key, version);
  return version;
}
