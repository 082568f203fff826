/**
 * Typed errors. Every error Rollcall throws is a {@link RollcallError} with a stable `code`,
 * so callers can branch on `err.code` or `instanceof` without parsing messages.
 * Messages never contain secrets: backends pass credentials through {@link redactSecrets}.
 */
/** Where an error keeps the names of its classes (shared by every copy of this package). */
const ERROR_CLASSES = Symbol.for('rollcall.errorClasses');

export class RollcallError extends Error {
  /** Stable machine-readable code, e.g. `ERR_VALIDATION`. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
    const classes: string[] = [];
    for (let c: unknown = new.target; typeof c === 'function' && c !== Error; c = Object.getPrototypeOf(c))
      classes.push((c as { name: string }).name);
    Object.defineProperty(this, ERROR_CLASSES, { value: classes });
  }
}

/**
 * `instanceof` holds across copies of `@rollcall/core`: an application whose dependencies resolve
 * two versions of it (or a test runner that loads a package twice) still recognises a
 * `ConfigError` made by the other copy. An error carries the names of its classes under a global
 * symbol; each class (this method is inherited) checks for its own name. Defined outside the class
 * body as a plain function: some TypeScript transforms bind `this` in static methods to the
 * declaring class, and here `this` must be the class on the right of `instanceof`.
 */
Object.defineProperty(RollcallError, Symbol.hasInstance, {
  value: function hasInstance(this: { name: string }, value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    const classes = (value as { [ERROR_CLASSES]?: unknown } | null | undefined)?.[ERROR_CLASSES];
    return Array.isArray(classes) && classes.includes(this.name);
  },
});

/** Bad input, refused before any network call. `field` names the offending field (`instance.port`). */
export class ValidationError extends RollcallError {
  readonly field: string;
  readonly reason: string;
  constructor(field: string, reason: string) {
    super('ERR_VALIDATION', `${field}: ${reason}`);
    this.field = field;
    this.reason = reason;
  }
}

/** One problem found in a configuration object. */
export interface ConfigIssue {
  /** Dotted path of the field, e.g. `consul.pollIntervalMs`. */
  readonly path: string;
  readonly message: string;
}

/** Bad configuration or backend options. Lists every bad field at once. */
export class ConfigError extends RollcallError {
  readonly issues: readonly ConfigIssue[];
  constructor(issues: readonly ConfigIssue[] | string) {
    const list = typeof issues === 'string' ? [{ path: '', message: issues }] : issues;
    super(
      'ERR_CONFIG',
      `invalid configuration: ${list.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ')}`,
    );
    this.issues = list;
  }
}

/** The backend could not be reached (or answered with a server error) and no last known good answer exists. */
export class BackendUnavailableError extends RollcallError {
  readonly backend: string;
  constructor(backend: string, message: string, options?: { cause?: unknown }) {
    super('ERR_BACKEND_UNAVAILABLE', `${backend}: ${message}`, options);
    this.backend = backend;
  }
}

/** The backend refused our credentials (wrong password, missing or wrong ACL token). */
export class PermissionDeniedError extends RollcallError {
  readonly backend: string;
  constructor(backend: string, message: string, options?: { cause?: unknown }) {
    super('ERR_PERMISSION_DENIED', `${backend}: ${message}`, options);
    this.backend = backend;
  }
}

/** The handle (discovery, backend, watch, lease) was closed before or during the call. */
export class ClosedError extends RollcallError {
  constructor(what: string) {
    super('ERR_CLOSED', `${what} is closed`);
  }
}

/** A lock or leadership could not be obtained within `timeoutMs`. */
export class LockTimeoutError extends RollcallError {
  readonly lock: string;
  constructor(lock: string, timeoutMs: number) {
    super('ERR_LOCK_TIMEOUT', `lock '${lock}' not acquired within ${timeoutMs} ms`);
    this.lock = lock;
  }
}

/**
 * Another live client holds the same registration (same service and id) or key: Rollcall reports
 * it instead of two processes overwriting each other. `register` rejects with it when the id is
 * held at registration time; a registration that finds its id taken later emits `lost` with it and
 * takes the id back once the other holder is gone.
 */
export class ConflictError extends RollcallError {
  /** The registry key both claim (e.g. `orders/orders-1`). */
  readonly key: string;
  constructor(key: string, message: string) {
    super('ERR_CONFLICT', message);
    this.key = key;
  }
}

/**
 * Thrown by a liveness driver when the server says the session a write or delete named no longer
 * exists (an etcd lease not found, an invalid Consul session): the engine treats the session as lost.
 */
export class SessionGoneError extends RollcallError {
  constructor(backend: string, message: string) {
    super('ERR_SESSION_GONE', `${backend}: ${message}`);
  }
}

/** The call was aborted by the caller's `AbortSignal`. */
export class AbortedError extends RollcallError {
  constructor(reason?: unknown) {
    super('ERR_ABORTED', 'the operation was aborted', { cause: reason });
    // The name Node and the platform give an aborted operation (`err.name === 'AbortError'`).
    this.name = 'AbortError';
  }
}

/**
 * Replaces every occurrence of each secret in `text` with `***`.
 * Backends run every message that may echo a request (URLs, headers, server errors) through it.
 */
export function redactSecrets(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const secret of secrets) {
    if (secret && secret.length > 0) out = out.split(secret).join('***');
  }
  return out;
}

/** Wraps `error` (any thrown value) so that its message, and its cause chain's messages, carry no secret. */
export function redactError(error: unknown, secrets: readonly (string | undefined)[]): Error {
  const message = error instanceof Error ? error.message : String(error);
  const clean = redactSecrets(message, secrets);
  if (error instanceof Error && clean === message && !(error.cause instanceof Error)) return error;
  const copy = new Error(clean);
  copy.name = error instanceof Error ? error.name : 'Error';
  return copy;
}
