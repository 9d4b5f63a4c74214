/**
 * Child process of kafka_exit_test.ts: a StreamProcessor on a KafkaConsumer that reads
 * `topic` and counts. Prints `PROCESSED <n>` as it goes, `RETURNED` when run() returned
 * (after SIGTERM), or `FAILED <error name>` when it failed; the parent measures how long
 * the process takes to exit after that. Its stderr is what a user would see.
 *
 * Usage: kafka_exit_child.ts <brokers> <topic> <group> <connectTimeoutMs>
 */
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { KafkaConsumer, type KafkaPayload } from "../../backends/kafka/mod.ts";

const [brokers, topic, group, connectTimeoutMs] = Deno.args;
const consumer = new KafkaConsumer({
  brokers,
  group,
  connectTimeoutMs: Number(connectTimeoutMs),
  sessionTimeoutMs: 6000,
  heartbeatIntervalMs: 500,
  rebalanceTimeoutMs: 10_000,
  maxWaitTimeMs: 100,
});
let processed = 0;
let reported = 0;
const processor = new StreamProcessor<KafkaPayload>({
  consumer,
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 200 }),
  factory: {
    createWithPartitions: (commit) =>
      new RunTask(() => {
        processed++;
        if (processed - reported >= 100) {
          reported = processed;
          console.log(`PROCESSED ${processed}`);
        }
      }, new CommitOffsets(commit)),
  },
});
try {
  await processor.run();
  console.log(`RETURNED ${processed}`);
} catch (e) {
  console.log(`FAILED ${(e as Error).name}`);
}
