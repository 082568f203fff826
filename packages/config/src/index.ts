export {
  createLiveConfig,
  type LiveConfig,
  LiveConfigError,
  type LiveConfigOptions,
  type LiveConfigOrigin,
  parseValue,
} from './live-config.js';
export type { RefusedKey } from './tree.js';
