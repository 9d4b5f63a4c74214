/**
 * The payload of a Kafka message (both Kafka backends hand out and take this shape).
 *
 * @module
 */

/** Header values as Kafka carries them (bytes; strings are accepted when producing). */
export type KafkaHeaders = Record<
  string,
  Uint8Array | string | (Uint8Array | string)[] | undefined
>;

/**
 * A Kafka record: key, value, headers and timestamp (epoch milliseconds).
 *
 * Consumed records carry bytes (`Uint8Array`, in fact Node `Buffer`s); when producing,
 * strings are accepted too and `timestamp` may be left out (the broker's clock is used).
 *
 * @example
 * ```ts
 * import type { KafkaPayload } from "@sluice/sluice/kafka";
 * const record: KafkaPayload = {
 *   key: "user-1",
 *   value: JSON.stringify({ clicks: 3 }),
 *   headers: { source: "web" },
 * };
 * const text = (p: KafkaPayload) =>
 *   typeof p.value === "string" ? p.value : new TextDecoder().decode(p.value ?? new Uint8Array());
 * console.log(text(record));
 * ```
 */
export interface KafkaPayload {
  /** The record key (null when absent). */
  readonly key: Uint8Array | string | null;
  /** The record value (null for a tombstone). */
  readonly value: Uint8Array | string | null;
  /** Record headers. */
  readonly headers?: KafkaHeaders;
  /** Record timestamp, epoch milliseconds. Always set on consumed records. */
  readonly timestamp?: number;
}
