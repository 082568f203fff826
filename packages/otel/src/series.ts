import type { Attributes } from '@opentelemetry/api';

/**
 * Values per attribute set, kept here and handed to the SDK only when it collects: recording is
 * three map lookups on strings the messages already hold, so a channel message costs a fraction
 * of a microsecond (a synchronous SDK instrument hashes its attributes on every call). Used for
 * the gauges and for the counters (observable counters report these running totals).
 *
 * Values never go below zero: a release of a lock held before the instrumentation was installed
 * is unknown to it and must not make a negative count.
 */
export class Series {
  /** Points by their first, second and third attribute value: no key string is built per call. */
  private readonly index = new Map<string, Map<string, Map<string, Point>>>();
  private readonly points: Point[] = [];

  /** @param names The attribute names (one to three); every call passes their values in this order. */
  constructor(private readonly names: readonly string[]) {}

  /** Adds `delta` to the series of these attribute values (a series seen once keeps being reported, at 0 if so). */
  add(delta: number, a: string, b = '', c = ''): void {
    const point = this.point(a, b, c);
    point.value = Math.max(0, point.value + delta);
  }

  set(value: number, a: string, b = '', c = ''): void {
    this.point(a, b, c).value = value;
  }

  /** Every series: its attributes and current value. */
  values(): readonly Point[] {
    return this.points;
  }

  private point(a: string, b: string, c: string): Point {
    let byA = this.index.get(a);
    if (!byA) {
      byA = new Map();
      this.index.set(a, byA);
    }
    let byB = byA.get(b);
    if (!byB) {
      byB = new Map();
      byA.set(b, byB);
    }
    let point = byB.get(c);
    if (!point) {
      const values = [a, b, c];
      const attributes: Attributes = {};
      this.names.forEach((name, i) => {
        attributes[name] = values[i];
      });
      point = { attributes, value: 0 };
      byB.set(c, point);
      this.points.push(point);
    }
    return point;
  }
}

interface Point {
  readonly attributes: Attributes;
  value: number;
}
