/**
 * Sluice's consumer receiving record runs (`backends/kafka/_fetch_decoder.ts`) against a
 * real broker, on the record sets where a run differs from kafkajs's records: a start
 * offset inside a gzip batch, transactions (aborted ones in read_committed, markers), a
 * compacted topic (batches whose last offset is past their last record), pause and seek
 * into a compressed batch; and a plain kafkajs consumer in the same process, which keeps
 * kafkajs's record shape.
 */
import { assert, assertEquals } from "@std/assert";
import { Buffer } from "node:buffer";
import type { KafkaMessage } from "kafkajs";
import { type BrokerValue, Partition } from "../../types.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";
import { fetchDecoderStats, RecordRun } from "../../backends/kafka/_fetch_decoder.ts";
import {
  committedOffsets,
  createTopic,
  deleteTopics,
  endOffsets,
  eventually,
  FAST,
  kafkaTest,
  testKafka,
  testProducer,
  unique,
} from "./kafka_helpers.ts";

const text = (b: unknown) => b === null ? null : new TextDecoder().decode(b as Uint8Array);

/**
 * Polls `consumer` until `done(got)`, then `settleMs` longer (anything more is an extra);
 * the values received.
 */
async function consume(
  consumer: KafkaConsumer,
  done: (got: BrokerValue<KafkaPayload>[]) => boolean,
  settleMs = 1000,
  ms = 30_000,
): Promise<BrokerValue<KafkaPayload>[]> {
  const got: BrokerValue<KafkaPayload>[] = [];
  const deadline = performance.now() + ms;
  while (!done(got)) {
    assert(performance.now() < deadline, `timed out with ${got.length} values`);
    got.push(...await consumer.poll(100));
  }
  const until = performance.now() + settleMs;
  while (performance.now() < until) got.push(...await consumer.poll(100));
  return got;
}

/** Stages and commits the position after the last value of `got` (one partition). */
async function commitAfter(consumer: KafkaConsumer, got: BrokerValue<KafkaPayload>[]) {
  const last = got[got.length - 1];
  consumer.stageOffsets(new Map([[last.partition, last.offset + 1]]));
  await consumer.commitOffsets();
}

kafkaTest(
  "record runs: a committed offset inside a gzip batch: consumption starts exactly there",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-runs-gzip");
    const group = unique("g");
    await createTopic(kafka, topic, 1);
    const producer = testProducer(kafka);
    await producer.connect();
    for (let s = 0; s < 3; s++) {
      const messages = Array.from({ length: 100 }, (_, i) => ({ value: String(s * 100 + i) }));
      await producer.send({ topic, messages, acks: -1, compression: 1 });
    }
    await producer.disconnect();
    // A first member commits 137 (inside the second batch, 100..199) and leaves.
    const first = new KafkaConsumer({ brokers, group, ...FAST, maxPollMessages: 1 });
    first.subscribe([topic]);
    try {
      await consume(first, (g) => g.length > 0, 0);
      first.stageOffsets(new Map([[Partition.of(topic, 0), 137]]));
      await first.commitOffsets();
    } finally {
      await first.close();
    }
    assertEquals((await committedOffsets(kafka, group, topic)).get(0), 137);
    const runsBefore = fetchDecoderStats.runs;
    const consumer = new KafkaConsumer({ brokers, group, ...FAST, maxPollMessages: 11 });
    consumer.subscribe([topic]);
    try {
      const got = await consume(consumer, (g) => g.length >= 163);
      assertEquals(got.map((v) => v.offset), Array.from({ length: 163 }, (_, i) => 137 + i));
      assert(got.every((v) => text(v.payload.value) === String(v.offset)));
      await commitAfter(consumer, got);
    } finally {
      await consumer.close();
    }
    assert(fetchDecoderStats.runs > runsBefore, "consumed as runs");
    assertEquals((await committedOffsets(kafka, group, topic)).get(0), 300);
    await deleteTopics(kafka, [topic]);
  },
);

kafkaTest(
  "record runs: read_committed skips aborted transactions and markers, keeps committed ones; a kafkajs consumer alongside gets kafkajs's records",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-runs-txn");
    await createTopic(kafka, topic, 1);
    const txProducer = kafka.producer({
      transactionalId: unique("tx"),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    const plain = testProducer(kafka);
    await Promise.all([txProducer.connect(), plain.connect()]);
    const expected: string[] = [];
    const txn = async (name: string, n: number, commit: boolean, compression = 0) => {
      const tx = await txProducer.transaction();
      const messages = Array.from({ length: n }, (_, i) => ({ key: name, value: `${name}${i}` }));
      await tx.send({ topic, messages, compression });
      if (commit) {
        await tx.commit();
        expected.push(...messages.map((m) => m.value));
      } else await tx.abort();
    };
    const send = async (name: string, n: number) => {
      const messages = Array.from({ length: n }, (_, i) => ({ key: name, value: `${name}${i}` }));
      await plain.send({ topic, messages, acks: -1 });
      expected.push(...messages.map((m) => m.value));
    };
    await txn("a", 10, true);
    await txn("b", 10, false);
    await send("p", 5);
    await txn("c", 10, false, 1);
    await txn("d", 10, true, 1);
    await txn("e", 3, false);
    await txn("f", 3, false);
    await send("q", 4);
    await txn("g", 2, true);
    await Promise.all([txProducer.disconnect(), plain.disconnect()]);
    const end = (await endOffsets(kafka, topic)).get(0)!;

    // A user's own kafkajs consumer in the same process, at the same time.
    const theirs: KafkaMessage[] = [];
    const kjs = kafka.consumer({ groupId: unique("kjs"), maxWaitTimeInMs: 100 });
    await kjs.connect();
    await kjs.subscribe({ topics: [topic], fromBeginning: true });
    await kjs.run({ eachMessage: ({ message }) => Promise.resolve(void theirs.push(message)) });

    const group = unique("g");
    const consumer = new KafkaConsumer({ brokers, group, ...FAST, maxPollMessages: 3 });
    consumer.subscribe([topic]);
    let got: BrokerValue<KafkaPayload>[];
    try {
      got = await consume(consumer, (g) => g.length >= expected.length, 1500);
      await commitAfter(consumer, got);
      await eventually(() => theirs.length >= expected.length, "the kafkajs consumer", 20_000);
      await new Promise((r) => setTimeout(r, 500));
    } finally {
      await Promise.all([consumer.close(), kjs.disconnect()]);
    }
    assertEquals(got.map((v) => text(v.payload.value)), expected);
    const offsets = got.map((v) => v.offset);
    assert(offsets.every((o, i) => i === 0 || o > offsets[i - 1]), "offsets increase");
    assert(offsets[offsets.length - 1] < end);

    assertEquals(theirs.map((m) => m.value?.toString()), expected);
    assertEquals(theirs.map((m) => Number(m.offset)), offsets);
    for (const m of theirs) {
      assert(!(m instanceof RecordRun));
      assertEquals(typeof m.offset, "string");
      assertEquals(typeof m.timestamp, "string");
      assert(Buffer.isBuffer(m.key) && Buffer.isBuffer(m.value));
      assert("batchContext" in m && "isControlRecord" in m && "magicByte" in m);
    }
    await deleteTopics(kafka, [topic]);
  },
);

kafkaTest(
  "record runs: after the last record a transaction marker ends the log; new records still arrive, none twice",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-runs-marker");
    const group = unique("g");
    await createTopic(kafka, topic, 1);
    const txProducer = kafka.producer({
      transactionalId: unique("tx"),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await txProducer.connect();
    const txn = async (from: number, n: number, commit: boolean) => {
      const tx = await txProducer.transaction();
      await tx.send({
        topic,
        messages: Array.from({ length: n }, (_, i) => ({ value: String(from + i) })),
      });
      await (commit ? tx.commit() : tx.abort());
    };
    const consumer = new KafkaConsumer({ brokers, group, ...FAST, maxPollMessages: 4 });
    consumer.subscribe([topic]);
    const values: string[] = [];
    try {
      await txn(0, 10, true);
      let got = await consume(consumer, (g) => g.length >= 10, 1000);
      values.push(...got.map((v) => text(v.payload.value)!));
      await txn(100, 5, false); // aborted: nothing
      await txn(10, 10, true);
      got = await consume(consumer, (g) => g.length >= 10, 1000);
      values.push(...got.map((v) => text(v.payload.value)!));
      await commitAfter(consumer, got);
      const p = Partition.of(topic, 0);
      const position = consumer.tell().get(p)!;
      assert(position >= got[got.length - 1].offset + 1);
    } finally {
      await consumer.close();
      await txProducer.disconnect();
    }
    assertEquals(values, Array.from({ length: 20 }, (_, i) => String(i)));
    await deleteTopics(kafka, [topic]);
  },
);

kafkaTest(
  "record runs: pause in a gzip batch, resume, seek back into another one: nothing skipped or repeated",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-runs-seek");
    const group = unique("g");
    await createTopic(kafka, topic, 1);
    const producer = testProducer(kafka);
    await producer.connect();
    for (let s = 0; s < 4; s++) {
      const messages = Array.from({ length: 50 }, (_, i) => ({ value: String(s * 50 + i) }));
      await producer.send({ topic, messages, acks: -1, compression: 1 });
    }
    await producer.disconnect();
    const p = Partition.of(topic, 0);
    const consumer = new KafkaConsumer({ brokers, group, ...FAST, maxPollMessages: 7 });
    consumer.subscribe([topic]);
    const offsets: number[] = [];
    try {
      offsets.push(...(await consume(consumer, (g) => g.length >= 20, 0)).map((v) => v.offset));
      consumer.pause([p]);
      for (let i = 0; i < 5; i++) assertEquals(await consumer.poll(100), []);
      consumer.resume([p]);
      offsets.push(
        ...(await consume(consumer, (g) => offsets.length + g.length >= 120, 0)).map((v) =>
          v.offset
        ),
      );
      assertEquals(offsets, Array.from({ length: offsets.length }, (_, i) => i));
      // Back into the second batch (50..99), mid-way.
      consumer.seek(new Map([[p, 73]]));
      const again = await consume(consumer, (g) => g.length >= 200 - 73, 1000);
      assertEquals(again.map((v) => v.offset), Array.from({ length: 200 - 73 }, (_, i) => 73 + i));
      assert(again.every((v) => text(v.payload.value) === String(v.offset)));
    } finally {
      await consumer.close();
    }
    await deleteTopics(kafka, [topic]);
  },
);

kafkaTest(
  "record runs: a compacted topic hands out the records kafkajs's decoder sees, and the committed offset reaches the end",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-runs-compact");
    const admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({
      topics: [{
        topic,
        numPartitions: 1,
        configEntries: [
          { name: "cleanup.policy", value: "compact" },
          { name: "segment.ms", value: "100" },
          { name: "min.cleanable.dirty.ratio", value: "0.001" },
          { name: "min.compaction.lag.ms", value: "0" },
          { name: "delete.retention.ms", value: "0" },
        ],
      }],
    });
    const producer = testProducer(kafka);
    await producer.connect();
    // 30 batches of 10 records over 7 keys: the cleaner keeps the last record of each key,
    // leaving batches with gaps inside and at their end.
    let n = 0;
    for (let s = 0; s < 30; s++) {
      const messages = Array.from({ length: 10 }, () => {
        const i = n++;
        return { key: `k${(i * 3) % 7}`, value: String(i) };
      });
      await producer.send({ topic, messages, acks: -1, compression: s % 2 });
    }
    // Rolls the segment (segment.ms has passed) so the cleaner can compact what is below.
    const roll = async () => {
      await new Promise((r) => setTimeout(r, 150));
      await producer.send({ topic, messages: [{ key: "roll", value: String(n++) }], acks: -1 });
    };
    const kjsView = async (): Promise<number[]> => {
      const seen: number[] = [];
      const c = kafka.consumer({ groupId: unique("kjs"), maxWaitTimeInMs: 100 });
      await c.connect();
      await c.subscribe({ topics: [topic], fromBeginning: true });
      const end = Number((await admin.fetchTopicOffsets(topic))[0].high);
      await c.run({
        eachMessage: ({ message }) => Promise.resolve(void seen.push(Number(message.offset))),
      });
      await eventually(
        () => seen.length > 0 && seen[seen.length - 1] >= end - 1,
        "kafkajs",
        20_000,
      );
      await c.disconnect();
      return seen;
    };
    let compacted: number[] = [];
    try {
      await eventually(
        async () => {
          await roll();
          compacted = await kjsView();
          return compacted.length < n - 20;
        },
        "the log cleaner to compact the topic",
        60_000,
        2000,
      );
      await producer.disconnect();
      const end = (await endOffsets(kafka, topic)).get(0)!;
      const group = unique("g");
      const consumer = new KafkaConsumer({ brokers, group, ...FAST, maxPollMessages: 3 });
      consumer.subscribe([topic]);
      const seen = await kjsView();
      let got: BrokerValue<KafkaPayload>[];
      try {
        got = await consume(consumer, (g) => g.length > 0 && g[g.length - 1].offset >= end - 1);
        await commitAfter(consumer, got);
        assertEquals(consumer.stats.gapsRefetched, 0, "compaction gaps are not re-fetched");
        assertEquals(consumer.stats.gapsAccepted, 0);
      } finally {
        await consumer.close();
      }
      assert(seen.length < n - 20, `compacted: ${seen.length} of ${n} records left`);
      assertEquals(got.map((v) => v.offset), seen, "the same records as kafkajs's consumer");
      assert(got.every((v) => text(v.payload.value) === String(v.offset)));
      assertEquals((await committedOffsets(kafka, group, topic)).get(0), end);
    } finally {
      await admin.disconnect();
      await deleteTopics(kafka, [topic]);
    }
  },
);
