/**
 * Shared by the Kafka benchmarks (bench/kafka.ts, bench/kafka_backpressure.ts): creating and
 * filling a topic of `messages` × `bytes` spread over its partitions, deleting it, and the
 * median used in their tables.
 *
 * @module
 */
import type { Kafka } from "kafkajs";

/** Creates `topic` with `partitions` partitions and produces `messages` values of `bytes` bytes. */
export async function fillTopic(
  kafka: Kafka,
  topic: string,
  partitions: number,
  messages: number,
  bytes: number,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [{ topic, numPartitions: partitions }],
    waitForLeaders: true,
  });
  await admin.disconnect();
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const value = "x".repeat(bytes);
  const started = performance.now();
  const batch = 5000;
  const inFlight: Promise<unknown>[] = [];
  for (let i = 0; i < messages; i += batch) {
    const n = Math.min(batch, messages - i);
    const msgs = Array.from({ length: n }, (_, j) => ({ value, partition: (i + j) % partitions }));
    inFlight.push(producer.send({ topic, messages: msgs, acks: 1 }));
    if (inFlight.length >= 8) await inFlight.shift();
  }
  await Promise.all(inFlight);
  await producer.disconnect();
  const s = (performance.now() - started) / 1000;
  console.error(
    `produced ${messages} x ${bytes} B to ${topic} (${partitions} partitions) in ${s.toFixed(1)} s`,
  );
}

/** Deletes `topic`, ignoring failures (a benchmark's clean-up). */
export async function deleteTopic(kafka: Kafka, topic: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic], timeout: 10_000 }).catch(() => {});
  await admin.disconnect();
}

/** Median of `v` (sorted in place); NaN when empty. */
export function medianOf(v: number[]): number {
  if (v.length === 0) return NaN;
  v.sort((a, b) => a - b);
  return v.length % 2 === 1 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}
