/**
 * KafkaConsumer used directly (the backend contract) against a real broker: per-partition
 * pause and resume with batches only partly taken, seek, tell and manual commits.
 */
import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { ConsumerError } from "../../errors.ts";
import { type BrokerValue, Partition } from "../../types.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";
import { fetchDecoderStats } from "../../backends/kafka/_fetch_decoder.ts";
import {
  committedOffsets,
  createTopic,
  deleteTopics,
  FAST,
  kafkaTest,
  testKafka,
  testProducer,
  unique,
} from "./kafka_helpers.ts";

kafkaTest(
  "kafka consumer: pause/resume per partition with half-taken batches skips and repeats nothing; seek and commit",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-contract");
    const group = unique("g");
    const PER = 400;
    await createTopic(kafka, topic, 2);
    const producer = testProducer(kafka);
    await producer.connect();
    for (const partition of [0, 1]) {
      const messages = Array.from(
        { length: PER },
        (_, i) => ({ value: `${partition}:${i}`, partition }),
      );
      await producer.send({ topic, messages, acks: -1 });
    }
    await producer.disconnect();
    const p0 = Partition.of(topic, 0);
    const p1 = Partition.of(topic, 1);
    // Small polls: every fetched batch is handed out in several pieces.
    const consumer = new KafkaConsumer({ brokers, group, ...FAST, maxPollMessages: 7 });
    const assigned: string[] = [];
    const revoked: string[] = [];
    consumer.subscribe([topic], {
      onAssign: (ps) => {
        for (const [p, o] of ps) assigned.push(`${p}@${o}`);
      },
      onRevoke: (ps) => {
        revoked.push(...ps.map(String));
      },
    });
    const got = new Map<Partition, number[]>([[p0, []], [p1, []]]);
    const take = (batch: BrokerValue<KafkaPayload>[]) => {
      assert(batch.length <= 7, "maxPollMessages bounds a poll");
      for (const v of batch) {
        got.get(v.partition)!.push(v.offset);
        assertEquals(
          new TextDecoder().decode(v.payload.value as Uint8Array),
          `${v.partition.index}:${v.offset}`,
        );
        assert(typeof v.payload.timestamp === "number" && v.payload.timestamp === v.timestamp);
      }
    };
    const pollUntil = async (cond: () => boolean, what: string) => {
      const deadline = performance.now() + 30_000;
      while (!cond()) {
        assert(performance.now() < deadline, `timed out waiting for ${what}`);
        take(await consumer.poll(100));
      }
    };
    try {
      await pollUntil(
        () => got.get(p0)!.length >= 20 && got.get(p1)!.length >= 20,
        "both partitions flowing",
      );
      assertEquals(assigned.sort(), [`${p0}@0`, `${p1}@0`]);
      assertThrows(() => consumer.pause([Partition.of(topic, 5)]), ConsumerError, "not assigned");

      consumer.pause([p0]);
      assertEquals(consumer.paused(), [p0]);
      const p0WhenPaused = got.get(p0)!.length;
      await pollUntil(() => got.get(p1)!.length === PER, "partition 1 drained while 0 is paused");
      for (let i = 0; i < 5; i++) take(await consumer.poll(50));
      assertEquals(got.get(p0)!.length, p0WhenPaused, "nothing from a paused partition");

      consumer.resume([p0]);
      assertEquals(consumer.paused(), []);
      await pollUntil(() => got.get(p0)!.length === PER, "partition 0 after resume");
      for (const p of [p0, p1]) {
        assertEquals(
          got.get(p),
          Array.from({ length: PER }, (_, i) => i),
          `${p}: every offset once, in order`,
        );
      }
      assertEquals(consumer.tell(), new Map([[p0, PER], [p1, PER]]));
      assertEquals(consumer.endOffset(p0), PER);

      // Manual commit of what was processed.
      consumer.stageOffsets(new Map([[p0, PER], [p1, 250]]));
      assertEquals(await consumer.commitOffsets(), new Map([[p0, PER], [p1, 250]]));
      assertEquals(await committedOffsets(kafka, group, topic), new Map([[0, PER], [1, 250]]));
      consumer.stageOffsets(new Map([[Partition.of(topic, 9), 1]]));
      await assertRejects(() => consumer.commitOffsets(), ConsumerError, "not assigned");

      // Seek back: the partition is read again from there.
      consumer.seek(new Map([[p1, 390]]));
      const again: number[] = [];
      const deadline = performance.now() + 30_000;
      while (again.length < 10) {
        assert(performance.now() < deadline, "re-read after seek");
        for (const v of await consumer.poll(100)) if (v.partition === p1) again.push(v.offset);
      }
      assertEquals(again, [390, 391, 392, 393, 394, 395, 396, 397, 398, 399]);

      // Lag while paused: no batch of p0 is fetched, yet its end offset keeps up.
      consumer.pause([p0]);
      const more = testProducer(kafka);
      await more.connect();
      await more.send({
        topic,
        messages: Array.from({ length: 25 }, (_, i) => ({ value: `0:${PER + i}`, partition: 0 })),
        acks: -1,
      });
      await more.disconnect();
      const lagDeadline = performance.now() + 10_000;
      while (consumer.endOffset(p0) !== PER + 25) {
        assert(
          performance.now() < lagDeadline,
          `end offset of paused ${p0}: ${consumer.endOffset(p0)}`,
        );
        for (const v of await consumer.poll(100)) {
          assert(v.partition !== p0, "paused partition stays paused");
        }
      }

      // Unsubscribe: the revoke callback runs on the next poll, then nothing more comes.
      const before = assigned.length;
      consumer.unsubscribe();
      assertEquals(await consumer.poll(0), []);
      assertEquals(consumer.assignment, []);
      assertEquals(await consumer.poll(10), []);
      assertEquals(assigned.length, before, "no new assignment after unsubscribe");
      assertEquals(revoked.sort(), [`${p0}`, `${p1}`]);
    } finally {
      await consumer.close();
      await deleteTopics(kafka, [topic]);
    }
    assert(consumer.closed);
    await assertRejects(() => consumer.poll(0), Error, "closed");
  },
);

kafkaTest(
  "kafka consumer: keys, values, headers and timestamps arrive as produced, plain and gzip-compressed (record runs)",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-records");
    const group = unique("g");
    await createTopic(kafka, topic, 1);
    const producer = testProducer(kafka);
    await producer.connect();
    const sent: { key: string | null; value: string | null; h: string[]; ts: number }[] = [];
    const batch = (n: number, from: number) =>
      Array.from({ length: n }, (_, j) => {
        const i = from + j;
        const m = {
          key: i % 3 === 0 ? null : `k${i}`,
          value: i % 7 === 0 ? null : `v${i}`.repeat(1 + (i % 50)),
          headers: i % 2 === 0 ? { a: `x${i}`, b: ["1", "2"] } : {},
          timestamp: String(1_700_000_000_000 + i * 10),
        };
        sent.push({
          key: m.key,
          value: m.value,
          h: i % 2 === 0 ? [`x${i}`, "1", "2"] : [],
          ts: 1_700_000_000_000 + i * 10,
        });
        return m;
      });
    await producer.send({ topic, messages: batch(300, 0), acks: -1 });
    await producer.send({ topic, messages: batch(300, 300), acks: -1, compression: 1 });
    await producer.send({ topic, messages: batch(100, 600), acks: -1 });
    await producer.disconnect();
    const runsBefore = fetchDecoderStats.runs;
    const consumer = new KafkaConsumer({ brokers, group, ...FAST, maxPollMessages: 50 });
    consumer.subscribe([topic]);
    const got: BrokerValue<KafkaPayload>[] = [];
    const text = (b: unknown) => b === null ? null : new TextDecoder().decode(b as Uint8Array);
    try {
      const deadline = performance.now() + 30_000;
      while (got.length < sent.length) {
        assert(performance.now() < deadline, `timed out at ${got.length} of ${sent.length}`);
        got.push(...await consumer.poll(100));
      }
    } finally {
      await consumer.close();
    }
    assertEquals(got.map((v) => v.offset), sent.map((_, i) => i));
    for (const [i, v] of got.entries()) {
      const p = v.payload;
      const h = p.headers ?? {};
      const hs = [h.a, ...(Array.isArray(h.b) ? h.b : [])].filter((x) => x !== undefined);
      assertEquals(
        { key: text(p.key), value: text(p.value), h: hs.map(text), ts: p.timestamp },
        sent[i],
        `record ${i}`,
      );
      assertEquals(v.timestamp, sent[i].ts);
    }
    assert(
      fetchDecoderStats.runs > runsBefore,
      "Sluice's consumer received its records as runs of Sluice's decoder",
    );
  },
);
