import {
  type Attributes,
  type Meter,
  type Span,
  SpanKind,
  SpanStatusCode,
  type Tracer,
} from '@opentelemetry/api';
import { ClosedError, type LockMessage, LockTimeoutError } from '@rollcall/core';
import { ATTRIBUTES, LOCK_ACQUIRE_SPAN, METRICS } from './names.js';

/** Bucket boundaries (s) for lock waits: an uncontended lock in milliseconds, a queue for minutes. */
const WAIT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** What the tracing channel hands each handler: the wait's message, decorated by `tracePromise`. */
type WaitContext = LockMessage & { result?: unknown; error?: unknown };

/** The handlers of the `rollcall:lock:acquire` tracing channel. */
export interface LockWaitHandlers {
  start(message: unknown): void;
  end(message: unknown): void;
  asyncStart(message: unknown): void;
  asyncEnd(message: unknown): void;
  error(message: unknown): void;
}

/** How a wait ended, for `rollcall.lock.outcome`. */
function outcomeOf(error: unknown): string {
  if (error === undefined) return 'acquired';
  if (error instanceof LockTimeoutError) return 'timeout';
  if (error instanceof ClosedError) return 'closed';
  if (error instanceof Error && error.name === 'AbortError') return 'aborted';
  return 'error';
}

/**
 * Records each lock and leadership wait as a `rollcall.lock.acquire` span (a child of the context
 * active where `acquire` or `campaign` was called; error status when the wait failed) and in the
 * `rollcall.lock.acquire.duration` histogram. `stop()` ends the spans of waits still going on.
 */
export function recordLockWaits(tracer: Tracer, meter: Meter): { handlers: LockWaitHandlers; stop(): void } {
  const duration = meter.createHistogram(METRICS.lockAcquireDuration, {
    description: 'How long lock and leadership waits took, per outcome',
    unit: 's',
    advice: { explicitBucketBoundaries: WAIT_BUCKETS },
  });
  const waits = new Map<WaitContext, { span: Span; startedAt: number }>();

  const finish = (wait: WaitContext) => {
    const started = waits.get(wait);
    if (!started) return;
    waits.delete(wait);
    const seconds = (performance.now() - started.startedAt) / 1000;
    const attributes: Attributes = {
      [ATTRIBUTES.backend]: wait.backend,
      [ATTRIBUTES.lockKind]: wait.kind,
      [ATTRIBUTES.lockName]: wait.name,
      [ATTRIBUTES.lockOutcome]: outcomeOf(wait.error),
    };
    const { span } = started;
    if (wait.error === undefined) {
      const token = (wait.result as { fencingToken?: unknown } | undefined)?.fencingToken;
      if (typeof token === 'bigint') span.setAttribute(ATTRIBUTES.lockFencingToken, token.toString());
    } else {
      const error = wait.error instanceof Error ? wait.error : new Error(String(wait.error));
      attributes[ATTRIBUTES.errorType] = error.name;
      span.recordException(error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    }
    duration.record(seconds, attributes);
    span.setAttributes(attributes);
    span.end();
  };

  const handlers: LockWaitHandlers = {
    start(message) {
      const wait = message as WaitContext;
      const span = tracer.startSpan(LOCK_ACQUIRE_SPAN, {
        kind: SpanKind.INTERNAL,
        attributes: {
          [ATTRIBUTES.backend]: wait.backend,
          [ATTRIBUTES.lockKind]: wait.kind,
          [ATTRIBUTES.lockName]: wait.name,
          ...(wait.ttlSeconds !== undefined ? { [ATTRIBUTES.lockTtl]: wait.ttlSeconds } : {}),
        },
      });
      waits.set(wait, { span, startedAt: performance.now() });
    },
    // `end` follows the synchronous part: the wait is over only if that part threw.
    end(message) {
      if ((message as WaitContext).error !== undefined) finish(message as WaitContext);
    },
    asyncEnd(message) {
      finish(message as WaitContext);
    },
    // The error is on the message by `end` or `asyncEnd`; nothing to do before.
    asyncStart() {},
    error() {},
  };
  return {
    handlers,
    stop() {
      for (const { span } of waits.values()) span.end();
      waits.clear();
    },
  };
}
