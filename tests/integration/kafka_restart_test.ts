/**
 * Kafka backend against a real broker: a consumer killed without a clean close (no final
 * commit, no LeaveGroup) is replaced by another one, which resumes exactly from the last
 * committed offsets.
 */
import { assert, assertEquals } from "@std/assert";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import type { Message } from "../../types.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";
import {
  committedOffsets,
  committedToEnd,
  createTopic,
  deleteTopics,
  endOffsets,
  eventually,
  FAST,
  kafkaTest,
  produceNumbers,
  testKafka,
  unique,
} from "./kafka_helpers.ts";

kafkaTest(
  "kafka: a consumer killed without closing is replaced; the new one resumes from the last commit",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-restart");
    const group = unique("g");
    const N = 4000;
    await createTopic(kafka, topic, 2);
    let child: Deno.ChildProcess | undefined;
    try {
      await produceNumbers(kafka, topic, N);
      const ends = await endOffsets(kafka, topic);
      child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--no-check",
          new URL("./kafka_crash_child.ts", import.meta.url).pathname,
          brokers,
          topic,
          group,
          "1450",
        ],
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      // Wait for the child to report what it processed before holding back.
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      const deadline = performance.now() + 60_000;
      while (!text.includes("\n")) {
        assert(performance.now() < deadline, "the child reported within 60 s");
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      const match = /PROCESSED (\{.*\})/.exec(text);
      assert(match, `child output: ${text}`);
      const childHighest = new Map(
        Object.entries(JSON.parse(match[1]) as Record<string, number>).map((
          [p, o],
        ) => [Number(p), o]),
      );
      // Its commits (every 1000 messages) have landed when the committed offsets stop moving.
      let last = "";
      await eventually(
        async () => {
          const now = JSON.stringify([...(await committedOffsets(kafka, group, topic))]);
          const stable = now === last;
          last = now;
          return stable;
        },
        "the child's commits to settle",
        10_000,
        500,
      );
      child.kill("SIGKILL");
      await child.status;
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      child = undefined;
      const committed = await committedOffsets(kafka, group, topic);
      let uncommittedWork = 0;
      for (const [p, o] of childHighest) {
        uncommittedWork += o + 1 - Math.max(0, committed.get(p) ?? 0);
      }
      assert(
        uncommittedWork > 0,
        `the child died with processed but uncommitted work: processed ${
          JSON.stringify([...childHighest])
        } committed ${JSON.stringify([...committed])}`,
      );

      const firstSeen = new Map<number, number>();
      const seen = new Set<string>();
      const consumer = new KafkaConsumer({ brokers, group, ...FAST });
      const processor = new StreamProcessor<KafkaPayload>({
        consumer,
        topics: [topic],
        commitPolicy: new CommitPolicy({ intervalMs: 200 }),
        handleSignals: false,
        factory: {
          createWithPartitions: (commit) =>
            new RunTask((m: Message<KafkaPayload>) => {
              const v = m.value as unknown as { partition: { index: number }; offset: number };
              if (!firstSeen.has(v.partition.index)) firstSeen.set(v.partition.index, v.offset);
              seen.add(`${v.partition.index}@${v.offset}`);
              return null;
            }, new CommitOffsets(commit)),
        },
      });
      const running = processor.run();
      const expected = [...ends].reduce(
        (n, [p, end]) => n + end - Math.max(0, committed.get(p) ?? 0),
        0,
      );
      try {
        // The dead member is only removed after its session times out (6 s).
        await eventually(
          () => seen.size === expected,
          `the ${expected} messages after the last commit`,
          40_000,
        );
        await committedToEnd(kafka, group, topic, ends, 10_000, 200);
      } finally {
        processor.signalShutdown();
        await running;
      }
      for (const [p, end] of ends) {
        const from = Math.max(0, committed.get(p) ?? 0);
        if (from < end) {
          assertEquals(firstSeen.get(p), from, `partition ${p} resumed from the last commit`);
        }
      }
    } finally {
      if (child) {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
        await child.status;
        await child.stdout.cancel().catch(() => {});
      }
      await deleteTopics(kafka, [topic]);
    }
  },
);
