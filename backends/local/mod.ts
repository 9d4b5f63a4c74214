/**
 * The in-memory backend: {@link LocalBroker}, its consumers and producers.
 *
 * @example A broker with one topic of four partitions
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 4);
 * assertEquals(broker.partitions("events").length, 4);
 * ```
 *
 * @module
 */
export { LocalBroker, type LocalBrokerOptions, LocalProducer } from "./broker.ts";
export { LocalConsumer, type LocalConsumerOptions } from "./consumer.ts";
