/**
 * A histogram that records later: samples are kept as plain numbers and handed to the
 * OpenTelemetry histogram when the metrics are collected (or when the buffer is full), so
 * no `record()` call sits on a hot path.
 *
 * @module
 */
import type { Attributes, Histogram } from "@opentelemetry/api";

/** Most samples kept before they are recorded in place. */
export const MAX_BUFFERED_SAMPLES = 1024;

/**
 * Buffered samples of one histogram with one pre-bound attribute set.
 *
 * @example Buffer one value
 * ```ts
 * import { HistogramBuffer } from "./buffer.ts";
 * const buffer = new HistogramBuffer(undefined, { step: "sink" });
 * buffer.push(12); // kept until flush(); without a histogram, flush() drops it
 * buffer.flush();
 * ```
 */
export class HistogramBuffer {
  /** Samples not yet recorded. */
  #values: number[] = [];

  /**
   * Where samples go on {@link HistogramBuffer.flush}.
   * @internal An OpenTelemetry type, for Sluice's metrics binding only.
   */
  readonly histogram: Histogram | undefined;
  /**
   * The attributes every sample is recorded with (created once).
   * @internal An OpenTelemetry type, for Sluice's metrics binding only.
   */
  readonly attributes: Attributes;
  /** Factor applied to every sample when it is recorded. Default 1. */
  readonly scale: number;

  /**
   * `histogram` may be undefined: then samples are counted nowhere and dropped on flush.
   * Samples are multiplied by `scale` when recorded (0.001: kept in ms, recorded in s).
   */
  constructor(histogram: Histogram | undefined, attributes: Attributes, scale: number = 1) {
    this.histogram = histogram;
    this.attributes = attributes;
    this.scale = scale;
  }

  /** Samples waiting to be recorded. */
  get size(): number {
    return this.#values.length;
  }

  /** Keeps `value`; records everything at once if the buffer is full. */
  push(value: number): void {
    this.#values.push(value);
    if (this.#values.length >= MAX_BUFFERED_SAMPLES) this.flush();
  }

  /** Records every kept sample with the pre-bound attributes. */
  flush(): void {
    const values = this.#values;
    if (values.length === 0) return;
    this.#values = [];
    const h = this.histogram;
    if (h === undefined) return;
    const k = this.scale;
    for (let i = 0; i < values.length; i++) h.record(values[i] * k, this.attributes);
  }
}
