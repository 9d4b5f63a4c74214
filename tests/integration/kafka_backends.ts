/**
 * The two Kafka backends, for integration tests that run one body against each (not a test
 * file itself): kafkajs (`@sluice/sluice/kafka`) and @platformatic/kafka
 * (`@sluice/sluice/platformatic`). They take the same options and fail alike.
 */
import type { Consumer, Producer } from "../../backends/abstract.ts";
import type { Partition } from "../../types.ts";
import {
  KafkaConsumer,
  type KafkaConsumerOptions,
  type KafkaPayload,
  KafkaProducer,
  type KafkaProducerOptions,
} from "../../backends/kafka/mod.ts";
import { PlatformaticConsumer, PlatformaticProducer } from "../../backends/platformatic/mod.ts";

/** Consumer options both backends take. */
export type CommonConsumerOptions = Omit<
  KafkaConsumerOptions,
  "kafkajs" | "partitionsConsumedConcurrently"
>;
/** Producer options both backends take. */
export type CommonProducerOptions = Omit<KafkaProducerOptions, "kafkajs">;

/** What the shared tests read of a backend's consumer besides the contract. */
export interface TestConsumer extends Consumer<KafkaPayload> {
  endOffset(partition: Partition): number | undefined;
  readonly stats: { commitsFailed: number };
}

/** One Kafka backend under test. */
export interface KafkaBackend {
  /** The prefix of its test names. */
  readonly name: "kafka" | "platformatic";
  /** A consumer-group member of this backend. */
  consumer(options: CommonConsumerOptions): TestConsumer;
  /** A producer of this backend. */
  producer(options: CommonProducerOptions): Producer<KafkaPayload>;
  /**
   * How soon a SASL or TLS failure must surface (ms): kafkajs fails at the first refused
   * handshake; @platformatic/kafka needs a little longer to give up its nested retries.
   */
  readonly failFastMs: number;
  /** The resource sanitizers its tests can keep on. */
  readonly sanitize: { sanitizeOps?: boolean; sanitizeResources?: boolean };
}

/** Both backends: each shared test runs once for each. */
export const BACKENDS: readonly KafkaBackend[] = [
  {
    name: "kafka",
    consumer: (o) => new KafkaConsumer(o),
    producer: (o) => new KafkaProducer(o),
    failFastMs: 10_000,
    sanitize: {},
  },
  {
    name: "platformatic",
    consumer: (o) => new PlatformaticConsumer(o),
    producer: (o) => new PlatformaticProducer(o),
    failFastMs: 15_000,
    sanitize: { sanitizeOps: false, sanitizeResources: false },
  },
];
