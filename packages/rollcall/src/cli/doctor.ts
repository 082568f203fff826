import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import {
  type Backend,
  type DiscoveryEvent,
  PermissionDeniedError,
  type ServiceInstance,
} from '@rollcall/core';
import type { Command } from 'commander';
import { consulAddressOf, discoveryHealth, etcdEndpointsOf } from '../capabilities.js';
import type { CliContext } from './context.js';
import { describeError } from './errors.js';
import { callTimeoutOf, PROBE_KEY, timed } from './health.js';
import { formatMs, table } from './output.js';
import { consulFacts, etcdFacts, type ProbeTls, type ServerFacts } from './probes.js';

/** The service doctor registers its test instance under. */
const DOCTOR_SERVICE = 'rollcall-doctor';
/** A clock further off than this (ms) is a warning: Consul fencing epochs and `syncedAt` ages rely on clocks. */
const SKEW_WARN_MS = 2000;

type Verdict = 'ok' | 'warn' | 'fail' | 'skip';

/** One line of the doctor's report. */
interface Check {
  check: string;
  verdict: Verdict;
  detail: string;
  ms?: number;
}

/** Waits (at most `deadlineMs`) for a watch event that satisfies `predicate`; its time, or undefined. */
async function waitForEvent(
  events: AsyncIterator<DiscoveryEvent>,
  predicate: (instances: readonly ServiceInstance[]) => boolean,
  deadlineMs: number,
): Promise<number | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), deadlineMs);
  });
  try {
    for (;;) {
      const next = await Promise.race([events.next(), timeout]);
      if (next === 'timeout' || next.done) return undefined;
      if (next.value.type !== 'stale' && predicate(next.value.snapshot.instances)) return performance.now();
    }
  } finally {
    clearTimeout(timer);
  }
}

/** Registers a test instance on `first`, watches it appear and disappear on `second`. */
async function registrationChecks(first: Backend, second: Backend, deadlineMs: number): Promise<Check[]> {
  const id = `doctor-${hostname()
    .replace(/[^A-Za-z0-9.-]/g, '-')
    .slice(0, 60)}-${process.pid}-${randomBytes(3).toString('hex')}`;
  const watch = second.discovery.watch(DOCTOR_SERVICE);
  const events = watch[Symbol.asyncIterator]();
  try {
    // The watch is established once its first event (the sync) has come.
    if ((await waitForEvent(events, () => true, deadlineMs)) === undefined)
      return [
        { check: 'registration', verdict: 'fail', detail: `no first watch event within ${deadlineMs} ms` },
      ];
    const start = performance.now();
    const registration = await first.discovery.register(
      { id, service: DOCTOR_SERVICE, host: '127.0.0.1', port: 9, metadata: { purpose: 'rollcall doctor' } },
      { ttlSeconds: 10 },
    );
    const registered = performance.now();
    const appeared = await waitForEvent(events, (list) => list.some((i) => i.id === id), deadlineMs);
    if (appeared === undefined) {
      await registration.deregister();
      return [
        {
          check: 'registration',
          verdict: 'fail',
          detail: `${DOCTOR_SERVICE}/${id} registered but not seen by a second client within ${deadlineMs} ms`,
        },
      ];
    }
    const leaving = performance.now();
    await registration.deregister();
    const gone = await waitForEvent(events, (list) => !list.some((i) => i.id === id), deadlineMs);
    const propagation = appeared - start;
    return [
      gone === undefined
        ? {
            check: 'registration',
            verdict: 'fail',
            detail: `${DOCTOR_SERVICE}/${id} deregistered but still seen by a second client after ${deadlineMs} ms`,
          }
        : {
            check: 'registration',
            verdict: 'ok',
            detail: `${DOCTOR_SERVICE}/${id} registered in ${formatMs(registered - start)}, seen by a second client, gone from it ${formatMs(gone - leaving)} after deregistering`,
            ms: registered - start,
          },
      {
        check: 'watch propagation',
        verdict: 'ok',
        detail: `${formatMs(propagation)} from the register call to the second client's watch event`,
        ms: propagation,
      },
    ];
  } finally {
    watch.close();
  }
}

/** Reads the etcd TLS files of the configuration (the backend read them too; the doctor's HTTP probe needs them). */
function etcdTls(ctx: CliContext): ProbeTls | undefined {
  if (ctx.io.backend) return undefined;
  const files = ctx.config().etcd?.tls;
  if (!files) return undefined;
  const read = (path: string | undefined) => (path ? readFileSync(path) : undefined);
  return { ca: read(files.ca), cert: read(files.cert), key: read(files.key) };
}

/** The server's version and clock, by the backend's own HTTP endpoint. */
async function serverFacts(ctx: CliContext, backend: Backend, timeoutMs: number): Promise<ServerFacts> {
  const endpoint = backend.name === 'etcd' ? etcdEndpointsOf(backend)?.[0] : undefined;
  if (endpoint) {
    const facts = await etcdFacts(endpoint, timeoutMs, etcdTls(ctx));
    return facts.skewMs === undefined ? { ...facts, note: "etcd's API gives no server time" } : facts;
  }
  const address = backend.name === 'consul' ? consulAddressOf(backend) : undefined;
  if (address)
    return consulFacts(address, timeoutMs, ctx.io.backend ? undefined : ctx.config().consul?.token);
  return { note: `not available for the ${backend.name} backend` };
}

function factChecks(facts: ServerFacts | { error: string }): Check[] {
  if ('error' in facts)
    return [
      { check: 'clock skew', verdict: 'warn', detail: `not available: ${facts.error}` },
      { check: 'server version', verdict: 'warn', detail: `not available: ${facts.error}` },
    ];
  const skew = facts.skewMs;
  return [
    skew === undefined
      ? { check: 'clock skew', verdict: 'skip', detail: `not available (${facts.note ?? 'no server time'})` }
      : {
          check: 'clock skew',
          verdict: Math.abs(skew) > SKEW_WARN_MS ? 'warn' : 'ok',
          detail: `server clock ${skew >= 0 ? '+' : ''}${(skew / 1000).toFixed(1)} s from this machine's (±0.5 s: HTTP Date header)`,
          ms: skew,
        },
    facts.version === undefined
      ? {
          check: 'server version',
          verdict: 'skip',
          detail: `not available (${facts.note ?? 'not reported'})`,
        }
      : { check: 'server version', verdict: 'ok', detail: facts.version },
  ];
}

function credentialsOf(ctx: CliContext): string {
  if (ctx.io.backend) return 'credentials';
  const config = ctx.config();
  if (config.backend === 'etcd' && config.etcd?.auth)
    return `credentials of user '${config.etcd.auth.username}'`;
  if (config.backend === 'consul' && config.consul?.token) return 'the ACL token';
  return 'anonymous access (no credentials configured)';
}

/** Runs every check in order; a check that cannot run because an earlier one failed is `skip`. */
async function runChecks(ctx: CliContext): Promise<Check[]> {
  const backend = ctx.backend();
  const timeoutMs = callTimeoutOf(ctx);
  const checks: Check[] = [
    {
      check: 'configuration',
      verdict: 'ok',
      detail: `${backend.name}${ctx.target ? ` at ${ctx.target}` : ''}`,
    },
  ];
  const ping = discoveryHealth(backend.discovery, timeoutMs);
  const reached = await timed(async () => {
    if (ping) {
      const health = await ping;
      if (health.reachable) return;
    }
    // No ping, or a failed one: a registry read tells an unreachable server from refused credentials.
    await backend.discovery.listServices();
  });
  const refused = !reached.ok && reached.error instanceof PermissionDeniedError;
  checks.push(
    reached.ok || refused
      ? {
          check: 'reachable',
          verdict: 'ok',
          detail: `answered in ${formatMs(reached.ms)}${refused ? ' (and refused the credentials)' : ''}`,
          ms: reached.ms,
        }
      : { check: 'reachable', verdict: 'fail', detail: describeError(reached.error, ctx.target) },
  );
  const later = ['auth', 'registration', 'watch propagation', 'clock skew', 'server version'];
  if (!reached.ok && !refused) return [...checks, ...later.map((check) => skipped(check, 'not reachable'))];

  const auth = refused
    ? reached
    : await timed(async () => {
        await backend.discovery.listServices();
        await backend.kv.get(PROBE_KEY);
      });
  checks.push(
    auth.ok
      ? {
          check: 'auth',
          verdict: 'ok',
          detail: `${credentialsOf(ctx)} accepted for reads (registry list, kv get)`,
        }
      : {
          check: 'auth',
          verdict: 'fail',
          detail: `${auth.error instanceof PermissionDeniedError ? '' : 'reads failed: '}${describeError(auth.error, ctx.target)}`,
        },
  );

  if (!auth.ok) return [...checks, ...later.slice(1).map((check) => skipped(check, 'credentials refused'))];

  const deadlineMs = Math.max(15_000, timeoutMs * 3);
  const registration = await timed(() => registrationChecks(backend, ctx.connect(), deadlineMs));
  checks.push(
    ...(registration.ok
      ? registration.value
      : [
          {
            check: 'registration',
            verdict: 'fail',
            detail: describeError(registration.error, ctx.target),
          } as Check,
        ]),
  );
  if (!checks.some((c) => c.check === 'watch propagation'))
    checks.push(skipped('watch propagation', 'registration failed'));

  const facts = await serverFacts(ctx, backend, timeoutMs).catch((error: unknown) => ({
    error: describeError(error, ctx.target),
  }));
  checks.push(...factChecks(facts));
  return checks;
}

function skipped(check: string, why: string): Check {
  return { check, verdict: 'skip', detail: why };
}

/** `doctor`: checks a configuration end to end, one verdict per line. */
export function doctorCommand(program: Command, ctx: CliContext): void {
  program
    .command('doctor')
    .summary('check a configuration end to end, one verdict per line')
    .description(
      'check a configuration end to end: reachability, auth, a test registration seen by a second client, watch propagation, clock skew, server version',
    )
    .addHelpText(
      'after',
      `\nRegisters ${DOCTOR_SERVICE}/doctor-<host>-<pid>-<random> for a moment (ttl 10 s) and removes it.\nVerdicts: ok, warn, fail, skip. Exit 1 when any check fails.\n--json prints { ok, checks: [{ check, verdict, detail, ms? }] }.`,
    )
    .action(async () => {
      const checks = await runChecks(ctx);
      const failed = checks.filter((c) => c.verdict === 'fail');
      const rounded = checks.map((c) => (c.ms === undefined ? c : { ...c, ms: Math.round(c.ms * 10) / 10 }));
      ctx.print({ ok: failed.length === 0, checks: rounded }, () => [
        ...table([['VERDICT', 'CHECK', 'DETAIL'], ...checks.map((c) => [c.verdict, c.check, c.detail])]),
        failed.length === 0
          ? `doctor: ${checks.length} checks, none failed`
          : `doctor: ${failed.length} of ${checks.length} checks failed: ${failed.map((c) => c.check).join(', ')}`,
      ]);
      if (failed.length > 0) ctx.exitCode = 1;
    });
}
