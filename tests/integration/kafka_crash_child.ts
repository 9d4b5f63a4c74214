/**
 * Child process of kafka_restart_test.ts (not a test): consumes `topic` in `group`,
 * commits about every 1000 messages, and after `stopAfter` messages holds back forever, printing
 * `PROCESSED {"<partition>": highest offset processed, ...}` once. The parent kills it
 * with SIGKILL: no clean close, no final commit, no LeaveGroup.
 */
import { MessageRejected } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import type { Message } from "../../types.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";
import { FAST } from "./kafka_helpers.ts";

const [brokers, topic, group, stopAfterArg] = Deno.args;
const stopAfter = Number(stopAfterArg);
const highest: Record<number, number> = {};
let processed = 0;
let reported = false;
const processor = new StreamProcessor<KafkaPayload>({
  // Small polls make small chunks, so commits happen about every 1000 messages.
  consumer: new KafkaConsumer({ brokers, group, ...FAST, maxPollMessages: 100 }),
  topics: [topic],
  commitPolicy: new CommitPolicy({ messages: 1000 }),
  handleSignals: false,
  factory: {
    createWithPartitions: (commit) =>
      new RunTask((m: Message<KafkaPayload>) => {
        if (processed >= stopAfter) {
          if (!reported) {
            reported = true;
            console.log(`PROCESSED ${JSON.stringify(highest)}`);
          }
          throw new MessageRejected();
        }
        processed++;
        const v = m.value as unknown as { partition: { index: number }; offset: number };
        highest[v.partition.index] = Math.max(highest[v.partition.index] ?? -1, v.offset);
        return null;
      }, new CommitOffsets(commit)),
  },
});
await processor.run();
