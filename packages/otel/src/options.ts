import { type MeterProvider, metrics, type TracerProvider, trace } from '@opentelemetry/api';
import { ConfigError, type ConfigIssue } from '@rollcall/core';

/** Options of {@link instrumentRollcall}. */
export interface InstrumentOptions {
  /**
   * Where the metrics go. Default: the global provider (`metrics.getMeterProvider()`) at the time
   * of the call, so install after the SDK registered its provider (the metrics API has no proxy:
   * a provider registered later is not seen), or pass it here.
   */
  meterProvider?: MeterProvider;
  /**
   * Where the spans go. Default: the global provider (`trace.getTracerProvider()`), which follows
   * a provider the SDK registers later.
   */
  tracerProvider?: TracerProvider;
}

/** {@link InstrumentOptions} with defaults applied. */
export interface ResolvedInstrumentOptions {
  meterProvider: MeterProvider;
  tracerProvider: TracerProvider;
}

const hasMethod = (value: unknown, method: string): boolean =>
  typeof value === 'object' &&
  value !== null &&
  typeof (value as Record<string, unknown>)[method] === 'function';

/** Applies the defaults; throws a {@link ConfigError} listing every bad or unknown option. */
export function resolveInstrumentOptions(options: InstrumentOptions = {}): ResolvedInstrumentOptions {
  const issues: ConfigIssue[] = [];
  if (typeof options !== 'object' || options === null)
    throw new ConfigError([{ path: 'options', message: 'must be an object' }]);
  for (const key of Object.keys(options))
    if (key !== 'meterProvider' && key !== 'tracerProvider')
      issues.push({ path: key, message: 'unknown option (meterProvider, tracerProvider)' });
  if (options.meterProvider !== undefined && !hasMethod(options.meterProvider, 'getMeter'))
    issues.push({ path: 'meterProvider', message: 'must be a MeterProvider (an object with getMeter())' });
  if (options.tracerProvider !== undefined && !hasMethod(options.tracerProvider, 'getTracer'))
    issues.push({ path: 'tracerProvider', message: 'must be a TracerProvider (an object with getTracer())' });
  if (issues.length > 0) throw new ConfigError(issues);
  return {
    meterProvider: options.meterProvider ?? metrics.getMeterProvider(),
    tracerProvider: options.tracerProvider ?? trace.getTracerProvider(),
  };
}
