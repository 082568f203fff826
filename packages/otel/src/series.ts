import type { Attributes } from '@opentelemetry/api';

/**
 * Values per attribute set, kept here and handed to the SDK only when it collects: recording is
 * a string join and a map lookup, so a channel message costs well under a microsecond (a
 * synchronous SDK instrument hashes its attributes on every call). Used for the gauges and for
 * counters that can see bursts (observable counters report these running totals).
 *
 * Values never go below zero: a release of a lock held before the instrumentation was installed
 * is unknown to it and must not make a negative count.
 */
export class Series {
  private readonly points = new Map<string, { attributes: Attributes; value: number }>();

  /** @param names The attribute names; every call passes their values in this order. */
  constructor(private readonly names: readonly string[]) {}

  /** Adds `delta` to the series of `values` (a series seen once keeps being reported, at 0 if so). */
  add(delta: number, ...values: string[]): void {
    const point = this.point(values);
    point.value = Math.max(0, point.value + delta);
  }

  set(value: number, ...values: string[]): void {
    this.point(values).value = value;
  }

  /** Every series: its attributes and current value. */
  values(): IterableIterator<{ readonly attributes: Attributes; readonly value: number }> {
    return this.points.values();
  }

  private point(values: string[]) {
    const key = values.join('\u0000');
    let point = this.points.get(key);
    if (!point) {
      const attributes: Attributes = {};
      this.names.forEach((name, i) => {
        attributes[name] = values[i];
      });
      point = { attributes, value: 0 };
      this.points.set(key, point);
    }
    return point;
  }
}
