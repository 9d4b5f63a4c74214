/**
 * The second Kafka backend of Sluice, on `npm:@platformatic/kafka` (pure TypeScript,
 * maintained): {@link PlatformaticConsumer} and {@link PlatformaticProducer}, with the same
 * options vocabulary as the kafkajs backend (`@sluice/sluice/kafka`, still the default)
 * and incremental rebalancing: cooperative-sticky assignment on the classic protocol, or
 * KIP-848's consumer protocol on Kafka 4.x. With a factory marked `incremental: true`, the
 * stream processor drains and commits only the revoked partitions while the pipeline keeps
 * processing the others.
 *
 * Needs `--allow-net` and `--allow-env`.
 *
 * @example Committing only revoked partitions on a rebalance
 * ```ts ignore
 * import { CommitOffsets, RunTask, StreamProcessor } from "@sluice/sluice";
 * import { PlatformaticConsumer } from "@sluice/sluice/platformatic";
 *
 * const processor = new StreamProcessor({
 *   consumer: new PlatformaticConsumer({ brokers: "127.0.0.1:9092", group: "example" }),
 *   topics: ["events"],
 *   factory: {
 *     incremental: true,
 *     createWithPartitions: (commit) =>
 *       new RunTask((m) => m.payload.value?.length ?? 0, new CommitOffsets(commit)),
 *   },
 * });
 * await processor.run();
 * ```
 *
 * @module
 */
export { PlatformaticConsumer, type PlatformaticConsumerStats } from "./consumer.ts";
export { PlatformaticProducer } from "./producer.ts";
export type { PlatformaticConsumerOptions, PlatformaticProducerOptions } from "./options.ts";
export type { KafkaHeaders, KafkaPayload } from "../kafka/payload.ts";
export {
  KafkaAuthenticationError,
  type KafkaSaslOAuthBearerOptions,
  type KafkaSaslOptions,
  type KafkaSaslPasswordOptions,
  KafkaTlsError,
  type KafkaTlsOptions,
} from "../kafka/security.ts";
