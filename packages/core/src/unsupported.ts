import { RollcallError } from './errors.js';
import type { LockService } from './types.js';

/** Thrown by a capability a backend does not offer (yet). */
export class NotSupportedError extends RollcallError {
  constructor(message: string) {
    super('ERR_NOT_SUPPORTED', message);
  }
}

/** A {@link LockService} whose every call rejects with {@link NotSupportedError}, for backends without locks. */
export function unsupportedLocks(backend: string): LockService {
  const fail = () =>
    Promise.reject(new NotSupportedError(`the ${backend} backend does not provide locks yet`));
  return { acquire: fail, tryAcquire: fail, withLock: fail, campaign: fail, leader: fail };
}
