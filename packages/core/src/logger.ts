/** The structured fields of one log line. */
export type LogFields = Record<string, unknown>;

/**
 * Where Rollcall reports what it does in the background (losses, retries, recoveries).
 *
 * It takes pino's (and bunyan's) argument order, fields first: a pino or bunyan instance passes as
 * it is and keeps every field. Rollcall always passes a fields object (empty when it has none)
 * and a message. For a logger that takes the message first (winston, `console`), wrap it with
 * {@link messageFirstLogger} or use {@link consoleLogger}.
 */
export interface Logger {
  debug(fields: LogFields, message: string): void;
  info(fields: LogFields, message: string): void;
  warn(fields: LogFields, message: string): void;
  error(fields: LogFields, message: string): void;
  /**
   * A logger that adds `bindings` to every line (pino's and bunyan's `child`). Optional: without
   * it Rollcall merges the bindings into each line's fields itself.
   */
  child?(bindings: LogFields): Logger;
}

/** Discards everything. The default: a library stays quiet unless given a logger. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;

/**
 * A logger whose every line carries `bindings` (each backend binds `backend`; registrations add
 * `service`): `logger.child(bindings)` where the logger has one (pino, bunyan), else a wrapper that
 * merges them into each line's fields (a line's own fields win).
 */
export function childLogger(logger: Logger, bindings: LogFields): Logger {
  if (logger === silentLogger) return logger;
  if (typeof logger.child === 'function') return logger.child(bindings);
  const wrap =
    (level: (typeof LEVELS)[number]) =>
    (fields: LogFields, message: string): void =>
      logger[level]({ ...bindings, ...fields }, message);
  return {
    debug: wrap('debug'),
    info: wrap('info'),
    warn: wrap('warn'),
    error: wrap('error'),
    child: (more) => childLogger(logger, { ...bindings, ...more }),
  };
}

/** A logger that takes the message first, then its fields: winston's `(message, meta)`, `console`. */
export interface MessageFirstLogger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** Adapts a message-first logger (winston) to {@link Logger}: every field is passed on as its meta. */
export function messageFirstLogger(target: MessageFirstLogger): Logger {
  return {
    debug: (fields, message) => target.debug(message, fields),
    info: (fields, message) => target.info(message, fields),
    warn: (fields, message) => target.warn(message, fields),
    error: (fields, message) => target.error(message, fields),
  };
}

/** Options of {@link consoleLogger}, with their defaults. */
export interface ConsoleLoggerOptions {
  /** Also write `info` lines (`debug` with `debug: true`). Default false: warnings and errors only. */
  verbose?: boolean;
  /** Also write `debug` lines. Default false. */
  debug?: boolean;
  /** Where lines go. Default the global `console`. */
  console?: Pick<Console, 'debug' | 'info' | 'warn' | 'error'>;
}

/**
 * Writes one line per entry to the console: `[rollcall] <level> <message> <fields as JSON>`.
 * Warnings and errors by default; `info` with `verbose`, `debug` with `debug`. Bigints and errors
 * in fields are written as text, never dropped.
 */
export function consoleLogger(options: ConsoleLoggerOptions = {}): Logger {
  const out = options.console ?? console;
  const line = (level: string, fields: LogFields, message: string) => {
    const text = Object.keys(fields).length === 0 ? '' : ` ${JSON.stringify(fields, jsonSafe)}`;
    return `[rollcall] ${level} ${message}${text}`;
  };
  return {
    debug: (f, m) => {
      if (options.debug) out.debug(line('debug', f, m));
    },
    info: (f, m) => {
      if (options.verbose || options.debug) out.info(line('info', f, m));
    },
    warn: (f, m) => out.warn(line('warn', f, m)),
    error: (f, m) => out.error(line('error', f, m)),
  };
}

function jsonSafe(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Error) return value.message;
  return value;
}

/** Whether `value` has the four methods of a {@link Logger} (how options are checked). */
export function isLogger(value: unknown): value is Logger {
  return (
    typeof value === 'object' &&
    value !== null &&
    LEVELS.every((m) => typeof (value as Record<string, unknown>)[m] === 'function')
  );
}
