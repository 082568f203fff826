import { BackendUnavailableError, PermissionDeniedError, RollcallError } from '@rollcall/core';

/** Bad command-line usage found by a command itself (a malformed `--meta`, an out-of-range `--port`): exit 2. */
export class UsageError extends RollcallError {
  constructor(message: string) {
    super('ERR_USAGE', message);
  }
}

/** A command that ran but whose answer is a failure (no such key, no leader, a failed check): exit 1. */
export class FailureError extends RollcallError {
  constructor(message: string) {
    super('ERR_FAILED', message);
  }
}

/** Error codes that mean "the input or configuration is wrong" (exit 2); every other error is a failure (exit 1). */
const USAGE_CODES = new Set(['ERR_USAGE', 'ERR_CONFIG', 'ERR_VALIDATION']);

/** The exit code for an error a command threw: 2 for bad usage, input or configuration, else 1. */
export function exitCodeOf(error: unknown): 1 | 2 {
  return error instanceof RollcallError && USAGE_CODES.has(error.code) ? 2 : 1;
}

/**
 * One line naming what failed. Backend errors name the server when their message does not
 * already (`target`: the configured endpoints or agent address; never credentials). gRPC's
 * multi-line texts and empty trailers are folded away.
 */
export function describeError(error: unknown, target: string | undefined): string {
  let message = tidyMessage(error instanceof Error ? error.message : String(error));
  const fromBackend = error instanceof BackendUnavailableError || error instanceof PermissionDeniedError;
  if (fromBackend && target && !target.split(', ').some((t) => message.includes(t)))
    message = `${message} (server: ${target})`;
  return message;
}

/** One line, without gRPC's boilerplate. */
export function tidyMessage(text: string): string {
  return (
    text
      .replace(/\s*Resolution note:\s*$/i, '')
      // grpc-js: "14 UNAVAILABLE: No connection established. Last error: Error: connect ECONNREFUSED ..."
      .replace(/\b14 UNAVAILABLE: No connection established\. Last error: (?:Error: )?/, 'cannot connect: ')
      .replace(/\s+/g, ' ')
      .trim()
      .replace(/\.$/, '')
  );
}

/** The stack and cause chain, for `--debug`. */
export function debugLines(error: unknown): string[] {
  const lines: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 5; depth++) {
    lines.push(
      ...(current instanceof Error ? (current.stack ?? current.message) : String(current)).split('\n'),
    );
    current = current instanceof Error ? current.cause : undefined;
    if (current !== undefined) lines.push('caused by:');
  }
  return lines;
}
