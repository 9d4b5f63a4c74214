/**
 * Kafka backend options without a broker: unknown keys (kafkajs habits) are a
 * ConfigurationError listing the valid ones with "did you mean"; the `kafkajs` escape
 * hatch; TLS/SASL validation; secrets never printed (options, clients, errors).
 */
import { assert, assertEquals, assertStringIncludes, assertThrows } from "@std/assert";
import { ConfigurationError } from "../../../errors.ts";
import {
  KafkaAdmin,
  KafkaConsumer,
  type KafkaConsumerOptions,
  KafkaProducer,
  type KafkaProducerOptions,
} from "../../../backends/kafka/mod.ts";
import { resolveConsumerOptions, resolveProducerOptions } from "../../../backends/kafka/config.ts";
import { classifyConnectError } from "../../../backends/kafka/_client.ts";

const ok: KafkaConsumerOptions = { brokers: "127.0.0.1:9092", group: "g" };
const PASSWORD = "hunter2-very-secret";
const KEY = "-----BEGIN PRIVATE KEY-----\nTOPSECRETKEYMATERIAL\n-----END PRIVATE KEY-----\n";
const CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

function consumerError(options: Record<string, unknown>): string {
  return assertThrows(
    () => new KafkaConsumer({ ...ok, ...options } as unknown as KafkaConsumerOptions),
    ConfigurationError,
  ).message;
}

function producerError(options: Record<string, unknown>): string {
  return assertThrows(
    () =>
      new KafkaProducer(
        { brokers: "127.0.0.1:9092", ...options } as unknown as KafkaProducerOptions,
      ),
    ConfigurationError,
  ).message;
}

Deno.test("kafka options: kafkajs names are refused with what to write instead", () => {
  const cases: [Record<string, unknown>, string][] = [
    [{ groupId: "g" }, '"groupId" (did you mean group?)'],
    [{ fromBeginning: true }, 'initialOffset: "earliest"'],
    [{ sessionTimeout: 10_000 }, "did you mean sessionTimeoutMs?"],
    [{ heartbeatInterval: 1000 }, "did you mean heartbeatIntervalMs?"],
    [{ rebalanceTimeout: 1000 }, "did you mean rebalanceTimeoutMs?"],
    [{ maxWaitTimeInMs: 100 }, "did you mean maxWaitTimeMs?"],
    [{ connectionTimeout: 1000 }, "did you mean connectTimeoutMs?"],
    [{ clientID: "x" }, "did you mean clientId?"],
    [{ clientid: "x" }, "did you mean clientId?"],
    [{ broker: "127.0.0.1:9092" }, "did you mean brokers?"],
    [{ "group.id": "g" }, "did you mean group?"],
    [{ maxBytesPerPartiton: 1 }, "did you mean maxBytesPerPartition?"], // a typo
    [{ sesionTimeoutMs: 1 }, "did you mean sessionTimeoutMs?"], // a typo
    [{ autoCommit: true }, "CommitOffsets"],
    [{ topics: ["t"] }, "StreamProcessor's topics"],
    [{ requestTimeout: 1000 }, "kafkajs: { client: { requestTimeout } }"],
    [{ rackId: "a" }, "kafkajs: { consumer: { rackId } }"],
  ];
  for (const [options, expected] of cases) {
    const message = consumerError(options);
    assertStringIncludes(message, expected);
    assertStringIncludes(message, "Valid options: brokers, clientId,");
    assertStringIncludes(message, "initialOffset");
  }
  // Several at once are all named.
  const both = consumerError({ groupId: "g", fromBeginning: true });
  assertStringIncludes(both, '"groupId"');
  assertStringIncludes(both, '"fromBeginning"');
  // Producer-side names.
  assertStringIncludes(producerError({ transactionalId: "t" }), "does not do transactions");
  assertStringIncludes(producerError({ timeout: 1 }), "did you mean timeoutMs?");
  assertStringIncludes(producerError({ groupId: "g" }), "consumers have groups");
  assertStringIncludes(producerError({ idempotence: true }), "did you mean idempotent?");
  // The admin takes the connection options only.
  assertStringIncludes(
    assertThrows(
      () => new KafkaAdmin({ brokers: "127.0.0.1:9092", group: "g" } as never),
      ConfigurationError,
    ).message,
    '"group"',
  );
});

Deno.test("kafka options: brokers may be a string, a comma-separated list or an array", () => {
  assertEquals(resolveConsumerOptions({ ...ok, brokers: "a:1,b:2" }).brokers, ["a:1", "b:2"]);
  assertEquals(resolveConsumerOptions({ ...ok, brokers: ["a:1"] }).brokers, ["a:1"]);
});

Deno.test("kafka options: the kafkajs escape hatch passes unmodelled options, refuses owned ones", () => {
  const r = resolveConsumerOptions({
    ...ok,
    kafkajs: { client: { requestTimeout: 60_000 }, consumer: { rackId: "eu-1a" } },
  });
  assertEquals(r.kafkajs.client, { requestTimeout: 60_000 });
  assertEquals(r.kafkajs.consumer, { rackId: "eu-1a" });
  const p = resolveProducerOptions({
    brokers: "127.0.0.1:9092",
    kafkajs: { producer: { metadataMaxAge: 1000 } },
  });
  assertEquals(p.kafkajs.producer, { metadataMaxAge: 1000 });
  assertStringIncludes(
    consumerError({ kafkajs: { consumer: { groupId: "x" } } }),
    "kafkajs.consumer may not set groupId: Sluice sets it; use group instead",
  );
  assertStringIncludes(
    consumerError({ kafkajs: { client: { ssl: true } } }),
    "use ssl instead",
  );
  assertStringIncludes(
    consumerError({ kafkajs: { producer: {} } }),
    'unknown kafkajs section "producer"',
  );
  assertStringIncludes(
    producerError({ kafkajs: { producer: { transactionalId: "t" } } }),
    "does not do transactions",
  );
});

Deno.test("kafka options: TLS and SASL are validated with messages that say what to do", () => {
  assertStringIncludes(consumerError({ ssl: { ca: "/etc/ssl/ca.pem" } }), "not a file path");
  assertStringIncludes(consumerError({ ssl: { cert: CERT } }), "ssl.cert and ssl.key go together");
  assertStringIncludes(
    consumerError({ ssl: { verify: false } }),
    "did you mean rejectUnauthorized?",
  );
  assertStringIncludes(consumerError({ ssl: "yes" }), "ssl must be true");
  assertStringIncludes(
    consumerError({ sasl: { mechanism: "GSSAPI", username: "u", password: PASSWORD } }),
    "sasl.mechanism must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER",
  );
  assertStringIncludes(
    consumerError({ sasl: { mechanism: "plain", user: "u", password: PASSWORD } }),
    "did you mean username?",
  );
  assertStringIncludes(
    consumerError({ sasl: { mechanism: "oauthbearer", token: "t" } }),
    "did you mean oauthBearerProvider?",
  );
  assertStringIncludes(
    consumerError({ sasl: { mechanism: "scram-sha-256", username: "u", password: "" } }),
    "sasl.password must be a non-empty string",
  );
  // Kafka's and kafkajs's spellings of the mechanism are both fine.
  for (const mechanism of ["SCRAM-SHA-512", "scram-sha-512"] as const) {
    const r = resolveConsumerOptions({
      ...ok,
      sasl: { mechanism, username: "u", password: PASSWORD },
    });
    assertEquals(r.sasl?.mechanism, "scram-sha-512");
  }
});

Deno.test("kafka options: passwords and keys never show in options, clients or errors", () => {
  const options: KafkaConsumerOptions = {
    ...ok,
    ssl: { ca: CERT, cert: CERT, key: KEY, passphrase: PASSWORD },
    sasl: { mechanism: "SCRAM-SHA-512", username: "svc", password: PASSWORD },
  };
  const resolved = resolveConsumerOptions(options);
  const consumer = new KafkaConsumer(options);
  const producer = new KafkaProducer({ brokers: "127.0.0.1:9092", sasl: options.sasl });
  const views = [
    JSON.stringify(resolved),
    String(resolved.sasl && "password" in resolved.sasl ? resolved.sasl.password : ""),
    `${JSON.stringify(resolved.ssl)}`,
    Deno.inspect(resolved, { depth: 10 }),
    Deno.inspect(consumer, { depth: 10 }),
    Deno.inspect(producer, { depth: 10 }),
    JSON.stringify(consumer),
  ];
  for (const view of views) {
    assert(!view.includes(PASSWORD), `password in ${view}`);
    assert(!view.includes("TOPSECRETKEYMATERIAL"), `key in ${view}`);
  }
  assertStringIncludes(Deno.inspect(resolved, { depth: 10 }), "[redacted]");
  // Configuration errors about secrets do not echo them.
  const bad = consumerError({ sasl: { mechanism: "plain", username: "u", password: 42 } });
  assertStringIncludes(bad, "got number");
  const badKey = consumerError({ ssl: { cert: CERT, key: "secret-not-pem-" + PASSWORD } });
  assert(!badKey.includes(PASSWORD), badKey);
  // Connect errors carry the user, never the password.
  const e = classifyConnectError(
    Object.assign(new Error("SASL SCRAM SHA512 authentication failed: invalid credentials"), {
      name: "KafkaJSSASLAuthenticationError",
    }),
    "127.0.0.1:9093",
    resolved.sasl,
  );
  for (const view of [String(e), JSON.stringify(e), Deno.inspect(e, { depth: 10 })]) {
    assert(!view.includes(PASSWORD), view);
  }
  assertStringIncludes(e.message, 'SASL SCRAM-SHA-512 authentication as user "svc"');
});
