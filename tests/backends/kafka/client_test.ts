/**
 * Connecting to Kafka (backends/kafka/_client.ts), without a broker: the consumer and the
 * producer fail the same way, each with its own error class, when nothing listens.
 */
import { assert, assertEquals, assertRejects, assertStringIncludes } from "@std/assert";
import { ConsumerError, ProducerError } from "../../../errors.ts";
import { Topic } from "../../../types.ts";
import { KafkaConsumer } from "../../../backends/kafka/consumer.ts";
import { KafkaProducer } from "../../../backends/kafka/producer.ts";

const NOTHING_LISTENS = "127.0.0.1:1";

async function consumerFailure(retries: number): Promise<ConsumerError> {
  const consumer = new KafkaConsumer({
    brokers: NOTHING_LISTENS,
    group: "sluice-client-test",
    connectTimeoutMs: 1500,
    retry: { retries, initialRetryTimeMs: 300 },
    logLevel: "nothing",
  });
  consumer.subscribe(["anything"]);
  try {
    return await assertRejects(() => consumer.poll(100), ConsumerError);
  } finally {
    await consumer.close();
  }
}

async function producerFailure(retries: number): Promise<ProducerError> {
  const producer = new KafkaProducer({
    brokers: NOTHING_LISTENS,
    connectTimeoutMs: 1500,
    retry: { retries, initialRetryTimeMs: 300 },
    logLevel: "nothing",
  });
  try {
    return await assertRejects(
      () => producer.produce(Topic.of("anything"), { key: null, value: "x" }),
      ProducerError,
    );
  } finally {
    await producer.close();
  }
}

Deno.test("kafka connect: brokers that keep refusing fail the consumer and the producer after connectTimeoutMs, in the same words", async () => {
  const [c, p] = await Promise.all([consumerFailure(50), producerFailure(50)]);
  for (const e of [c, p]) {
    assertStringIncludes(
      e.message,
      `could not connect to Kafka at ${NOTHING_LISTENS} within 1500 ms`,
    );
    assertStringIncludes(e.message, "(use 127.0.0.1, not localhost)");
  }
  assertEquals(p.message, c.message);
  assertEquals([c.name, p.name], ["ConsumerError", "ProducerError"]);
});

Deno.test("kafka connect: a refused connection kafkajs gives up on fails both clients in the same words", async () => {
  const [c, p] = await Promise.all([consumerFailure(0), producerFailure(0)]);
  for (const e of [c, p]) {
    assertStringIncludes(e.message, `could not connect to Kafka at ${NOTHING_LISTENS}`);
    assert(e.cause !== undefined, "the kafkajs error is kept as the cause");
  }
  assertEquals(p.message, c.message);
});
