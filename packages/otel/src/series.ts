import type { Attributes } from '@opentelemetry/api';

/**
 * The current value of a gauge per attribute set, kept between collections. Counts folded from
 * transitions never go below zero: a release of a lock held before the instrumentation was
 * installed is not known to it, and must not make a negative count.
 */
export class Series {
  private readonly points = new Map<string, { attributes: Attributes; value: number }>();

  /** Adds `delta` to the value of `attributes` (a series seen once keeps being reported, at 0). */
  add(attributes: Attributes, delta: number): void {
    const point = this.point(attributes);
    point.value = Math.max(0, point.value + delta);
  }

  set(attributes: Attributes, value: number): void {
    this.point(attributes).value = value;
  }

  /** Every series: its attributes and current value. */
  values(): IterableIterator<{ readonly attributes: Attributes; readonly value: number }> {
    return this.points.values();
  }

  private point(attributes: Attributes) {
    // Callers build each series' attributes in one fixed order, so the values alone identify it.
    const key = Object.values(attributes).join('\u0000');
    let point = this.points.get(key);
    if (!point) {
      point = { attributes, value: 0 };
      this.points.set(key, point);
    }
    return point;
  }
}
