import type { experimental } from '@grpc/grpc-js';
import { RollcallError, ValidationError, validateServiceName } from '@rollcall/core';

/** Schemes grpc-js (and grpc-js-xds) resolve: taking one over would reroute every channel of the process. */
const RESERVED_SCHEMES = new Set(['dns', 'ipv4', 'ipv6', 'unix', 'unix-abstract', 'xds']);
const SCHEME_RE = /^[a-z][a-z0-9+.-]{0,31}$/;

/** The scheme `registerResolver` answers for when none is given. */
export const DEFAULT_SCHEME = 'rollcall';

/** Checks a resolver scheme: lowercase URI scheme syntax, no colon, not one grpc-js owns. */
export function validateScheme(scheme: unknown, field = 'options.scheme'): string {
  if (typeof scheme !== 'string' || !SCHEME_RE.test(scheme)) {
    throw new ValidationError(
      field,
      `must be 1-32 characters of [a-z0-9+.-] starting with a letter, without ':' (got ${JSON.stringify(scheme)})`,
    );
  }
  if (RESERVED_SCHEMES.has(scheme))
    throw new ValidationError(field, `'${scheme}' is resolved by grpc-js itself; pick another scheme`);
  return scheme;
}

/** The target form a channel must use, as named in every error about a malformed target. */
export function expectedForm(scheme: string): string {
  return `${scheme}:///<service>`;
}

/** A channel target that named no valid service. Its message is what failing calls carry as details. */
export class InvalidTargetError extends RollcallError {
  constructor(
    readonly target: string,
    reason: string,
    scheme: string,
  ) {
    super(
      'ERR_INVALID_TARGET',
      `rollcall: invalid target '${target}': ${reason}; expected ${expectedForm(scheme)}, e.g. ${scheme}:///orders`,
    );
  }
}

/**
 * The service a parsed grpc-js target names. grpc-js reads `rollcall://orders` as an authority-less
 * path `//orders` (there is no '/' after the would-be authority), so that spelling, a non-empty
 * authority and a bad service name are all refused here, never by throwing inside grpc-js.
 */
export function serviceOfTarget(target: experimental.GrpcUri, scheme: string): string | InvalidTargetError {
  const text = `${scheme}:${target.authority === undefined ? '' : `//${target.authority}/`}${target.path}`;
  if (target.authority)
    return new InvalidTargetError(text, `an authority ('${target.authority}') is not supported`, scheme);
  const service = target.path.startsWith('//') ? target.path.slice(2) : target.path;
  try {
    validateServiceName(service);
  } catch (error) {
    const reason = error instanceof ValidationError ? error.message : String(error);
    return new InvalidTargetError(text, reason, scheme);
  }
  if (service !== target.path)
    return new InvalidTargetError(
      text,
      `'${service}' would be read as an authority, not a service (write ${scheme}:///${service})`,
      scheme,
    );
  return service;
}
