/**
 * The Kafka backend of Sluice, on `npm:kafkajs`: {@link KafkaConsumer} (a consumer-group
 * member that never auto-commits, keeps its membership alive under backpressure and
 * commits finished work before giving partitions back) and {@link KafkaProducer}.
 *
 * Needs `--allow-net` and `--allow-env` (kafkajs reads a few environment variables when
 * it is imported).
 *
 * @example A stream processor on Kafka (needs a broker)
 * ```ts ignore
 * import { CommitOffsets, RunTask, StreamProcessor } from "@sluice/sluice";
 * import { KafkaConsumer, type KafkaPayload } from "@sluice/sluice/kafka";
 *
 * const processor = new StreamProcessor<KafkaPayload>({
 *   consumer: new KafkaConsumer({ brokers: "127.0.0.1:9092", group: "example" }),
 *   topics: ["events"],
 *   factory: {
 *     createWithPartitions: (commit) =>
 *       new RunTask((m) => m.payload.value?.length ?? 0, new CommitOffsets(commit)),
 *   },
 * });
 * await processor.run();
 * ```
 *
 * @module
 */
export {
  type KafkaClientOptions,
  type KafkaConsumerOptions,
  type KafkajsOptions,
  type KafkaLogLevel,
  type KafkaProducerOptions,
} from "./config.ts";
export {
  KafkaAuthenticationError,
  type KafkaSaslOAuthBearerOptions,
  type KafkaSaslOptions,
  type KafkaSaslPasswordOptions,
  KafkaTlsError,
  type KafkaTlsOptions,
} from "./security.ts";
export {
  KafkaAdmin,
  type KafkaGroupOffsets,
  type KafkaPartitionLag,
  type KafkaTopicSpec,
} from "./admin.ts";
export { KafkaConsumer, type KafkaConsumerStats } from "./consumer.ts";
export { KafkaProducer, ProduceError } from "./producer.ts";
export type { KafkaHeaders, KafkaPayload } from "./payload.ts";
