/**
 * The @platformatic/kafka backend against the development broker's SASL_SSL listener (as
 * kafka_security_test.ts does for kafkajs): a group produces, consumes and commits over
 * SCRAM-SHA-512, PLAIN and SCRAM-SHA-256 authenticate, a wrong password is a
 * KafkaAuthenticationError and an untrusted certificate a KafkaTlsError, each within a
 * bounded time and with no secret in it. And `run({ untilCaughtUp: true })` with a
 * PlatformaticConsumer (its `endOffsets()` asks the broker).
 */
import { assert, assertEquals, assertInstanceOf, assertStringIncludes } from "@std/assert";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { type Message, Partition, Topic } from "../../types.ts";
import {
  KafkaAdmin,
  KafkaAuthenticationError,
  type KafkaPayload,
  type KafkaSaslOptions,
  KafkaTlsError,
} from "../../backends/kafka/mod.ts";
import {
  PlatformaticConsumer,
  PlatformaticProducer,
  type PlatformaticProducerOptions,
} from "../../backends/platformatic/mod.ts";
import { SECURE_PASSWORD, SECURE_USER } from "../../scripts/kafka_env.ts";
import {
  committedOffsets,
  createTopic,
  deleteTopics,
  endOffsets,
  eventually,
  FAST,
  kafkaTest,
  produceNumbers,
  type SecureBroker,
  secureTest,
  testKafka,
  unique,
} from "./kafka_helpers.ts";
import { PrivateBroker, privateBrokerMissing, privateBrokerTest } from "./private_broker.ts";

const WRONG_PASSWORD = "not-the-password-0xBADC0DE";

/** Client options for the SASL_SSL listener with `sasl` (default SCRAM-SHA-512). */
function secured(
  s: SecureBroker,
  sasl: KafkaSaslOptions = {
    mechanism: "SCRAM-SHA-512",
    username: SECURE_USER,
    password: SECURE_PASSWORD,
  },
): PlatformaticProducerOptions {
  return { brokers: s.brokers, ssl: { ca: s.ca }, sasl, logLevel: "nothing", retry: FAST.retry };
}

const text = (v: Uint8Array | string | null | undefined): string =>
  v == null ? "" : typeof v === "string" ? v : new TextDecoder().decode(v);

/** Asserts that nothing a user could print of `e` shows a secret. */
function assertNoSecret(e: unknown, ...secrets: string[]): void {
  const views = [
    String(e),
    (e as Error).message,
    (e as Error).stack ?? "",
    JSON.stringify(e),
    Deno.inspect(e, { depth: 10 }),
  ];
  for (const secret of secrets) {
    for (const view of views) assert(!view.includes(secret), `secret leaked in: ${view}`);
  }
}

/** Runs `attempt`, returning its error and how long it took to fail. */
async function failure(attempt: () => Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = performance.now();
  const error = await attempt().then(() => undefined, (e) => e);
  return { error, ms: performance.now() - started };
}

secureTest(
  "platformatic security: over SASL_SSL + SCRAM-SHA-512 a group produces, consumes and commits",
  async (s) => {
    const opts = secured(s);
    const admin = new KafkaAdmin(opts);
    const topic = unique("plt-sec-src");
    const group = unique("plt-sec-group");
    const values = ["0", "1", "2", "3", "4", "5", "6"];
    const producer = new PlatformaticProducer(opts);
    try {
      assertEquals(await admin.createTopics([{ name: topic, partitions: 2 }]), [topic]);
      for (const value of values) {
        await producer.produce(Topic.of(topic), { key: `k${value}`, value });
      }
      const processed: string[] = [];
      const p = new StreamProcessor<KafkaPayload>({
        consumer: new PlatformaticConsumer({ ...opts, ...FAST, group }),
        topics: [topic],
        factory: {
          createWithPartitions: (commit) =>
            new RunTask((m: Message<KafkaPayload>) => {
              processed.push(text(m.payload.value));
            }, new CommitOffsets(commit)),
        },
        commitPolicy: CommitPolicy.IMMEDIATE,
        handleSignals: false,
      });
      const running = p.run();
      try {
        await eventually(
          async () => {
            const g = await admin.describeGroup(group, [topic]);
            return g.totalLag === 0 &&
              g.partitions.reduce((n, x) => n + (x.committed ?? 0), 0) === values.length;
          },
          "the group committed to the end over SASL_SSL",
          60_000,
          200,
        );
      } finally {
        p.signalShutdown();
        await running;
      }
      assertEquals(processed.toSorted(), values);
    } finally {
      await producer.close();
      await admin.deleteTopics([topic]).catch(() => {});
      await admin.close();
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);

secureTest(
  "platformatic security: PLAIN and SCRAM-SHA-256 authenticate",
  async (s) => {
    const admin = new KafkaAdmin(secured(s));
    const topic = unique("plt-sec-mech");
    await admin.createTopics([{ name: topic }]);
    const mechanisms: KafkaSaslOptions[] = [
      { mechanism: "PLAIN", username: SECURE_USER, password: SECURE_PASSWORD },
      { mechanism: "scram-sha-256", username: SECURE_USER, password: SECURE_PASSWORD },
    ];
    try {
      for (const sasl of mechanisms) {
        const producer = new PlatformaticProducer(secured(s, sasl));
        try {
          const sent = await producer.produce(Topic.of(topic), { key: null, value: "x" });
          assert(sent.offset >= 0, `${sasl.mechanism}: produced`);
        } finally {
          await producer.close();
        }
      }
      const ends = await admin.describeGroup(unique("probe"), [topic]);
      assertEquals(ends.partitions[0].end, mechanisms.length);
    } finally {
      await admin.deleteTopics([topic]).catch(() => {});
      await admin.close();
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);

secureTest(
  "platformatic security: a wrong password is a KafkaAuthenticationError naming the mechanism, fast",
  async (s) => {
    for (const mechanism of ["SCRAM-SHA-512", "PLAIN"] as const) {
      const opts = {
        ...secured(s, { mechanism, username: SECURE_USER, password: WRONG_PASSWORD }),
        connectTimeoutMs: 30_000,
      };
      // The consumer (poll joins the group) and the producer fail alike.
      const consumer = new PlatformaticConsumer({ ...opts, ...FAST, group: unique("plt-bad") });
      consumer.subscribe(["sluice-warmup"]);
      const c = await failure(() => consumer.poll(100));
      await consumer.close().catch(() => {});
      const producer = new PlatformaticProducer(opts);
      const pr = await failure(() =>
        producer.produce(Topic.of("sluice-warmup"), { key: null, value: "x" })
      );
      await producer.close();
      for (const { error, ms } of [c, pr]) {
        console.log(`user sees (${Math.round(ms)} ms): ${error}`);
        assertInstanceOf(error, KafkaAuthenticationError);
        assertEquals(error.mechanism, mechanism);
        assertStringIncludes(error.message, mechanism);
        assertStringIncludes(error.message, "authentication");
        // With 10 retries the library alone took about a minute (its retries nest).
        assert(ms < 15_000, `failed in ${ms} ms, long before the 30 s connect timeout`);
        assertNoSecret(error, WRONG_PASSWORD, SECURE_PASSWORD);
      }
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);

secureTest(
  "platformatic security: an untrusted certificate is a KafkaTlsError, fast",
  async (s) => {
    // No `ca`: the system's CAs, which do not know the broker's throw-away CA.
    const opts = { ...secured(s), ssl: true as const, connectTimeoutMs: 30_000 };
    const producer = new PlatformaticProducer(opts);
    const pr = await failure(() =>
      producer.produce(Topic.of("sluice-warmup"), { key: null, value: "x" })
    );
    await producer.close();
    const consumer = new PlatformaticConsumer({ ...opts, ...FAST, group: unique("plt-tls") });
    consumer.subscribe(["sluice-warmup"]);
    const c = await failure(() => consumer.poll(100));
    await consumer.close().catch(() => {});
    for (const { error, ms } of [pr, c]) {
      console.log(`user sees (${Math.round(ms)} ms): ${error}`);
      assertInstanceOf(error, KafkaTlsError);
      assertStringIncludes(error.message, "certificate");
      assertStringIncludes(error.message, "ssl: { ca");
      assert(ms < 15_000, `failed in ${ms} ms, long before the 30 s connect timeout`);
      assertNoSecret(error, SECURE_PASSWORD);
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);

kafkaTest(
  "platformatic: run({ untilCaughtUp: true }) stops once every partition is committed to its end",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-plt-caught-up");
    const group = unique("g");
    const N = 2_000;
    await createTopic(kafka, topic, 3);
    try {
      await produceNumbers(kafka, topic, N);
      const ends = await endOffsets(kafka, topic);
      const consumer = new PlatformaticConsumer({ brokers, group, ...FAST });
      let processed = 0;
      const processor = new StreamProcessor<KafkaPayload>({
        consumer,
        topics: [topic],
        handleSignals: false,
        factory: {
          createWithPartitions: (commit) =>
            new RunTask(() => processed++, new CommitOffsets(commit)),
        },
      });
      await processor.run({ untilCaughtUp: true });
      assertEquals(processed, N);
      assertEquals(await committedOffsets(kafka, group, topic), ends);
      // endOffsets() asked the broker: the lag source agrees.
      for (const [p, end] of ends) assertEquals(consumer.endOffset(Partition.of(topic, p)), end);
    } finally {
      await deleteTopics(kafka, [topic]);
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);

const privateMissing = await privateBrokerMissing();
privateBrokerTest(
  "platformatic: the broker restarts mid-run; every message is processed and commits reach the end",
  async () => {
    const broker = new PrivateBroker();
    await broker.format();
    await broker.start();
    const brokers = broker.address;
    const kafka = testKafka(brokers);
    const topic = unique("sluice-plt-restart");
    const group = unique("g");
    const N1 = 2000;
    const N2 = 2000;
    let running: Promise<void> | undefined;
    let processor: StreamProcessor<KafkaPayload> | undefined;
    try {
      // Warm up the group coordinator (creates __consumer_offsets), then the topic.
      await eventually(
        async () => {
          try {
            await committedOffsets(kafka, "warm-up", "none").catch(() => new Map());
            await createTopic(kafka, topic, 2);
            return true;
          } catch {
            return false;
          }
        },
        "the private broker to accept a topic",
        60_000,
        500,
      );
      await produceNumbers(kafka, topic, N1);
      const seen = new Uint8Array(N1 + N2);
      let distinct = 0;
      const consumer = new PlatformaticConsumer({
        brokers,
        group,
        ...FAST,
        retry: { initialRetryTimeMs: 200, retries: 5, maxRetryTimeMs: 1000 },
      });
      processor = new StreamProcessor<KafkaPayload>({
        consumer,
        topics: [topic],
        commitPolicy: new CommitPolicy({ intervalMs: 200 }),
        handleSignals: false,
        factory: {
          createWithPartitions: (commit) =>
            new RunTask((m: Message<KafkaPayload>) => {
              const v = Number(text(m.payload.value));
              if (seen[v]++ === 0) distinct++;
            }, new CommitOffsets(commit)),
        },
      });
      running = processor.run();
      let stopped: string | undefined;
      running.then(
        () => stopped = "run() returned",
        (e) => stopped = `run() failed: ${e instanceof Error ? e.stack : e}`,
      );
      const p = processor;
      const state = () =>
        `${distinct} of ${N1 + N2} distinct messages seen; consumer ${
          JSON.stringify(consumer.stats)
        }; processor ${JSON.stringify(p.stats)}`;
      const until = (condition: () => boolean) => () => {
        if (stopped) throw new Error(`${stopped}; ${state()}`);
        return condition();
      };
      await eventually(until(() => distinct === N1), "the first messages", 60_000, 50, state);
      await broker.kill();
      await broker.start();
      await produceNumbers(kafka, topic, N2, N1);
      await eventually(
        until(() => distinct === N1 + N2),
        "every message processed after the restart",
        120_000,
        50,
        state,
      );
      const ends = await endOffsets(kafka, topic);
      await eventually(
        async () => {
          if (stopped) throw new Error(`${stopped}; ${state()}`);
          const committed = await committedOffsets(kafka, group, topic);
          return [...ends].every(([i, end]) => committed.get(i) === end);
        },
        "commits to reach the end offsets after the restart",
        60_000,
        300,
        state,
      );
      processor.signalShutdown();
      await running;
      running = undefined;
      assertEquals(distinct, N1 + N2, "nothing lost");
    } finally {
      processor?.signalShutdown();
      await running?.catch(() => {});
      await broker.remove();
    }
  },
  privateMissing,
);
