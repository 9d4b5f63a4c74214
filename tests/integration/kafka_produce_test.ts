/**
 * Kafka backend against a real broker: the `Produce` strategy copies a topic into a
 * second one through KafkaProducer (verified by reading it back), and KafkaProducer
 * reports the real partition and offset of each record.
 */
import { assert, assertEquals, assertRejects } from "@std/assert";
import { macrotask } from "../../clock.ts";
import { UnknownTopicError } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { Produce } from "../../strategies/produce.ts";
import { type BrokerValue, Partition, Topic } from "../../types.ts";
import { KafkaConsumer, type KafkaPayload, KafkaProducer } from "../../backends/kafka/mod.ts";
import {
  committedOffsets,
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

kafkaTest(
  "kafka: Produce copies every message to a second topic before its source offset is committed",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const source = unique("sluice-src");
    const dest = unique("sluice-dst");
    const group = unique("g");
    const N = 5000;
    await createTopic(kafka, source, 3);
    await createTopic(kafka, dest, 2);
    const producer = new KafkaProducer({ brokers, logLevel: "nothing" });
    try {
      await produceNumbers(kafka, source, N);
      const sourceEnds = await endOffsets(kafka, source);
      const consumer = new KafkaConsumer({ brokers, group, ...FAST });
      const processor = new StreamProcessor<KafkaPayload>({
        consumer,
        topics: [source],
        commitPolicy: new CommitPolicy({ intervalMs: 200 }),
        handleSignals: false,
        factory: {
          createWithPartitions: (commit) =>
            new Produce(producer, dest, new CommitOffsets(commit), { maxInFlight: 2000 }),
        },
      });
      const running = processor.run();
      try {
        await eventually(
          async () => {
            const c = await committedOffsets(kafka, group, source);
            return [...sourceEnds].every(([p, end]) => c.get(p) === end);
          },
          "source offsets committed to the end",
          60_000,
          200,
        );
      } finally {
        processor.signalShutdown();
        await running;
      }
      // Read the destination back with a plain kafkajs consumer.
      const destEnds = await endOffsets(kafka, dest);
      assertEquals([...destEnds.values()].reduce((a, b) => a + b, 0), N, "one copy per message");
      const values = new Set<number>();
      const keysMatch: boolean[] = [];
      const reader = kafka.consumer({ groupId: unique("reader"), maxWaitTimeInMs: 100 });
      await reader.connect();
      try {
        await reader.subscribe({ topic: dest, fromBeginning: true });
        await reader.run({
          eachMessage: ({ message }) => {
            const v = Number(message.value!.toString());
            values.add(v);
            keysMatch.push(message.key?.toString() === `k${v}`);
            return Promise.resolve();
          },
        });
        await eventually(() => values.size === N, `all ${N} copies read back`, 30_000);
      } finally {
        await reader.disconnect();
      }
      assert(keysMatch.every(Boolean), "keys were copied with their values");
    } finally {
      await producer.close();
      await deleteTopics(kafka, [source, dest]);
    }
  },
);

kafkaTest(
  "kafka: KafkaProducer resolves with the real partition and offset; unknown topics fail clearly",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-produce");
    await createTopic(kafka, topic, 2);
    const producer = new KafkaProducer({ brokers, logLevel: "nothing" });
    try {
      const p1 = Partition.of(topic, 1);
      // Produced in one turn: sent as one request, offsets consecutive in order.
      const delivered = await Promise.all(
        Array.from({ length: 10 }, (_, i) => producer.produce(p1, { key: null, value: `v${i}` })),
      );
      assertEquals(delivered.map((d) => d.offset), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      assert(delivered.every((d) => d.partition === p1));
      const keyed = await producer.produce(Topic.of(topic), {
        key: "same",
        value: "a",
        headers: { h: "1" },
      });
      const again = await producer.produce(Topic.of(topic), { key: "same", value: "b" });
      assertEquals(keyed.partition, again.partition, "one key, one partition");
      assertEquals(again.offset, keyed.offset + 1);
      const ends = await endOffsets(kafka, topic);
      assertEquals(ends.get(1)! + ends.get(0)!, 12);
      await assertRejects(
        () => producer.produce(Topic.of(unique("sluice-missing")), { key: null, value: "x" }),
        UnknownTopicError,
      );
    } finally {
      await producer.close();
      await deleteTopics(kafka, [topic]);
    }
  },
);

kafkaTest(
  "kafka: an idempotent KafkaProducer delivers records produced while a request is in flight exactly once, in order",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-idem");
    await createTopic(kafka, topic, 3);
    // Small requests, and records produced over many turns: requests would overlap if the
    // producer did not send them one at a time, and kafkajs's sequence numbers would clash.
    const producer = new KafkaProducer({
      brokers,
      logLevel: "nothing",
      idempotent: true,
      maxBatchMessages: 50,
    });
    const N = 3000;
    try {
      const deliveries: Promise<BrokerValue<KafkaPayload>>[] = [];
      for (let i = 0; i < N; i++) {
        deliveries.push(producer.produce(Topic.of(topic), { key: `k${i % 97}`, value: String(i) }));
        if (i % 40 === 39) await macrotask();
      }
      const delivered = await Promise.all(deliveries);
      const byPartition = new Map<number, number[]>();
      for (const d of delivered) {
        const l = byPartition.get(d.partition.index) ?? [];
        l.push(d.offset);
        byPartition.set(d.partition.index, l);
      }
      const ends = await endOffsets(kafka, topic);
      for (const [p, offsets] of byPartition) {
        // In produce order: 0, 1, 2, ... with no gap and no record written twice.
        assertEquals(offsets, offsets.map((_, i) => i), `partition ${p} offsets in produce order`);
        assertEquals(ends.get(p), offsets.length, `partition ${p} holds each record once`);
      }
      assertEquals([...ends.values()].reduce((a, b) => a + b, 0), N);
    } finally {
      await producer.close();
      await deleteTopics(kafka, [topic]);
    }
  },
);
