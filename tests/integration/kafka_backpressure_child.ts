/**
 * Child process of kafka_backpressure_test.ts (not a test). It runs alone in its process
 * so that the process CPU it measures is its own: `deno test --parallel` runs test
 * modules as threads of one process.
 *
 * Consumes `topic` in `group` through a step that takes 100 messages and then holds back
 * for `holdMs`, measures the process CPU over the hold, lets everything through, shuts
 * down cleanly and prints `RESULT {...}`.
 */
import { MessageRejected } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import type { Message } from "../../types.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";
import { eventually, FAST, processCpuMs } from "./kafka_helpers.ts";

const [brokers, topic, group, nArg, holdArg] = Deno.args;
const N = Number(nArg);
const holdMs = Number(holdArg);
const decoder = new TextDecoder();
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
await eventually(() => processor.paused, "the processor to pause the consumer", 20_000);
const cpu0 = processCpuMs();
const t0 = performance.now();
await new Promise((r) => setTimeout(r, holdMs));
const wallMs = performance.now() - t0;
const cpuMs = processCpuMs() - cpu0;
const pausedAfterHold = processor.paused;
const processedDuringHold = processed;
open = true;
await eventually(() => processed === N, `all ${N} messages processed`, 30_000);
processor.signalShutdown();
await running;
console.log(
  "RESULT " +
    JSON.stringify({
      wallMs,
      cpuMs,
      pausedAfterHold,
      processedDuringHold,
      processed,
      duplicates: seen.reduce((n, c) => n + Math.max(0, c - 1), 0),
      joins: consumer.stats.joins,
      rebalances: consumer.stats.rebalances,
      revocations: processor.stats.revocations,
      pauses: processor.stats.pauses,
      resumes: processor.stats.resumes,
    }),
);
