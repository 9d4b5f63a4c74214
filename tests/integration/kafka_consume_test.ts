/**
 * Kafka backend against a real broker: consume everything through a StreamProcessor and
 * commit exactly the end offsets; clear errors for a missing topic and an unreachable broker.
 */
import { assert, assertEquals, assertRejects } from "@std/assert";
import { ConsumerError, UnknownTopicError } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { type Message, Partition } from "../../types.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";
import {
  committedOffsets,
  committedToEnd,
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

const decoder = new TextDecoder();
const valueOf = (m: Message<KafkaPayload>): number =>
  Number(decoder.decode(m.payload.value as Uint8Array));

kafkaTest(
  "kafka: all messages over several partitions are processed and committed to the end offsets",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-consume");
    const group = unique("g");
    const N = 20_000;
    await createTopic(kafka, topic, 4);
    try {
      await produceNumbers(kafka, topic, N);
      const seen = new Uint8Array(N);
      let processed = 0;
      const consumer = new KafkaConsumer({ brokers, group, ...FAST });
      const processor = new StreamProcessor<KafkaPayload>({
        consumer,
        topics: [topic],
        commitPolicy: new CommitPolicy({ intervalMs: 200 }),
        handleSignals: false,
        factory: {
          createWithPartitions: (commit) =>
            new RunTask((m: Message<KafkaPayload>) => {
              const v = valueOf(m);
              if (seen[v] === 0) processed++;
              seen[v]++;
              return v;
            }, new CommitOffsets(commit)),
        },
      });
      const running = processor.run();
      const ends = await endOffsets(kafka, topic);
      assertEquals([...ends.values()].reduce((a, b) => a + b, 0), N);
      try {
        await eventually(() => processed === N, `all ${N} messages processed`, 60_000);
        await committedToEnd(kafka, group, topic, ends, 10_000, 200);
      } finally {
        processor.signalShutdown();
        await running;
      }
      assertEquals(processed, N);
      assert(seen.every((n) => n === 1), "no message was processed twice in a single-consumer run");
      const c = await committedOffsets(kafka, group, topic);
      assertEquals(c, ends);
      assert(consumer.closed);
      assertEquals(consumer.stats.rebalances, 0);
      for (const [p, end] of ends) {
        assertEquals(
          consumer.endOffset(Partition.of(topic, p)),
          end,
          "endOffset (lag metric source)",
        );
      }
    } finally {
      await deleteTopics(kafka, [topic]);
    }
  },
);

kafkaTest(
  "kafka: a topic that does not exist fails poll() with UnknownTopicError",
  async (brokers) => {
    const consumer = new KafkaConsumer({ brokers, group: unique("g"), ...FAST });
    consumer.subscribe([unique("sluice-no-such-topic")]);
    const e = await assertRejects(() => consumer.poll(100), UnknownTopicError);
    assert(e.message.includes("does not exist"), e.message);
    await consumer.close();
  },
);

// Needs no broker: it runs everywhere.
Deno.test(
  "kafka: an unreachable broker fails poll() with a clear ConsumerError after connectTimeoutMs",
  async () => {
    const consumer = new KafkaConsumer({
      brokers: "127.0.0.1:1", // nothing listens on port 1
      group: unique("g"),
      connectTimeoutMs: 1500,
      retry: { retries: 0, initialRetryTimeMs: 100 },
      logLevel: "nothing",
    });
    consumer.subscribe(["anything"]);
    const started = performance.now();
    const e = await assertRejects(() => consumer.poll(100), ConsumerError);
    assert(performance.now() - started < 10_000, "the failure came after a bounded wait");
    assert(e.message.includes("127.0.0.1:1"), e.message);
    await consumer.close();
  },
);

Deno.test({
  name:
    "kafka: brokers that keep refusing fail poll() after connectTimeoutMs, not after kafkajs's retries",
  fn: async () => {
    const consumer = new KafkaConsumer({
      brokers: "127.0.0.1:1",
      group: unique("g"),
      connectTimeoutMs: 1500,
      retry: { retries: 50, initialRetryTimeMs: 300 }, // ~minutes of retries on its own
      logLevel: "nothing",
    });
    consumer.subscribe(["anything"]);
    const started = performance.now();
    const e = await assertRejects(() => consumer.poll(100), ConsumerError);
    const waited = performance.now() - started;
    assert(waited >= 1400 && waited < 5000, `gave up after ${Math.round(waited)} ms`);
    assert(e.message.includes("within 1500 ms"), e.message);
    await consumer.close();
  },
});
