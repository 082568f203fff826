import { createRequire } from 'node:module';
import { normalizeKey, ValidationError } from '@rollcall/core';
import { MIGRATION_PHASES } from '@rollcall/migration';
import type * as Zod from 'zod';

/** Backends `rollcallModule` knows by name. */
export const BACKEND_NAMES = ['memory', 'etcd', 'consul', 'migrating'] as const;
/** A backend name. */
export type BackendName = (typeof BACKEND_NAMES)[number];
/** Registries a migration may go from or to. */
const REGISTRY_NAMES = ['memory', 'etcd', 'consul'] as const;

/**
 * The schemas of the configuration, built with the application's zod (a peer dependency) the
 * first time a configuration is parsed: importing `rollcall` does not load zod.
 *
 * `config` is what `parseConfig` checks: the `etcd` and `consul` sections are checked by the
 * backends' own option resolvers (one source of truth), so here they are plain objects. The
 * `etcdSection` and `consulSection` schemas describe those sections for people and editors (the
 * TypeScript types and the JSON Schema); a test keeps their keys equal to the options the
 * backends accept.
 */
function build(z: typeof Zod.z) {
  const ms = (what: string) => z.number().int().nonnegative().describe(what);
  const backoff = z
    .object({
      initialMs: z.number().positive().describe('first delay in ms (default 100)'),
      maxMs: z.number().positive().describe('largest delay in ms (default 5000)'),
      multiplier: z.number().min(1).describe('growth factor (default 2)'),
    })
    .partial()
    .strict()
    .describe('delays between retries after errors: capped exponential with jitter, no retry limit');
  const shared = {
    cacheIdleMs: ms('how long an unwatched service stays cached, in ms (default 300000)'),
    maxQueuedEvents: z
      .number()
      .int()
      .positive()
      .describe('events queued per slow watcher before it is re-synced'),
    resyncGraceMs: ms(
      'after a re-sync, how long instances missing from the fresh list stay listed, in ms (default 10000)',
    ),
    reconcileIntervalMs: ms(
      'how often registrations and held locks are checked against the server, in ms (default 10000)',
    ),
    backoff,
  };
  const etcdSection = z
    .object({
      endpoints: z
        .array(z.string())
        .describe("etcd client URLs, all one scheme (default ['http://127.0.0.1:2379'])"),
      namespace: z.string().describe("prefix of Rollcall's own keys, ending with '/' (default '/rollcall/')"),
      kvPrefix: z.string().describe("prefix of configuration keys: empty or ending with '/' (default '/')"),
      auth: z
        .object({ username: z.string(), password: z.string().describe('never logged') })
        .strict()
        .describe("etcd's built-in authentication"),
      tls: z
        .object({
          ca: z.string().describe('PEM file of the CA that signed the server certificate'),
          cert: z.string().describe('PEM client certificate file (needs key)'),
          key: z.string().describe('PEM client key file'),
        })
        .partial()
        .strict()
        .describe('TLS files, read once at start; needs https:// endpoints'),
      dialTimeoutMs: ms('deadline of the password-to-token exchange, in ms (default 5000)'),
      callTimeoutMs: ms('deadline of every unary call, in ms (default 5000)'),
      keepaliveMs: ms('interval of gRPC keepalive pings on open streams, in ms (default 5000)'),
      ...shared,
    })
    .partial()
    .strict()
    .describe('options of createEtcdBackend (@rollcall/etcd)');
  const consulSection = z
    .object({
      host: z.string().describe("agent host name or IP address (default '127.0.0.1')"),
      port: z.number().int().min(1).max(65535).describe('agent HTTP(S) port (default 8500)'),
      secure: z.boolean().describe('talk HTTPS to the agent (default false)'),
      token: z.string().describe('ACL token, sent as X-Consul-Token; never logged'),
      pollIntervalMs: z
        .number()
        .int()
        .min(5000)
        .describe('least ms between two requests for one watched service (default and minimum 5000)'),
      deregisterCriticalAfter: z
        .union([z.string(), z.number()])
        .describe(
          "how long a registration's TTL check may stay critical before Consul removes it: a Go duration or ms (default '1m')",
        ),
      datacenter: z.string().describe("datacenter of discovery reads and kv calls (default: the agent's)"),
      watchMode: z.enum(['poll', 'blocking']).describe("'poll' or 'blocking' queries (default 'poll')"),
      callTimeoutMs: ms('deadline of every non-blocking HTTP call, in ms (default 5000)'),
      maxConnections: z
        .number()
        .int()
        .positive()
        .describe('most connections for ordinary calls (default 16)'),
      maxBlockingConnections: z
        .number()
        .int()
        .positive()
        .describe('most connections for blocking queries (default 64)'),
      lockPrefix: z.string().describe("key prefix of lock and election keys (default 'rollcall/')"),
      lockDelay: z
        .union([z.string(), z.number()])
        .describe("LockDelay of lock sessions: a Go duration or ms, 0 to 60 s (default '0s')"),
      ...shared,
    })
    .partial()
    .strict()
    .describe('options of createConsulBackend (@rollcall/consul)');
  const migrating = z
    .object({
      from: z.enum(REGISTRY_NAMES).describe('the registry being left'),
      to: z.enum(REGISTRY_NAMES).describe('the registry being adopted'),
      phase: z.enum(MIGRATION_PHASES).describe('the phase to start in when the phase key is not set'),
      threshold: z
        .number()
        .positive()
        .finite()
        .optional()
        .describe(
          "per service, `to` must hold >= threshold x `from`'s instances before reads move (default 1)",
        ),
      phaseKey: z
        .string()
        .optional()
        .describe("kv key on `to` the fleet follows (default 'rollcall/migration/phase')"),
    })
    .strict()
    .superRefine((m, ctx) => {
      if (m.from === m.to)
        ctx.addIssue({
          code: 'custom',
          path: ['to'],
          message: `must be another registry than from ('${m.from}')`,
        });
      if (m.phaseKey !== undefined) {
        try {
          normalizeKey(m.phaseKey, 'phaseKey');
        } catch (error) {
          if (!(error instanceof ValidationError)) throw error;
          ctx.addIssue({ code: 'custom', path: ['phaseKey'], message: error.reason });
        }
      }
    })
    .describe('a Consul-to-etcd migration (backend "migrating"): see @rollcall/migration');
  const backend = z.enum(BACKEND_NAMES).describe('the backend this environment uses');
  const config = z
    .object({
      backend,
      etcd: z.record(z.string(), z.unknown()).optional(),
      consul: z.record(z.string(), z.unknown()).optional(),
      migrating: migrating.optional(),
    })
    .strict()
    .superRefine((c, ctx) => {
      if (c.backend === 'migrating' && c.migrating === undefined)
        ctx.addIssue({
          code: 'custom',
          path: ['migrating'],
          message: "required with backend 'migrating': { from, to, phase, threshold? }",
        });
    });
  /** One environment's section of the file: every field optional (sections merge over `default`). */
  const fileSection = z
    .object({ backend, etcd: etcdSection, consul: consulSection, migrating })
    .partial()
    .strict();
  return { config, etcdSection, consulSection, fileSection };
}

type Schemas = ReturnType<typeof build>;
let built: Schemas | undefined;
const load = createRequire(import.meta.url);

/** The configuration's schemas, built on first use with the application's zod. */
export function configSchemas(): Schemas {
  built ??= build((load('zod') as typeof Zod).z);
  return built;
}

/** The `etcd` section: the options of `createEtcdBackend` a file or variables can set. */
export type EtcdSection = Zod.infer<Schemas['etcdSection']>;
/** The `consul` section: the options of `createConsulBackend` a file or variables can set. */
export type ConsulSection = Zod.infer<Schemas['consulSection']>;

/**
 * Which backend a process uses, and its options. `etcd` / `consul` are checked by those
 * backends' own option validation. A logger is not configuration: bind `TYPES.Logger`.
 */
export type RollcallConfig = Omit<Zod.infer<Schemas['config']>, 'etcd' | 'consul'> & {
  etcd?: EtcdSection;
  consul?: ConsulSection;
};

/**
 * The JSON Schema (draft 2020-12) of `rollcall.config.json`: an object with one section per
 * environment (plus `default`, merged underneath), each section's fields described. Editors
 * complete and check a file whose `$schema` points at the copy shipped with this package
 * (`rollcall/schema/rollcall.config.schema.json`).
 */
export function configFileJsonSchema(): Record<string, unknown> {
  const z = (load('zod') as typeof Zod).z;
  const file = z
    .object({ $schema: z.string().describe('where editors find this schema').optional() })
    .catchall(configSchemas().fileSection)
    .describe(
      'rollcall.config.json: one section per environment (picked by --env, ROLLCALL_ENV or NODE_ENV), plus `default` underneath them all; environment variables override the file',
    );
  return {
    ...z.toJSONSchema(file, { target: 'draft-2020-12', unrepresentable: 'any' }),
    title: 'Rollcall configuration',
  } as Record<string, unknown>;
}
