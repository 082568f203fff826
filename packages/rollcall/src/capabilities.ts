import {
  type Backend,
  type DiscoveryHealth,
  type LockInfo,
  NotSupportedError,
  type ServiceDiscovery,
} from '@rollcall/core';
import type { MigratingBackend } from '@rollcall/migration';

/**
 * Optional features a backend object may have beyond the contract, found by shape so that any
 * backend (a plugged-in one, the migration backend) works: lock listing, discovery health, the
 * migration view.
 */

/** Whether `backend.locks` can enumerate holders. */
export function canListLocks(backend: Backend): boolean {
  return typeof (backend.locks as { list?: unknown }).list === 'function';
}

/** Every lock and election held or waited for; {@link NotSupportedError} when the backend cannot list them. */
export function listLocks(backend: Backend): Promise<LockInfo[]> {
  const locks = backend.locks as { list?: () => Promise<LockInfo[]> };
  if (typeof locks.list !== 'function')
    return Promise.reject(new NotSupportedError(backend.name, 'listing locks'));
  return locks.list();
}

/** The discovery's own health report (reachability by ping, registrations, watches), when it has one. */
export function discoveryHealth(
  discovery: ServiceDiscovery,
  timeoutMs: number,
): Promise<DiscoveryHealth> | undefined {
  const d = discovery as { health?: (timeoutMs?: number) => Promise<DiscoveryHealth> };
  return typeof d.health === 'function' ? d.health(timeoutMs) : undefined;
}

/** What the dashboard reads of a `migrating` backend: its phase, and its comparison and `phase` events when it has them. */
export type MigrationView = Pick<MigratingBackend, 'phase'> &
  Partial<Pick<MigratingBackend, 'compare' | 'on'>>;

/** The migration view of a backend named `migrating`, else `undefined`. */
export function migrationOf(backend: Backend): MigrationView | undefined {
  if (backend.name !== 'migrating') return undefined;
  const view = backend as unknown as MigrationView;
  return typeof view.phase === 'string' ? view : undefined;
}

/** A Consul backend's agent address (`http://host:port`), found by shape. */
export function consulAddressOf(backend: Backend): string | undefined {
  const address = (backend as { address?: unknown }).address;
  return typeof address === 'string' ? address : undefined;
}

/** An etcd backend's client URLs (`options.endpoints`), found by shape. */
export function etcdEndpointsOf(backend: Backend): readonly string[] | undefined {
  const endpoints = (backend as { options?: { endpoints?: unknown } }).options?.endpoints;
  return Array.isArray(endpoints) ? (endpoints as string[]) : undefined;
}
