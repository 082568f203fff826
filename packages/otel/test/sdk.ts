import type { Attributes } from '@opentelemetry/api';
import {
  DataPointType,
  type Histogram,
  MeterProvider,
  MetricReader,
  type ResourceMetrics,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { instrumentRollcall, type RollcallInstrumentation } from '../src/index.js';

/** A reader that collects only when asked (what an exporter's periodic reader does on a timer). */
class ManualReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

/** One collection, searchable by instrument name and attributes. */
export class Collected {
  constructor(private readonly result: ResourceMetrics) {}

  /** Data points of `name` whose attributes include every one of `attributes`. */
  points(name: string, attributes: Attributes = {}) {
    const metric = this.result.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
    if (!metric) return [];
    return (metric.dataPoints as { attributes: Attributes; value: unknown }[]).filter((p) =>
      Object.entries(attributes).every(([k, v]) => p.attributes[k] === v),
    );
  }

  /** The value of the one counter or gauge point of `name` matching `attributes` (undefined: none). */
  value(name: string, attributes: Attributes = {}): number | undefined {
    const points = this.points(name, attributes);
    if (points.length > 1)
      throw new Error(`${points.length} points of ${name} match ${JSON.stringify(attributes)}`);
    return points[0]?.value as number | undefined;
  }

  /** The one histogram point of `name` matching `attributes`. */
  histogram(name: string, attributes: Attributes = {}): Histogram | undefined {
    const metric = this.result.scopeMetrics.flatMap((s) => s.metrics).find((m) => m.descriptor.name === name);
    if (metric && metric.dataPointType !== DataPointType.HISTOGRAM)
      throw new Error(`${name} is not a histogram`);
    const points = this.points(name, attributes);
    if (points.length > 1)
      throw new Error(`${points.length} points of ${name} match ${JSON.stringify(attributes)}`);
    return points[0]?.value as Histogram | undefined;
  }

  /** Every instrument name collected. */
  names(): string[] {
    return this.result.scopeMetrics.flatMap((s) => s.metrics.map((m) => m.descriptor.name));
  }
}

/** The real OpenTelemetry SDK (a manual metric reader, an in-memory span exporter) with Rollcall instrumented into it. */
export interface Sdk {
  instrumentation: RollcallInstrumentation;
  tracerProvider: BasicTracerProvider;
  collect(): Promise<Collected>;
  spans(): ReadableSpan[];
  shutdown(): Promise<void>;
}

export function instrumentedSdk(): Sdk {
  const reader = new ManualReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const instrumentation = instrumentRollcall({ meterProvider, tracerProvider });
  return {
    instrumentation,
    tracerProvider,
    async collect() {
      const { resourceMetrics, errors } = await reader.collect();
      if (errors.length > 0) throw new AggregateError(errors, 'metric collection failed');
      return new Collected(resourceMetrics);
    },
    spans: () => exporter.getFinishedSpans(),
    async shutdown() {
      instrumentation.uninstall();
      await meterProvider.shutdown();
      await tracerProvider.shutdown();
    },
  };
}
