import type { LogFields, Logger } from '@rollcall/core';

/** A {@link Logger} that keeps every line, for assertions. */
export interface RecordingLogger extends Logger {
  /** Every line so far: `<level> <message>`, then the fields as JSON when there are any. */
  readonly lines: string[];
  /** Every line, joined by newlines. */
  text(): string;
}

/** A logger that keeps every line (level, message and fields as one string); `child` bindings are merged into the fields. */
export function recordingLogger(): RecordingLogger {
  const lines: string[] = [];
  const make = (bindings: LogFields): RecordingLogger => {
    const log = (level: string) => (fields: LogFields, message: string) => {
      const all = { ...bindings, ...fields };
      lines.push(`${level} ${message}${Object.keys(all).length > 0 ? ` ${JSON.stringify(all, safe)}` : ''}`);
    };
    return {
      lines,
      text: () => lines.join('\n'),
      debug: log('debug'),
      info: log('info'),
      warn: log('warn'),
      error: log('error'),
      child: (more) => make({ ...bindings, ...more }),
    };
  };
  return make({});
}

function safe(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? value.toString() : value;
}
