export { createMemoryBackend, type MemoryBackend, type MemoryBackendOptions } from './backend.js';
export { type Clock, ManualClock, MemoryStore, type MemoryStoreOptions } from './store.js';
