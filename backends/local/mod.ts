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
export {
  LocalBroker,
  type LocalBrokerOptions,
  LocalConsumer,
  type LocalConsumerOptions,
  LocalProducer,
} from "./broker.ts";
