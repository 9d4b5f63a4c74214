/**
 * The payload of a Kafka message (both Kafka backends hand out and take this shape).
 *
 * @module
 */

/**
 * Header values as Kafka carries them (bytes; strings are accepted when producing).
 *
 * @example Reading a header whatever form it came in
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import type { KafkaHeaders } from "@sluice/sluice/kafka";
 *
 * const header = (headers: KafkaHeaders | undefined, name: string): string | undefined => {
 *   const v = headers?.[name];
 *   const first = Array.isArray(v) ? v[0] : v;
 *   return typeof first === "string" || first === undefined
 *     ? first
 *     : new TextDecoder().decode(first);
 * };
 * const headers: KafkaHeaders = { source: new TextEncoder().encode("web"), tags: ["a", "b"] };
 * assertEquals([header(headers, "source"), header(headers, "tags")], ["web", "a"]);
 * ```
 */
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
 * @example A record to produce, and its value read back as text
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import type { KafkaPayload } from "@sluice/sluice/kafka";
 *
 * const record: KafkaPayload = {
 *   key: "user-1",
 *   value: JSON.stringify({ clicks: 3 }),
 *   headers: { source: "web" },
 * };
 * const text = (p: KafkaPayload) =>
 *   typeof p.value === "string" ? p.value : new TextDecoder().decode(p.value ?? new Uint8Array());
 * assertEquals(JSON.parse(text(record)), { clicks: 3 });
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
