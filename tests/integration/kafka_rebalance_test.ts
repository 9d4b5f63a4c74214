/**
 * Kafka backend against a real broker: three members of one group, one leaves and one
 * joins while messages flow. Every message is processed at least once, and since every
 * revoke commits the finished work before the partitions are released, no message is
 * processed twice.
 */
import { assert, assertEquals } from "@std/assert";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import type { Message, Partition } from "../../types.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";
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

const decoder = new TextDecoder();

/**
 * A consumer whose commits take 400 ms, so that onRevoke (close, join, commit) is slow:
 * had the member rejoined before its revoke committed, the next owner would start from
 * the previous commit and process the same messages again.
 */
class SlowCommitConsumer extends KafkaConsumer {
  override async commitOffsets(): Promise<Map<Partition, number>> {
    await new Promise((r) => setTimeout(r, 400));
    return await super.commitOffsets();
  }
}

kafkaTest(
  "kafka: members leaving and joining while messages flow: all processed, none twice",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-rebalance");
    const group = unique("g");
    const P = 6;
    const N = 20_000;
    await createTopic(kafka, topic, P);
    const counts = new Uint16Array(N);
    let distinct = 0;
    const members: {
      consumer: KafkaConsumer;
      processor: StreamProcessor<KafkaPayload>;
      running: Promise<void>;
    }[] = [];
    const start = (name: string) => {
      const consumer = new SlowCommitConsumer({ brokers, group, clientId: name, ...FAST });
      const processor = new StreamProcessor<KafkaPayload>({
        consumer,
        topics: [topic],
        // Commit rarely: a revoke that did not commit its finished work would show up as
        // duplicates at the next owner.
        commitPolicy: new CommitPolicy({ intervalMs: 5000 }),
        handleSignals: false,
        factory: {
          createWithPartitions: (commit) =>
            new RunTask((m: Message<KafkaPayload>) => {
              const v = Number(decoder.decode(m.payload.value as Uint8Array));
              if (counts[v]++ === 0) distinct++;
              return v;
            }, new CommitOffsets(commit)),
        },
      });
      const m = { consumer, processor, running: processor.run() };
      members.push(m);
      return m;
    };
    const stop = async (m: (typeof members)[number]) => {
      m.processor.signalShutdown();
      await m.running;
    };
    const covered = (ms: (typeof members)[number][]) => {
      const all = ms.flatMap((m) => m.consumer.assignment.map(String));
      return new Set(all).size === P && all.length === P &&
        ms.every((m) => m.consumer.assignment.length > 0);
    };

    const producer = testProducer(kafka);
    await producer.connect();
    let produced = 0;
    const produce = async (n: number) => {
      const messages = [];
      for (let i = 0; i < n && produced < N; i++, produced++) {
        messages.push({ key: `k${produced}`, value: String(produced) });
      }
      if (messages.length > 0) await producer.send({ topic, messages, acks: -1 });
    };
    try {
      const a = start("a");
      const b = start("b");
      const c = start("c");
      await eventually(() => covered([a, b, c]), "three members sharing all partitions", 30_000);
      await produce(5000);
      await eventually(() => distinct >= 2000, "processing under way", 20_000);
      // C leaves (clean shutdown) while messages keep coming.
      const leaving = stop(c);
      await produce(5000);
      await leaving;
      await eventually(
        () => covered([a, b]),
        "A and B sharing all partitions after C left",
        30_000,
      );
      await produce(2500);
      // D joins while messages keep coming.
      const d = start("d");
      await produce(2500);
      await eventually(() => covered([a, b, d]), "A, B and D sharing all partitions", 30_000);
      await produce(N - produced);
      assertEquals(produced, N);
      await eventually(() => distinct === N, `all ${N} messages processed`, 60_000);
      const ends = await endOffsets(kafka, topic);
      await Promise.all([a, b, d].map(stop));
      const committed = await committedOffsets(kafka, group, topic);
      assertEquals(committed, ends, "everything committed after the members closed");
      let duplicates = 0;
      for (const n of counts) if (n > 1) duplicates += n - 1;
      const stats = members.map((m) => ({
        ...m.consumer.stats,
        commitsSkipped: m.consumer.stats.commitsSkipped,
      }));
      console.log(`rebalance stats per member: ${JSON.stringify(stats)}; duplicates ${duplicates}`);
      assert(
        members.slice(0, 2).every((m) => m.consumer.stats.rebalances >= 2),
        "A and B went through both rebalances (revoke, then rejoin)",
      );
      assertEquals(duplicates, 0, "finished work was committed on every revoke before release");
    } finally {
      for (const m of members) {
        m.processor.signalShutdown();
        await m.running.catch(() => {});
      }
      await producer.disconnect();
      await deleteTopics(kafka, [topic]);
    }
  },
);
