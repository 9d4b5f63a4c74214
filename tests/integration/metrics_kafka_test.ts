/**
 * Metrics on the Kafka backend: consumer lag per partition (end offset from fetched
 * batches minus committed offset) while the pipeline holds everything, then zero once it
 * has committed; the held step is reported as the origin of the backpressure.
 */
import { MeterProvider, MetricReader } from "@opentelemetry/sdk-metrics";
import type { DataPoint } from "@opentelemetry/sdk-metrics";
import { assert, assertEquals } from "@std/assert";
import { MessageRejected } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import type { Message } from "../../types.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";
import {
  createTopic,
  deleteTopics,
  endOffsets,
  eventually,
  FAST,
  kafkaTest,
  produceNumbers,
  testKafka,
  unique,
} from "./kafka_helpers.ts";

class InMemoryReader extends MetricReader {
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

async function points(reader: MetricReader, name: string): Promise<DataPoint<number>[]> {
  const { resourceMetrics } = await reader.collect();
  for (const s of resourceMetrics.scopeMetrics) {
    for (const m of s.metrics) {
      if (m.descriptor.name === name) return m.dataPoints as DataPoint<number>[];
    }
  }
  return [];
}

async function lagByPartition(reader: MetricReader): Promise<Map<number, number>> {
  return new Map(
    (await points(reader, "sluice.consumer.lag")).map((p) => [
      Number(p.attributes["messaging.destination.partition.id"]),
      p.value,
    ]),
  );
}

kafkaTest("kafka: lag per partition while held, zero once committed", async (brokers) => {
  const kafka = testKafka(brokers);
  const topic = unique("sluice-metrics");
  const group = unique("g");
  const N = 2000;
  await createTopic(kafka, topic, 2);
  try {
    await produceNumbers(kafka, topic, N);
    const ends = await endOffsets(kafka, topic);
    const reader = new InMemoryReader();
    let open = false;
    let processed = 0;
    const processor = new StreamProcessor<KafkaPayload>({
      consumer: new KafkaConsumer({ brokers, group, ...FAST }),
      topics: [topic],
      commitPolicy: new CommitPolicy({ intervalMs: 100 }),
      meterProvider: new MeterProvider({ readers: [reader] }),
      handleSignals: false,
      factory: {
        createWithPartitions: (commit) =>
          new RunTask(
            (_m: Message<KafkaPayload>) => {
              if (!open) throw new MessageRejected(); // hold everything: nothing commits
              processed++;
              return null;
            },
            new CommitOffsets(commit, { name: "commit" }),
            { name: "hold" },
          ),
      },
    });
    const running = processor.run();
    try {
      // Nothing is committed: once each partition's end offset is known from a fetch,
      // its lag is the whole partition.
      await eventually(
        async () => {
          const lag = await lagByPartition(reader);
          return [...ends].every(([p, end]) => lag.get(p) === end);
        },
        "lag equal to each partition's end offset while the pipeline holds",
        30_000,
        100,
      );
      const sendTime = await points(reader, "sluice.step.send_backpressure.time");
      assert(
        sendTime.some((p) => p.attributes.step === "hold" && p.attributes.origin === "hold"),
        "the holding step is the origin of its own backpressure",
      );
      open = true;
      await eventually(
        async () => {
          const lag = await lagByPartition(reader);
          return lag.size === 2 && [...lag.values()].every((l) => l === 0);
        },
        "lag back to zero after everything was committed",
        30_000,
        100,
      );
      assertEquals(processed, N);
    } finally {
      processor.signalShutdown();
      await running;
    }
  } finally {
    await deleteTopics(kafka, [topic]);
  }
});
