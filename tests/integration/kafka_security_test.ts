/**
 * Both Kafka backends (kafkajs and @platformatic/kafka, `kafka_backends.ts`) against a real
 * SASL_SSL listener (the development broker's, see scripts/kafka.ts): a pipeline with a
 * group, commits and a DLQ over SCRAM-SHA-512, each other mechanism (PLAIN, SCRAM-SHA-256,
 * OAUTHBEARER), a wrong password and an untrusted certificate, each a typed error within a
 * bounded time with no secret in it. With kafkajs also mutual TLS, a plaintext client at the
 * TLS listener and a TLS client at a plaintext listener.
 */
import { assert, assertEquals, assertInstanceOf, assertStringIncludes } from "@std/assert";
import { ProducerError } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { DlqPolicy, withDlqHeaders } from "../../processing/dlq.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import type { Commit } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { type BrokerValue, InvalidMessage, type Message, Topic } from "../../types.ts";
import {
  KafkaAdmin,
  KafkaAuthenticationError,
  type KafkaClientOptions,
  KafkaConsumer,
  type KafkaPayload,
  KafkaProducer,
  type KafkaSaslOptions,
  KafkaTlsError,
} from "../../backends/kafka/mod.ts";
import net from "node:net";
import { SECURE_PASSWORD, SECURE_USER } from "../../scripts/kafka_env.ts";
import { BACKENDS } from "./kafka_backends.ts";
import {
  eventually,
  FAST,
  kafkaTest,
  SECURE,
  type SecureBroker,
  secureTest,
  unique,
} from "./kafka_helpers.ts";

const WRONG_PASSWORD = "not-the-password-0xC0FFEE";

/** Client options for the SASL_SSL listener with `sasl` (default SCRAM-SHA-512). */
function secured(
  s: SecureBroker,
  sasl: KafkaSaslOptions = {
    mechanism: "SCRAM-SHA-512",
    username: SECURE_USER,
    password: SECURE_PASSWORD,
  },
): KafkaClientOptions {
  return {
    brokers: s.brokers,
    ssl: { ca: s.ca },
    sasl,
    logLevel: "nothing",
    retry: FAST.retry,
  };
}

const text = (v: Uint8Array | string | null | undefined): string =>
  v == null ? "" : typeof v === "string" ? v : new TextDecoder().decode(v);

/** An unsigned JWT, as Kafka's default (unsecured) OAUTHBEARER validator accepts. */
function unsecuredJwt(sub: string): string {
  const b64 = (o: unknown) =>
    btoa(JSON.stringify(o)).replaceAll("=", "").replaceAll("+", "-").replaceAll("/", "_");
  const now = Math.floor(Date.now() / 1000);
  return `${b64({ alg: "none" })}.${b64({ sub, iat: now, exp: now + 3600 })}.`;
}

/** Asserts that nothing a user could print of `e` shows a password. */
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

for (const b of BACKENDS) {
  secureTest(
    `${b.name} security: over SASL_SSL + SCRAM-SHA-512 a group produces, consumes, commits and dead-letters`,
    async (s) => {
      const opts = secured(s);
      const admin = new KafkaAdmin(opts);
      const topic = unique(`${b.name}-sec-src`);
      const dlqTopic = unique(`${b.name}-sec-dlq`);
      const group = unique(`${b.name}-sec-group`);
      const values = ["0", "1", "bad-2", "3", "4", "bad-5", "6"];
      const producer = b.producer(opts);
      const dlqProducer = b.producer(opts);
      try {
        assertEquals(
          await admin.createTopics([{ name: topic }, { name: dlqTopic }]),
          [topic, dlqTopic],
        );
        for (const value of values) {
          await producer.produce(Topic.of(topic), { key: `k${value}`, value });
        }
        const processed: string[] = [];
        const p = new StreamProcessor<KafkaPayload>({
          consumer: b.consumer({ ...opts, ...FAST, group }),
          topics: [topic],
          factory: {
            createWithPartitions: (commit: Commit) =>
              new RunTask((m: Message<KafkaPayload>) => {
                const v = text(m.payload.value);
                if (v.startsWith("bad")) {
                  throw InvalidMessage.fromValue(m.value as BrokerValue<KafkaPayload>, "bad");
                }
                processed.push(v);
                return v;
              }, new CommitOffsets(commit)),
          },
          commitPolicy: CommitPolicy.IMMEDIATE,
          dlqPolicy: new DlqPolicy<KafkaPayload, KafkaPayload>({
            producer: dlqProducer,
            topic: dlqTopic,
            build: withDlqHeaders,
          }),
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
        assertEquals(processed, values.filter((v) => !v.startsWith("bad")));
        assertEquals(p.stats.deadLettered, 2);
        // Nobody committed on the DLQ topic: its lag is every record in it.
        const dlq = await admin.describeGroup(unique("probe"), [dlqTopic]);
        assertEquals(dlq.partitions.map((x) => [x.end, x.committed]), [[2, null]]);
      } finally {
        await producer.close();
        await dlqProducer.close();
        await admin.deleteTopics([topic, dlqTopic]).catch(() => {});
        await admin.close();
      }
    },
    { sanitizeOps: false, sanitizeResources: false },
  );

  secureTest(
    `${b.name} security: PLAIN, SCRAM-SHA-256 and OAUTHBEARER (token callback) authenticate`,
    async (s) => {
      const admin = new KafkaAdmin(secured(s));
      const topic = unique(`${b.name}-sec-mech`);
      await admin.createTopics([{ name: topic }]);
      let tokens = 0;
      const mechanisms: KafkaSaslOptions[] = [
        { mechanism: "PLAIN", username: SECURE_USER, password: SECURE_PASSWORD },
        { mechanism: "scram-sha-256", username: SECURE_USER, password: SECURE_PASSWORD },
        {
          mechanism: "OAUTHBEARER",
          oauthBearerProvider: () => {
            tokens++;
            return Promise.resolve({ value: unsecuredJwt(SECURE_USER) });
          },
        },
      ];
      try {
        for (const sasl of mechanisms) {
          const producer = b.producer(secured(s, sasl));
          try {
            const sent = await producer.produce(Topic.of(topic), { key: null, value: "x" });
            assert(sent.offset >= 0, `${sasl.mechanism}: produced`);
          } finally {
            await producer.close();
          }
        }
        assert(tokens > 0, "the OAUTHBEARER token provider was called");
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
    `${b.name} security: a wrong password is a KafkaAuthenticationError naming the mechanism, fast`,
    async (s) => {
      for (const mechanism of ["SCRAM-SHA-512", "PLAIN"] as const) {
        const opts = {
          ...secured(s, { mechanism, username: SECURE_USER, password: WRONG_PASSWORD }),
          connectTimeoutMs: 30_000,
        };
        // The consumer (poll connects and joins) and the producer (the DLQ's too) fail alike.
        const consumer = b.consumer({ ...opts, ...FAST, group: unique(`${b.name}-sec-bad`) });
        consumer.subscribe(["sluice-warmup"]);
        const c = await failure(() => consumer.poll(100));
        await consumer.close().catch(() => {});
        const producer = b.producer(opts);
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
          // With 10 retries @platformatic/kafka alone took about a minute (its retries nest).
          assert(ms < b.failFastMs, `failed in ${ms} ms, long before the 30 s connect timeout`);
          assertNoSecret(error, WRONG_PASSWORD, SECURE_PASSWORD);
        }
      }
    },
    { sanitizeOps: false, sanitizeResources: false },
  );

  secureTest(
    `${b.name} security: an untrusted certificate is a KafkaTlsError, fast`,
    async (s) => {
      // No `ca`: the system's CAs, which do not know the broker's throw-away CA.
      const opts = { ...secured(s), ssl: true as const, connectTimeoutMs: 30_000 };
      const producer = b.producer(opts);
      const pr = await failure(() =>
        producer.produce(Topic.of("sluice-warmup"), { key: null, value: "x" })
      );
      await producer.close();
      const consumer = b.consumer({ ...opts, ...FAST, group: unique(`${b.name}-sec-tls`) });
      consumer.subscribe(["sluice-warmup"]);
      const c = await failure(() => consumer.poll(100));
      await consumer.close().catch(() => {});
      for (const { error, ms } of [pr, c]) {
        console.log(`user sees (${Math.round(ms)} ms): ${error}`);
        assertInstanceOf(error, KafkaTlsError);
        assertStringIncludes(error.message, "certificate");
        assertStringIncludes(error.message, "ssl: { ca");
        assert(ms < b.failFastMs, `failed in ${ms} ms, long before the 30 s connect timeout`);
        assertNoSecret(error, SECURE_PASSWORD);
      }
    },
    { sanitizeOps: false, sanitizeResources: false },
  );
}

secureTest(
  "kafka security: mutual TLS: a client certificate the broker trusts works, another is refused",
  async (s) => {
    const withCert = async (cert: string, key: string) => {
      const producer = new KafkaProducer({
        ...secured(s),
        ssl: { ca: s.ca, cert: await s.pem(cert), key: await s.pem(key) },
        connectTimeoutMs: 30_000,
      });
      try {
        return await failure(() =>
          producer.produce(Topic.of("sluice-warmup"), { key: null, value: "x" })
        );
      } finally {
        await producer.close();
      }
    };
    const trusted = await withCert("client.pem", "client-key.pem");
    assertEquals(trusted.error, undefined, "a certificate signed by the broker's CA is accepted");
    const { error, ms } = await withCert("rogue.pem", "rogue-key.pem");
    console.log(`user sees (${Math.round(ms)} ms): ${error}`);
    assertInstanceOf(error, KafkaTlsError);
    assertStringIncludes(error.message, "does not trust the client certificate");
    assert(ms < 10_000, `failed in ${ms} ms, long before the 30 s connect timeout`);
    assertNoSecret(error, "PRIVATE KEY", (await s.pem("rogue-key.pem")).split("\n")[1]);
  },
  { sanitizeOps: false, sanitizeResources: false },
);

secureTest(
  "kafka security: a plaintext client at the TLS listener gets a KafkaTlsError, not a hang",
  async (s) => {
    const consumer = new KafkaConsumer({
      ...secured(s),
      ...FAST,
      ssl: false,
      group: unique("sec-plain"),
      connectTimeoutMs: 30_000,
    });
    consumer.subscribe(["sluice-warmup"]);
    const { error, ms } = await failure(() => consumer.poll(100));
    await consumer.close().catch(() => {});
    console.log(`user sees (${Math.round(ms)} ms): ${error}`);
    assertInstanceOf(error, KafkaTlsError);
    assertStringIncludes(error.message, "speaks TLS");
    assert(ms < 10_000, `failed in ${ms} ms, long before the 30 s connect timeout`);
  },
  { sanitizeOps: false, sanitizeResources: false },
);

kafkaTest(
  "kafka security: a TLS client at a plaintext listener fails within connectTimeoutMs, saying so",
  async (brokers) => {
    const producer = new KafkaProducer({
      brokers,
      ssl: { ca: SECURE?.ca ?? "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n" },
      logLevel: "nothing",
      connectTimeoutMs: 3000,
      retry: FAST.retry,
    });
    const { error, ms } = await failure(() =>
      producer.produce(Topic.of("sluice-warmup"), { key: null, value: "x" })
    );
    await producer.close();
    console.log(`user sees (${Math.round(ms)} ms): ${error}`);
    assertInstanceOf(error, ProducerError); // a producer's failure, with its own type
    assertStringIncludes(error.message, "TLS");
    assert(ms < 8000, `failed in ${ms} ms (connectTimeoutMs 3000)`);
  },
  { sanitizeOps: false, sanitizeResources: false },
);

kafkaTest(
  "kafka security: SASL against a listener without SASL is a KafkaAuthenticationError, fast",
  async (brokers) => {
    const producer = new KafkaProducer({
      brokers,
      sasl: { mechanism: "SCRAM-SHA-256", username: SECURE_USER, password: WRONG_PASSWORD },
      logLevel: "nothing",
      connectTimeoutMs: 30_000,
      retry: FAST.retry,
    });
    const { error, ms } = await failure(() =>
      producer.produce(Topic.of("sluice-warmup"), { key: null, value: "x" })
    );
    await producer.close();
    console.log(`user sees (${Math.round(ms)} ms): ${error}`);
    assertInstanceOf(error, KafkaAuthenticationError);
    assertStringIncludes(error.message, "does not take SASL");
    assert(ms < 10_000, `failed in ${ms} ms, long before the 30 s connect timeout`);
    assertNoSecret(error, WRONG_PASSWORD);
  },
  { sanitizeOps: false, sanitizeResources: false },
);

kafkaTest(
  "kafka options: the kafkajs escape hatch reaches kafkajs (a socketFactory of one's own is used)",
  async (brokers) => {
    let sockets = 0;
    const producer = new KafkaProducer({
      brokers,
      logLevel: "nothing",
      kafkajs: {
        client: {
          requestTimeout: 20_000,
          socketFactory: ({ host, port, onConnect }) => {
            sockets++;
            return net.connect({ host, port }, onConnect);
          },
        },
      },
    });
    try {
      const sent = await producer.produce(Topic.of("sluice-warmup"), { key: null, value: "x" });
      assert(sent.offset >= 0);
      assert(sockets > 0, "kafkajs connected through the given socketFactory");
    } finally {
      await producer.close();
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);
