/** Where Rollcall reports what it does in the background (losses, retries, recoveries). */
export interface Logger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** Discards everything. The default: a library stays quiet unless given a logger. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** Writes warnings and errors (and `info` when `verbose`) to the console as one line each. */
export function consoleLogger(options: { verbose?: boolean } = {}): Logger {
  const line = (level: string, message: string, fields?: Record<string, unknown>) =>
    `[rollcall] ${level} ${message}${fields ? ` ${JSON.stringify(fields)}` : ''}`;
  return {
    debug() {},
    info: (m, f) => {
      if (options.verbose) console.info(line('info', m, f));
    },
    warn: (m, f) => console.warn(line('warn', m, f)),
    error: (m, f) => console.error(line('error', m, f)),
  };
}
