/**
 * Kafka backend against a real broker: a pipeline that holds back for twice the session
 * timeout keeps its group membership (no rebalance), loses nothing, and does not spin.
 *
 * The consumer runs in a child process (`kafka_backpressure_child.ts`) so that the CPU it
 * measures is its own: `deno test --parallel` runs test modules as threads of one process.
 */
import { assert, assertEquals } from "@std/assert";
import {
  committedToEnd,
  createTopic,
  deleteTopics,
  endOffsets,
  FAST,
  kafkaTest,
  produceNumbers,
  testKafka,
  unique,
} from "./kafka_helpers.ts";

kafkaTest(
  "kafka: a step holding back for 2x the session timeout keeps the member in its group, loses nothing and uses almost no CPU",
  async (brokers) => {
    const kafka = testKafka(brokers);
    const topic = unique("sluice-bp");
    const group = unique("g");
    const N = 3000;
    const holdMs = 2 * FAST.sessionTimeoutMs;
    await createTopic(kafka, topic, 3);
    try {
      await produceNumbers(kafka, topic, N);
      const ends = await endOffsets(kafka, topic);
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--no-check",
          new URL("./kafka_backpressure_child.ts", import.meta.url).pathname,
          brokers,
          topic,
          group,
          String(N),
          String(holdMs),
        ],
        stdout: "piped",
        stderr: "inherit",
        signal: AbortSignal.timeout(90_000),
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      const match = /RESULT (\{.*\})/.exec(text);
      assert(out.success && match, `child failed (exit ${out.code}): ${text}`);
      const r = JSON.parse(match[1]);
      const share = r.cpuMs / r.wallMs;
      console.log(
        `held ${Math.round(r.wallMs)} ms paused; consumer process CPU ${r.cpuMs} ms ` +
          `(${(share * 100).toFixed(2)}% of a core)`,
      );
      assert(r.pausedAfterHold, "still paused after the hold");
      assertEquals(r.processedDuringHold, 100, "nothing was processed while held");
      assert(
        share < 0.1,
        `a backpressured consumer must not spin: ${r.cpuMs} ms CPU in ${Math.round(r.wallMs)} ms`,
      );
      assertEquals(r.processed, N, "nothing lost");
      assertEquals(r.duplicates, 0, "every message processed exactly once");
      assertEquals(r.joins, 1, "the member joined once: no rebalance during the hold");
      assertEquals(r.rebalances, 0);
      assertEquals(r.revocations, 1, "only the final revoke at shutdown");
      assert(r.pauses >= 1 && r.resumes >= 1);
      await committedToEnd(kafka, group, topic, ends, 10_000, 200);
    } finally {
      await deleteTopics(kafka, [topic]);
    }
  },
);
