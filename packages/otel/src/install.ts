import diagnostics from 'node:diagnostics_channel';
import { ROLLCALL_CHANNELS, RollcallError } from '@rollcall/core';
import { recordLockWaits } from './lock-waits.js';
import { type ChannelHandlers, recordChannels } from './metrics.js';
import { INSTRUMENTATION_SCOPE } from './names.js';
import { type InstrumentOptions, resolveInstrumentOptions } from './options.js';

/** A live installation: Rollcall's channels are being recorded. */
export interface RollcallInstrumentation {
  /** Removes every channel subscription and gauge callback, and ends spans of waits in progress. Idempotent. */
  uninstall(): void;
}

/** {@link instrumentRollcall} was called while an earlier installation is still live. */
export class AlreadyInstrumentedError extends RollcallError {
  constructor() {
    super(
      'ERR_ALREADY_INSTRUMENTED',
      '@rollcall/otel is already installed in this process (every message would be recorded twice); call uninstall() on the first installation before installing again',
    );
  }
}

// One flag per process, not per copy of this module: the channels are process-wide.
const INSTALLED = Symbol.for('rollcall.otel.installed');
type WithFlag = { [INSTALLED]?: boolean };

/**
 * Subscribes to Rollcall's diagnostics channels (`ROLLCALL_CHANNELS`) and records them as
 * OpenTelemetry metrics and `rollcall.lock.acquire` spans. Rollcall publishes nothing (builds no
 * message) while nothing is installed. One installation per process: a second call while one is
 * live throws {@link AlreadyInstrumentedError}; bad options throw a `ConfigError`.
 */
export function instrumentRollcall(options: InstrumentOptions = {}): RollcallInstrumentation {
  const { meterProvider, tracerProvider } = resolveInstrumentOptions(options);
  const flag = globalThis as WithFlag;
  if (flag[INSTALLED]) throw new AlreadyInstrumentedError();

  const meter = meterProvider.getMeter(INSTRUMENTATION_SCOPE);
  const channels = recordChannels(meter);
  const lockWaits = recordLockWaits(tracerProvider.getTracer(INSTRUMENTATION_SCOPE), meter);
  const subscriptions = (Object.keys(channels.handlers) as (keyof ChannelHandlers)[]).map((key) => {
    const handler = channels.handlers[key] as (message: unknown) => void;
    const name = ROLLCALL_CHANNELS[key];
    diagnostics.subscribe(name, handler);
    return () => diagnostics.unsubscribe(name, handler);
  });
  const tracing = diagnostics.tracingChannel(ROLLCALL_CHANNELS.lockAcquire);
  tracing.subscribe(lockWaits.handlers);
  flag[INSTALLED] = true;

  let installed = true;
  return {
    uninstall() {
      if (!installed) return;
      installed = false;
      for (const unsubscribe of subscriptions) unsubscribe();
      tracing.unsubscribe(lockWaits.handlers);
      channels.stop();
      lockWaits.stop();
      flag[INSTALLED] = false;
    },
  };
}
