/**
 * Kafka backend against a real broker: the gap defence. A seek injected into kafkajs makes
 * it fetch from far ahead of the consumer's position (what a stale seek did before issue
 * 13 was fixed); the consumer must not hand out the batch that jumped, fetch again from
 * its position, and hand out every offset once, in order.
 */
import { assert, assertEquals } from "@std/assert";
// The kafkajs internals the backend itself patches (see backends/kafka/kafkajs_patch.ts).
// deno-lint-ignore no-import-prefix
import ConsumerGroupModule from "npm:kafkajs@2.2.4/src/consumer/consumerGroup.js";
import { KafkaConsumer } from "../../backends/kafka/mod.ts";
import {
  createTopic,
  deleteTopics,
  eventually,
  FAST,
  kafkaTest,
  produceNumbers,
  testKafka,
  unique,
} from "./kafka_helpers.ts";

// deno-lint-ignore no-explicit-any
const ConsumerGroup = ConsumerGroupModule as any;

kafkaTest(
  "kafka consumer: kafkajs fetching beyond the position (an injected seek) is re-fetched, never handed out",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-gap");
    const group = unique("g");
    const N = 6000;
    const JUMP_TO = 4500;
    await createTopic(kafka, topic, 1);
    const fetch = ConsumerGroup.prototype.fetch;
    let inject = false;
    let injected = 0;
    // deno-lint-ignore no-explicit-any
    ConsumerGroup.prototype.fetch = function (this: any, nodeId: unknown) {
      if (inject && this.groupId === group) {
        inject = false;
        injected++;
        this.seek({ topic, partition: 0, offset: String(JUMP_TO) });
      }
      return fetch.call(this, nodeId);
    };
    const consumer = new KafkaConsumer({
      brokers,
      group,
      ...FAST,
      maxBytesPerPartition: 16 * 1024,
      maxPollMessages: 200,
    });
    try {
      await produceNumbers(kafka, topic, N, 0, 200);
      consumer.subscribe([topic]);
      const offsets: number[] = [];
      const until = async (n: number) => {
        await eventually(
          async () => {
            for (const m of await consumer.poll(100)) offsets.push(m.offset);
            return offsets.length >= n || offsets.at(-1) === N - 1;
          },
          `${n} messages handed out`,
          30_000,
          0,
          () => `${offsets.length} so far, the last ${offsets.at(-1)}`,
        );
      };
      await until(400);
      assert(offsets.at(-1)! < JUMP_TO - 2000, "the jump lands well ahead of what is queued");
      inject = true;
      await until(N);
      assertEquals(injected, 1);
      const expected = Array.from({ length: N }, (_, i) => i);
      const firstWrong = offsets.findIndex((o, i) => o !== i);
      assertEquals(
        firstWrong,
        -1,
        `handed out ${offsets[firstWrong]} where ${firstWrong} was next`,
      );
      assertEquals(offsets, expected);
      assert(consumer.stats.gapsRefetched >= 1, JSON.stringify(consumer.stats));
      assertEquals(consumer.stats.gapsAccepted, 0);
    } finally {
      ConsumerGroup.prototype.fetch = fetch;
      await consumer.close();
      await deleteTopics(kafka, [topic]);
    }
  },
);
