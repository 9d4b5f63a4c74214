/**
 * Dead-letter queue on a real Kafka broker: invalid messages land in the DLQ topic with
 * their headers, commits pass them only after delivery, a DLQ outage (the DLQ topic is
 * missing) stops the consumer without losing anything, and a restart after the outage
 * resumes from the right offset and delivers everything.
 *
 * Needs a broker: `npx -y deno@2.9.6 task kafka:up` (or KAFKA_BROKERS). Without one the
 * tests are ignored with a loud warning, and fail under CI=true.
 */
import { assert, assertEquals, assertInstanceOf, assertStringIncludes } from "@std/assert";
import type { Kafka } from "kafkajs";
import type { Producer } from "../../backends/abstract.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import {
  DLQ_HEADERS,
  DlqDeliveryError,
  DlqLimitExceeded,
  DlqPolicy,
  type DlqPolicyOptions,
  withDlqHeaders,
} from "../../processing/dlq.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import type { Commit } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import {
  type BrokerValue,
  InvalidMessage,
  type Message,
  type Partition,
  type Topic,
} from "../../types.ts";
import { KafkaConsumer, type KafkaPayload, KafkaProducer } from "../../backends/kafka/mod.ts";
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

const text = (v: Uint8Array | string | null | undefined): string =>
  v == null ? "" : typeof v === "string" ? v : new TextDecoder().decode(v);

/** Produces `values` in order to partition 0 of `topic`. */
async function produceValues(kafka: Kafka, topic: string, values: string[]): Promise<void> {
  const producer = testProducer(kafka);
  await producer.connect();
  try {
    await producer.send({
      topic,
      acks: -1,
      messages: values.map((value, i) => ({
        partition: 0,
        key: `k${i}`,
        value,
        headers: { origin: "test" },
      })),
    });
  } finally {
    await producer.disconnect();
  }
}

interface DlqEntry {
  value: string;
  key: string;
  headers: Record<string, string>;
}

/** Reads `n` messages from `topic` (from the beginning), failing after `ms`. */
async function readTopic(kafka: Kafka, topic: string, n: number, ms = 20_000) {
  const consumer = kafka.consumer({ groupId: unique("dlq-reader"), maxWaitTimeInMs: 100 });
  const out: DlqEntry[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: ({ message }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) {
          headers[k] = text(Array.isArray(v) ? v[0] : v);
        }
        out.push({ value: text(message.value), key: text(message.key), headers });
        return Promise.resolve();
      },
    });
    await eventually(() => out.length >= n, `${n} messages in ${topic}`, ms);
  } finally {
    await consumer.disconnect();
  }
  return out;
}

/** A pipeline that rejects values starting with "bad" and records the others. */
function rejectingFactory(processed: string[]) {
  return {
    createWithPartitions: (commit: Commit) =>
      new RunTask(
        (m: Message<KafkaPayload>) => {
          const v = text(m.payload.value);
          if (v.startsWith("bad")) {
            throw InvalidMessage.fromValue(
              m.value as BrokerValue<KafkaPayload>,
              `value ${v} is not a number`,
              "parse",
            );
          }
          processed.push(v);
          return v;
        },
        new CommitOffsets(commit),
      ),
  };
}

function makeProcessor(
  brokers: string,
  group: string,
  topic: string,
  dlqTopic: string,
  processed: string[],
  dlqProducer: Producer<KafkaPayload>,
  extra: Partial<DlqPolicyOptions<KafkaPayload, KafkaPayload>> = {},
) {
  return new StreamProcessor<KafkaPayload>({
    consumer: new KafkaConsumer({ brokers, group, ...FAST }),
    topics: [topic],
    factory: rejectingFactory(processed),
    commitPolicy: CommitPolicy.IMMEDIATE,
    dlqPolicy: new DlqPolicy<KafkaPayload, KafkaPayload>({
      producer: dlqProducer,
      topic: dlqTopic,
      build: withDlqHeaders,
      deliveryTimeoutMs: 20_000,
      ...extra,
    }),
    handleSignals: false,
  });
}

const VALUES = ["0", "1", "bad-2", "3", "4", "5", "bad-6", "7", "8", "9"];
const VALID = VALUES.filter((v) => !v.startsWith("bad"));

kafkaTest(
  "kafka: invalid messages land in the DLQ topic with headers; commits pass them",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("dlq-src");
    const dlqTopic = unique("dlq-dead");
    const group = unique("dlq-group");
    await createTopic(kafka, topic, 1);
    await createTopic(kafka, dlqTopic, 1);
    const dlqProducer = new KafkaProducer({ brokers, logLevel: "nothing" });
    try {
      await produceValues(kafka, topic, VALUES);
      const processed: string[] = [];
      const p = makeProcessor(brokers, group, topic, dlqTopic, processed, dlqProducer);
      const running = p.run();
      await eventually(
        async () => (await committedOffsets(kafka, group, topic)).get(0) === VALUES.length,
        "committed to the end",
        30_000,
      );
      p.signalShutdown();
      await running;
      assertEquals(processed, VALID);
      assertEquals(p.stats.deadLettered, 2);
      const dlq = await readTopic(kafka, dlqTopic, 2);
      assertEquals(dlq.map((e) => e.value), ["bad-2", "bad-6"]);
      assertEquals(dlq[0].key, "k2", "the raw record is dead-lettered: key kept");
      assertEquals(dlq[0].headers.origin, "test", "original headers kept");
      assertEquals(dlq[0].headers[DLQ_HEADERS.topic], topic);
      assertEquals(dlq[0].headers[DLQ_HEADERS.partition], "0");
      assertEquals(dlq[0].headers[DLQ_HEADERS.offset], "2");
      assertEquals(dlq[1].headers[DLQ_HEADERS.offset], "6");
      assert(Number(dlq[0].headers[DLQ_HEADERS.timestamp]) > 1_600_000_000_000, "timestamp");
      assertEquals(dlq[0].headers[DLQ_HEADERS.reason], "value bad-2 is not a number");
      assertEquals(dlq[0].headers[DLQ_HEADERS.step], "parse");
    } finally {
      await dlqProducer.close();
      await deleteTopics(kafka, [topic, dlqTopic]);
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);

kafkaTest(
  "kafka: a DLQ outage stops the consumer without loss; a restart resumes and delivers all",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("dlq-src");
    const dlqTopic = unique("dlq-missing"); // not created yet: the DLQ is "down"
    const group = unique("dlq-group");
    await createTopic(kafka, topic, 1);
    let dlqProducer = new KafkaProducer({ brokers, logLevel: "nothing" });
    try {
      await produceValues(kafka, topic, VALUES);
      const processed1: string[] = [];
      const p1 = makeProcessor(brokers, group, topic, dlqTopic, processed1, dlqProducer);
      const err = await p1.run().then(() => undefined, (e) => e);
      assertInstanceOf(err, DlqDeliveryError);
      assertEquals(err.offset, 2);
      assertStringIncludes(err.message, dlqTopic);
      const committed = (await committedOffsets(kafka, group, topic)).get(0)!;
      assert(committed <= 2, `nothing committed past the invalid message (committed ${committed})`);
      await dlqProducer.close();

      // The DLQ is back: a new processor in the same group resumes at or before offset 2.
      await createTopic(kafka, dlqTopic, 1);
      dlqProducer = new KafkaProducer({ brokers, logLevel: "nothing" });
      const processed2: string[] = [];
      const p2 = makeProcessor(brokers, group, topic, dlqTopic, processed2, dlqProducer);
      const running = p2.run();
      await eventually(
        async () => (await committedOffsets(kafka, group, topic)).get(0) === VALUES.length,
        "committed to the end after the restart",
        30_000,
      );
      p2.signalShutdown();
      await running;
      // It resumed exactly at the committed offset (offset i holds VALUES[i]).
      const from = Math.max(committed, 0);
      assertEquals(processed2, VALUES.slice(from).filter((v) => !v.startsWith("bad")));
      const all = new Set([...processed1, ...processed2]);
      for (const v of VALID) assert(all.has(v), `valid message ${v} processed`);
      const dlq = await readTopic(kafka, dlqTopic, 2);
      assertEquals(dlq.map((e) => e.value), ["bad-2", "bad-6"]);
      assertEquals((await endOffsets(kafka, dlqTopic)).get(0), 2, "each dead-lettered once");
    } finally {
      await dlqProducer.close();
      await deleteTopics(kafka, [topic, dlqTopic]);
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);

/** Holds DLQ deliveries until `release()`, then sends them through the real producer. */
class HeldProducer implements Producer<KafkaPayload> {
  readonly held: Array<() => void> = [];
  constructor(readonly inner: KafkaProducer) {}
  produce(
    destination: Topic | Partition,
    payload: KafkaPayload,
  ): Promise<BrokerValue<KafkaPayload>> {
    return new Promise((resolve, reject) =>
      this.held.push(() => this.inner.produce(destination, payload).then(resolve, reject))
    );
  }
  release(): void {
    for (const send of this.held.splice(0)) send();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

kafkaTest(
  "kafka: commits stop at an invalid message until its DLQ delivery is confirmed",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("dlq-src");
    const dlqTopic = unique("dlq-dead");
    const group = unique("dlq-group");
    await createTopic(kafka, topic, 1);
    await createTopic(kafka, dlqTopic, 1);
    const held = new HeldProducer(new KafkaProducer({ brokers, logLevel: "nothing" }));
    try {
      await produceValues(kafka, topic, VALUES);
      const processed: string[] = [];
      const p = makeProcessor(brokers, group, topic, dlqTopic, processed, held);
      const running = p.run();
      await eventually(
        () => processed.length === VALID.length && held.held.length === 2,
        "all valid processed, two deliveries held",
        30_000,
      );
      await eventually(
        async () => (await committedOffsets(kafka, group, topic)).get(0) === 2,
        "committed up to the first invalid message",
        30_000,
      );
      // Give the processor more turns: the commit must not move while deliveries are held.
      for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 50));
      assertEquals((await committedOffsets(kafka, group, topic)).get(0), 2);
      held.release();
      await eventually(
        async () => (await committedOffsets(kafka, group, topic)).get(0) === VALUES.length,
        "committed to the end once the DLQ confirmed",
        30_000,
      );
      p.signalShutdown();
      await running;
      assertEquals((await readTopic(kafka, dlqTopic, 2)).map((e) => e.value), ["bad-2", "bad-6"]);
    } finally {
      await held.close();
      await deleteTopics(kafka, [topic, dlqTopic]);
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);

kafkaTest(
  "kafka: too many invalid messages in a row stop the consumer at the culprit",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("dlq-src");
    const dlqTopic = unique("dlq-dead");
    const group = unique("dlq-group");
    await createTopic(kafka, topic, 1);
    await createTopic(kafka, dlqTopic, 1);
    const dlqProducer = new KafkaProducer({ brokers, logLevel: "nothing" });
    try {
      await produceValues(kafka, topic, ["0", "bad-1", "bad-2", "bad-3", "4"]);
      const processed: string[] = [];
      const p = makeProcessor(brokers, group, topic, dlqTopic, processed, dlqProducer, {
        limit: { maxConsecutiveInvalid: 2 },
      });
      const err = await p.run().then(() => undefined, (e) => e);
      assertInstanceOf(err, DlqLimitExceeded);
      assertEquals(err.limit, "maxConsecutiveInvalid");
      assertEquals(err.offset, 3);
      assertEquals((await committedOffsets(kafka, group, topic)).get(0), 3);
      assertEquals((await readTopic(kafka, dlqTopic, 2)).map((e) => e.value), ["bad-1", "bad-2"]);
      assertEquals(processed, ["0"]);
    } finally {
      await dlqProducer.close();
      await deleteTopics(kafka, [topic, dlqTopic]);
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);
