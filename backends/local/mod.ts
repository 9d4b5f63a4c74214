/**
 * The in-memory backend: {@link LocalBroker}, its consumers and producers.
 *
 * @example
 * ```ts
 * import { LocalBroker } from "@sluice/sluice/local";
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 4);
 * ```
 *
 * @module
 */
export { LocalBroker, type LocalBrokerOptions, LocalProducer } from "./broker.ts";
export { LocalConsumer, type LocalConsumerOptions } from "./consumer.ts";
