export { AlreadyInstrumentedError, instrumentRollcall, type RollcallInstrumentation } from './install.js';
export { ATTRIBUTES, INSTRUMENTATION_SCOPE, LOCK_ACQUIRE_SPAN, METRICS } from './names.js';
export type { InstrumentOptions } from './options.js';
