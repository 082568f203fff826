import {
  FORBIDDEN_KEYS,
  isValidHost,
  MAX_WEIGHT,
  RESERVED_METADATA_PREFIX,
  type ServiceInstance,
  ValidationError,
  validateId,
} from '@rollcall/core';

/**
 * How a Rollcall instance maps to a Consul agent service, and back.
 *
 * | Rollcall            | Consul                                                                  |
 * | ------------------- | ----------------------------------------------------------------------- |
 * | `service`           | `Name`                                                                  |
 * | `id`                | `Meta.rollcall_id`; the Consul service `ID` is `<service>:<id>`         |
 * | `host`, `port`      | `Address`, `Port`                                                       |
 * | `version`           | `Meta.rollcall_version`                                                 |
 * | `tags`              | `Tags`                                                                  |
 * | `metadata`          | the other `Meta` entries                                                |
 * | `weight`            | `Weights.Passing` (`Weights.Warning` is 1: warning instances are not served) |
 *
 * Consul service IDs must be unique per agent across all services, so the ID joins service and id
 * with `:`, a character neither may contain: it cannot collide and it splits back unambiguously.
 * `Meta.rollcall_shape` (only when needed) records optional fields that Consul cannot tell apart
 * from their absence (`weight` given as 1, empty `tags` or `metadata`), so that every instance
 * round-trips exactly.
 */

export const META_ID = `${RESERVED_METADATA_PREFIX}id`;
export const META_VERSION = `${RESERVED_METADATA_PREFIX}version`;
export const META_SHAPE = `${RESERVED_METADATA_PREFIX}shape`;
/** The id of the client that registered the instance: who may overwrite or deregister it. */
export const META_OWNER = `${RESERVED_METADATA_PREFIX}owner`;
/** Consul refuses services with more Meta pairs than this. */
export const CONSUL_MAX_META = 64;

/** The Consul service ID of an instance. */
export function serviceIdOf(instance: Pick<ServiceInstance, 'service' | 'id'>): string {
  return `${instance.service}:${instance.id}`;
}

/** The ID of the TTL check registered with an instance. */
export function checkIdOf(instance: Pick<ServiceInstance, 'service' | 'id'>): string {
  return `service:${serviceIdOf(instance)}`;
}

/**
 * Checks what Consul refuses but Rollcall's validation allows, before any network call. Core's
 * validation already applies Consul's limits everywhere (at most 61 metadata entries, values
 * counted in bytes, the `consul-` key prefix, unspecified addresses), so this is a safety net
 * should the two drift apart.
 */
export function checkConsulLimits(instance: ServiceInstance): void {
  const user = Object.keys(instance.metadata ?? {}).length;
  const reserved = reservedMeta(instance);
  const room = CONSUL_MAX_META - Object.keys(reserved).length;
  if (user > room) {
    throw new ValidationError(
      'instance.metadata',
      `the Consul backend allows at most ${room} entries for this instance (Consul's limit is ${CONSUL_MAX_META} Meta pairs, and Rollcall keeps ${CONSUL_MAX_META - room} of its own) (got ${user})`,
    );
  }
}

function reservedMeta(instance: ServiceInstance, owner = ''): Record<string, string> {
  const meta: Record<string, string> = { [META_ID]: instance.id, [META_OWNER]: owner };
  if (instance.version !== undefined) meta[META_VERSION] = instance.version;
  const shape: string[] = [];
  if (instance.weight !== undefined) shape.push('weight');
  if (instance.tags !== undefined && instance.tags.length === 0) shape.push('tags');
  if (instance.metadata !== undefined && Object.keys(instance.metadata).length === 0) shape.push('metadata');
  if (shape.length > 0) meta[META_SHAPE] = shape.join(',');
  return meta;
}

/** The body of `PUT /v1/agent/service/register` for an instance with its TTL check. */
export function registrationBody(
  instance: ServiceInstance,
  ttlSeconds: number,
  deregisterCriticalAfter: string,
  owner = '',
): Record<string, unknown> {
  const serviceId = serviceIdOf(instance);
  return {
    ID: serviceId,
    Name: instance.service,
    Address: instance.host,
    Port: instance.port,
    Tags: instance.tags ? [...instance.tags] : [],
    Meta: { ...(instance.metadata ?? {}), ...reservedMeta(instance, owner) },
    Weights: { Passing: instance.weight ?? 1, Warning: 1 },
    Check: {
      CheckID: checkIdOf(instance),
      Name: `rollcall TTL ${ttlSeconds}s`,
      TTL: `${ttlSeconds}s`,
      // Passing from the start, so that the instance is visible as soon as the register call returns.
      Status: 'passing',
      DeregisterCriticalServiceAfter: deregisterCriticalAfter,
    },
  };
}

interface HealthEntry {
  Node?: { Address?: unknown };
  Service?: {
    ID?: unknown;
    Service?: unknown;
    Address?: unknown;
    Port?: unknown;
    Tags?: unknown;
    Meta?: unknown;
    Weights?: { Passing?: unknown } | null;
  };
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

/** The string entries of a Meta object; keys that could reach `Object.prototype` are dropped. */
function stringRecord(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value))
      if (typeof v === 'string' && !FORBIDDEN_KEYS.has(k)) out[k] = v;
  }
  return out;
}

function validId(id: string): boolean {
  try {
    validateId(id);
    return true;
  } catch {
    return false;
  }
}

/**
 * Decodes one entry of `GET /v1/health/service/<name>` into an instance of `service`.
 *
 * - Entries Rollcall registered (they carry `Meta.rollcall_id`) decode exactly as registered.
 * - Other entries (registered by other tools) are mapped: `id` = the Consul service ID, `host` =
 *   the service address or else the node address, `tags`/`metadata` when non-empty, `weight` =
 *   `Weights.Passing` when it is not Consul's default of 1.
 * - Entries that cannot be a valid instance are skipped (`undefined`): another service's name, a
 *   foreign ID outside `[A-Za-z0-9._-]{1,128}`, no usable address, or a port outside 1-65535.
 */
export function decodeHealthEntry(entry: unknown, service: string): ServiceInstance | undefined {
  const e = (entry ?? {}) as HealthEntry;
  const s = e.Service;
  if (!s || s.Service !== service) return undefined;
  const port = s.Port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65_535) return undefined;
  const serviceAddress = typeof s.Address === 'string' ? s.Address : '';
  const host =
    serviceAddress !== '' ? serviceAddress : typeof e.Node?.Address === 'string' ? e.Node.Address : '';
  if (!isValidHost(host)) return undefined;
  const meta = stringRecord(s.Meta);
  const tags = strings(s.Tags);
  const passing = s.Weights?.Passing;
  const weight =
    typeof passing === 'number' && Number.isInteger(passing) && passing >= 1 && passing <= MAX_WEIGHT
      ? passing
      : undefined;

  const ownId = meta[META_ID];
  if (ownId !== undefined) {
    if (!validId(ownId)) return undefined;
    const shape = new Set((meta[META_SHAPE] ?? '').split(',').filter(Boolean));
    const metadata: Record<string, string> = {};
    for (const [k, v] of Object.entries(meta)) if (!k.startsWith(RESERVED_METADATA_PREFIX)) metadata[k] = v;
    const out: ServiceInstance = { id: ownId, service, host, port };
    const version = meta[META_VERSION];
    if (version !== undefined) out.version = version;
    if (tags.length > 0 || shape.has('tags')) out.tags = tags;
    if (Object.keys(metadata).length > 0 || shape.has('metadata')) out.metadata = metadata;
    if (shape.has('weight')) out.weight = weight ?? 1;
    return out;
  }

  const id = typeof s.ID === 'string' ? s.ID : '';
  if (!validId(id)) return undefined;
  const out: ServiceInstance = { id, service, host, port };
  if (tags.length > 0) out.tags = tags;
  if (Object.keys(meta).length > 0) out.metadata = meta;
  if (weight !== undefined && weight !== 1) out.weight = weight;
  return out;
}

/** Decodes a whole health answer into `[id, instance]` pairs (the first of duplicate ids wins). */
export function decodeHealth(entries: readonly unknown[], service: string): [string, ServiceInstance][] {
  const out = new Map<string, ServiceInstance>();
  for (const entry of entries) {
    const instance = decodeHealthEntry(entry, service);
    if (instance && !out.has(instance.id)) out.set(instance.id, instance);
  }
  return [...out];
}
