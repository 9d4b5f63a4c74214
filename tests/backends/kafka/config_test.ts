/**
 * Kafka backend configuration: bad options fail at construction with a ConfigurationError
 * naming the option (no broker needed).
 */
import { assert, assertEquals, assertThrows } from "@std/assert";
import { ConfigurationError } from "../../../errors.ts";
import { resolveConsumerOptions } from "../../../backends/kafka/config.ts";
import { kafkajsPatched } from "../../../backends/kafka/kafkajs_patch.ts";
import {
  KafkaConsumer,
  type KafkaConsumerOptions,
  KafkaProducer,
} from "../../../backends/kafka/mod.ts";

const ok: KafkaConsumerOptions = { brokers: "127.0.0.1:9092", group: "g" };

function rejects(options: unknown, mentions: string): void {
  const e = assertThrows(
    () => new KafkaConsumer(options as KafkaConsumerOptions),
    ConfigurationError,
  );
  assert(e.message.includes(mentions), `"${e.message}" should mention ${mentions}`);
}

Deno.test("kafka config: valid options construct without connecting", () => {
  new KafkaConsumer(ok);
  new KafkaConsumer({
    ...ok,
    brokers: ["127.0.0.1:9092", "10.0.0.2:9093"],
    initialOffset: "latest",
  });
  new KafkaConsumer({ ...ok, brokers: "127.0.0.1:9092, 127.0.0.1:9093" });
  new KafkaProducer({ brokers: "127.0.0.1:9092", acks: 1 });
  new KafkaProducer({ brokers: "127.0.0.1:9092", idempotent: true });
});

Deno.test("kafka config: each invalid consumer option is named in a ConfigurationError", () => {
  rejects(undefined, "options");
  rejects({ group: "g" }, "brokers");
  rejects({ ...ok, brokers: "" }, "broker");
  rejects({ ...ok, brokers: "localhost" }, "host:port");
  rejects({ ...ok, brokers: "127.0.0.1:99999" }, "1..65535");
  rejects({ ...ok, brokers: [] }, "brokers is empty");
  rejects({ ...ok, brokers: 9092 }, "brokers must be");
  rejects({ ...ok, group: "" }, "group");
  rejects({ ...ok, group: undefined }, "group");
  rejects({ ...ok, initialOffset: "beginning" }, "initialOffset");
  rejects({ ...ok, sessionTimeoutMs: 0 }, "sessionTimeoutMs");
  rejects({ ...ok, sessionTimeoutMs: 6000, heartbeatIntervalMs: 6000 }, "heartbeatIntervalMs");
  rejects({ ...ok, rebalanceTimeoutMs: -1 }, "rebalanceTimeoutMs");
  rejects({ ...ok, maxWaitTimeMs: 1.5 }, "maxWaitTimeMs");
  rejects({ ...ok, maxBytes: 1000, maxBytesPerPartition: 2000 }, "maxBytesPerPartition");
  rejects({ ...ok, maxPollMessages: 0 }, "maxPollMessages");
  rejects({ ...ok, connectTimeoutMs: NaN }, "connectTimeoutMs");
  rejects({ ...ok, retry: { retries: -1 } }, "retry.retries");
  rejects({ ...ok, logLevel: "verbose" }, "logLevel");
  rejects({ ...ok, clientId: "" }, "clientId");
});

Deno.test("kafka config: invalid producer options are named in a ConfigurationError", () => {
  const e = assertThrows(
    () => new KafkaProducer({ brokers: "127.0.0.1:9092", acks: 2 as 1 }),
    ConfigurationError,
  );
  assert(e.message.includes("acks"));
  assertThrows(() => new KafkaProducer({ brokers: "nope" }), ConfigurationError, "host:port");
  assertThrows(
    () => new KafkaProducer({ brokers: "127.0.0.1:9092", maxBatchMessages: 0 }),
    ConfigurationError,
    "maxBatchMessages",
  );
  assertThrows(
    () => new KafkaProducer({ brokers: "127.0.0.1:9092", idempotent: true, acks: 1 }),
    ConfigurationError,
    "idempotent needs acks: -1",
  );
  assertThrows(
    () => new KafkaProducer({ brokers: "127.0.0.1:9092", idempotent: "yes" as unknown as boolean }),
    ConfigurationError,
    "idempotent must be true or false",
  );
});

Deno.test("kafka: the kafkajs idle-timer fix is applied when the backend is imported", () => {
  // Without it every broker connection wakes the process ~1000 times a second.
  assert(kafkajsPatched());
});

const KiB = 1024;
const fetchSizes = (o: Partial<KafkaConsumerOptions>) => {
  const r = resolveConsumerOptions({ ...ok, ...o });
  return [r.maxBytes, r.maxBytesPerPartition];
};

Deno.test("kafka config: fetches default to 2 MiB responses of at most 512 KiB per partition", () => {
  assertEquals(fetchSizes({}), [2048 * KiB, 512 * KiB]);
});

Deno.test("kafka config: either fetch size given alone raises or caps the other's default", () => {
  assertEquals(fetchSizes({ maxBytesPerPartition: 4096 * KiB }), [4096 * KiB, 4096 * KiB]);
  assertEquals(fetchSizes({ maxBytesPerPartition: 64 * KiB }), [2048 * KiB, 64 * KiB]);
  assertEquals(fetchSizes({ maxBytes: 128 * KiB }), [128 * KiB, 128 * KiB]);
  assertEquals(fetchSizes({ maxBytes: 10240 * KiB }), [10240 * KiB, 512 * KiB]);
  assertEquals(
    fetchSizes({ maxBytes: 10240 * KiB, maxBytesPerPartition: 1024 * KiB }),
    [10240 * KiB, 1024 * KiB],
  );
  assertThrows(() => fetchSizes({ maxBytes: 1000, maxBytesPerPartition: 2000 }));
  assertThrows(() => fetchSizes({ maxBytesPerPartition: -1 }));
});
