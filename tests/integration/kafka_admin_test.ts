/**
 * `KafkaAdmin` on a real broker: idempotent topic creation (a different partition count is
 * refused), a group's committed offsets and lag per partition, topic deletion.
 */
import { assertEquals, assertRejects } from "@std/assert";
import { ConfigurationError } from "../../errors.ts";
import { Partition } from "../../types.ts";
import { KafkaAdmin, KafkaConsumer, KafkaProducer } from "../../backends/kafka/mod.ts";
import { eventually, FAST, kafkaTest, unique } from "./kafka_helpers.ts";

kafkaTest(
  "kafka admin: creates topics idempotently, reports a group's lag per partition, deletes",
  async (brokers) => {
    const admin = new KafkaAdmin({ brokers, logLevel: "nothing" });
    const topic = unique("admin");
    const group = unique("admin-group");
    const producer = new KafkaProducer({ brokers, logLevel: "nothing" });
    const consumer = new KafkaConsumer({ brokers, group, ...FAST });
    try {
      assertEquals(await admin.createTopics([{ name: topic, partitions: 2 }]), [topic]);
      assertEquals(await admin.createTopics([{ name: topic, partitions: 2 }]), [], "idempotent");
      await assertRejects(
        () => admin.createTopics([{ name: topic, partitions: 3 }]),
        ConfigurationError,
        "exists with 2 partitions, not 3",
      );
      assertEquals((await admin.listTopics()).includes(topic), true);

      for (let i = 0; i < 5; i++) {
        await producer.produce(Partition.of(topic, 0), { key: null, value: `a${i}` });
      }
      for (let i = 0; i < 3; i++) {
        await producer.produce(Partition.of(topic, 1), { key: null, value: `b${i}` });
      }
      // Nothing committed: the lag is every retained record.
      const before = await admin.describeGroup(group, [topic]);
      assertEquals(before.partitions.map((p) => [p.partition, p.committed, p.end, p.lag]), [
        [0, null, 5, 5],
        [1, null, 3, 3],
      ]);
      assertEquals(before.totalLag, 8);

      // Commit 4 of partition 0 and all of partition 1.
      consumer.subscribe([topic]);
      const seen = new Map<number, number>();
      await eventually(
        async () => {
          for (const v of await consumer.poll(100)) {
            seen.set(v.partition.index, (seen.get(v.partition.index) ?? 0) + 1);
          }
          return seen.get(0) === 5 && seen.get(1) === 3;
        },
        "all 8 records polled",
        30_000,
        0,
      );
      const p0 = Partition.of(topic, 0);
      const p1 = Partition.of(topic, 1);
      consumer.stageOffsets(new Map([[p0, 4], [p1, 3]]));
      await consumer.commitOffsets();
      const after = await admin.describeGroup(group, [topic]);
      assertEquals(after.partitions.map((p) => [p.partition, p.committed, p.end, p.lag]), [
        [0, 4, 5, 1],
        [1, 3, 3, 0],
      ]);
      assertEquals(after.totalLag, 1);
      // Without topics: the ones the group committed on.
      assertEquals((await admin.describeGroup(group)).totalLag, 1);
    } finally {
      await consumer.close();
      await producer.close();
      await admin.deleteTopics([topic]);
      await admin.deleteTopics([topic]); // gone already: nothing to do
      await eventually(async () => !(await admin.listTopics()).includes(topic), "deleted", 10_000);
      await admin.close();
    }
  },
  { sanitizeOps: false, sanitizeResources: false },
);
