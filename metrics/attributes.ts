/**
 * The attributes that tell one series of Sluice's metrics from another (a leaf of
 * `metrics/`: the consumer meter and the OpenTelemetry instruments both use it).
 *
 * @module
 */

/**
 * Attributes of one series of Sluice's metrics, e.g.
 * `{ "messaging.system": "kafka", "messaging.consumer.group.name": "orders" }`; a
 * processor's `metricAttributes` add to them.
 *
 * @example Keep two processors apart
 * ```ts
 * import type { SeriesAttributes, StreamProcessorOptions } from "@sluice/sluice";
 * // Two processors of one group in one process, kept apart in the metrics:
 * const metricAttributes: SeriesAttributes = { worker: "a" };
 * const options: Partial<StreamProcessorOptions<string>> = { metricAttributes };
 * ```
 */
export type SeriesAttributes = Readonly<Record<string, string | number | boolean>>;
