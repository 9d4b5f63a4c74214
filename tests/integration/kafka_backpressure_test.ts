/**
 * Kafka backend against a real broker: a pipeline that holds back for twice the session
 * timeout keeps its group membership (no rebalance), loses nothing, and does not spin.
 */
import { assert, assertEquals } from "@std/assert";
import {
  CommitOffsets,
  CommitPolicy,
  type Message,
  MessageRejected,
  RunTask,
  StreamProcessor,
} from "../../mod.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";
import {
  committedOffsets,
  createTopic,
  deleteTopics,
  endOffsets,
  eventually,
  FAST,
  kafkaTest,
  processCpuMs,
  produceNumbers,
  testKafka,
  unique,
} from "./kafka_helpers.ts";

const decoder = new TextDecoder();

kafkaTest(
  "kafka: a step holding back for 2x the session timeout keeps the member in its group, loses nothing and uses almost no CPU",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-bp");
    const group = unique("g");
    const N = 3000;
    await createTopic(kafka, topic, 3);
    try {
      await produceNumbers(kafka, topic, N);
      const ends = await endOffsets(kafka, topic);
      const seen = new Uint8Array(N);
      let processed = 0;
      let open = false;
      const consumer = new KafkaConsumer({ brokers, group, ...FAST });
      const processor = new StreamProcessor<KafkaPayload>({
        consumer,
        topics: [topic],
        commitPolicy: new CommitPolicy({ intervalMs: 200 }),
        pauseAfterMs: 500,
        handleSignals: false,
        factory: {
          createWithPartitions: (commit) =>
            new RunTask(
              (m: Message<KafkaPayload>) => {
                // The slow step: it takes the first 100 messages, then holds back until opened.
                if (!open && processed >= 100) throw new MessageRejected();
                const v = Number(decoder.decode(m.payload.value as Uint8Array));
                if (seen[v] === 0) processed++;
                seen[v]++;
                return v;
              },
              new CommitOffsets(commit),
              { highWaterMark: 50 },
            ),
        },
      });
      const running = processor.run();
      try {
        await eventually(() => processor.paused, "the processor to pause the consumer", 20_000);
        const holdMs = 2 * FAST.sessionTimeoutMs;
        const cpu0 = processCpuMs();
        const t0 = performance.now();
        await new Promise((r) => setTimeout(r, holdMs));
        const wallMs = performance.now() - t0;
        const cpuMs = processCpuMs() - cpu0;
        assert(processor.paused, "still paused after the hold");
        assertEquals(processed, 100, "nothing was processed while held");
        const share = cpuMs / wallMs;
        console.log(
          `held ${Math.round(wallMs)} ms paused; process CPU ${cpuMs} ms (${
            (share * 100).toFixed(2)
          }% of a core)`,
        );
        assert(
          share < 0.1,
          `a backpressured consumer must not spin: ${cpuMs} ms CPU in ${Math.round(wallMs)} ms`,
        );
        open = true;
        await eventually(() => processed === N, `all ${N} messages processed`, 30_000);
        await eventually(
          async () => {
            const c = await committedOffsets(kafka, group, topic);
            return [...ends].every(([p, end]) => c.get(p) === end);
          },
          "committed offsets equal to the end offsets",
          10_000,
          200,
        );
      } finally {
        processor.signalShutdown();
        await running;
      }
      assert(seen.every((n) => n === 1), "every message processed exactly once");
      assertEquals(consumer.stats.joins, 1, "the member joined once: no rebalance during the hold");
      assertEquals(consumer.stats.rebalances, 0);
      assertEquals(processor.stats.revocations, 1, "only the final revoke at shutdown");
      assert(processor.stats.pauses >= 1 && processor.stats.resumes >= 1);
    } finally {
      await deleteTopics(kafka, [topic]);
    }
  },
);
