export * from './bench.js';
export * from './discovery-contract.js';
export * from './hostile.js';
export * from './kv-contract.js';
export * from './lock-contract.js';
export * from './recorder.js';
export * from './servers/index.js';
export * from './suite-hooks.js';
