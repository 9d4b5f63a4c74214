/**
 * Each Kafka backend (`kafka_backends.ts`) against a broker that restarts mid-run: the
 * consumer reconnects and continues without losing a message, and a commit attempted while
 * the broker is down fails without stopping the processor.
 *
 * The shared development broker cannot be restarted under other tests, so this test
 * starts a private single-node broker of its own (`private_broker.ts`: same jars,
 * `.kafka/lib`, from `deno task kafka:up`, free ports, a temporary data directory), stops
 * it with SIGKILL while the consumer runs, and starts it again on the same data. It needs `java`
 * and the jars; without them it is skipped with a warning (and fails under CI).
 */
import { assert, assertEquals } from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import type { Message } from "../../types.ts";
import type { KafkaPayload } from "../../backends/kafka/mod.ts";
import { BACKENDS } from "./kafka_backends.ts";
import {
  committedOffsets,
  createTopic,
  endOffsets,
  eventually,
  FAST,
  produceNumbers,
  testKafka,
  unique,
} from "./kafka_helpers.ts";
import { PrivateBroker, privateBrokerMissing, privateBrokerTest } from "./private_broker.ts";

const missing = await privateBrokerMissing();
for (const b of BACKENDS) {
  privateBrokerTest(
    `${b.name}: the broker restarts mid-run; the consumer reconnects and continues without loss`,
    async () => {
      const broker = new PrivateBroker();
      await broker.format();
      await broker.start();
      const brokers = broker.address;
      const kafka = testKafka(brokers);
      const topic = unique(`sluice-${b.name}-broker-restart`);
      const group = unique("g");
      const N1 = 3000;
      const N2 = 3000;
      let running: Promise<void> | undefined;
      let processor: StreamProcessor<KafkaPayload> | undefined;
      try {
        // Warm up the group coordinator (creates __consumer_offsets), then the topic.
        await eventually(
          async () => {
            try {
              await committedOffsets(kafka, "warm-up", "none").catch(() => new Map());
              await createTopic(kafka, topic, 2);
              return true;
            } catch {
              return false;
            }
          },
          "the private broker to accept a topic",
          60_000,
          500,
        );
        await produceNumbers(kafka, topic, N1);
        const decoder = new TextDecoder();
        const seen = new Uint8Array(N1 + N2);
        let distinct = 0;
        const consumer = b.consumer({
          brokers,
          group,
          ...FAST,
          retry: { initialRetryTimeMs: 200, retries: 5, maxRetryTimeMs: 1000 },
        });
        // The commit policy runs on a manual clock: nothing is committed until the test moves
        // it, so the test decides that a commit is attempted while the broker is down.
        const clock = new ManualClock();
        processor = new StreamProcessor<KafkaPayload>({
          consumer,
          topics: [topic],
          clock,
          commitPolicy: new CommitPolicy({ intervalMs: 200 }),
          handleSignals: false,
          factory: {
            createWithPartitions: (commit) =>
              new RunTask((m: Message<KafkaPayload>) => {
                const v = Number(decoder.decode(m.payload.value as Uint8Array));
                if (seen[v]++ === 0) distinct++;
                return v;
              }, new CommitOffsets(commit)),
          },
        });
        running = processor.run();
        // Fail at once (not at the deadline) if the processor stops, and say where it was.
        let stopped: string | undefined;
        running.then(
          () => stopped = "run() returned",
          (e) => stopped = `run() failed: ${e instanceof Error ? e.stack : e}`,
        );
        const p = processor;
        const state = () =>
          `${distinct} of ${N1 + N2} distinct messages seen; consumer ${
            JSON.stringify(consumer.stats)
          }; processor ${JSON.stringify(p.stats)}`;
        const until = (condition: () => boolean) => () => {
          if (stopped) throw new Error(`${stopped}; ${state()}`);
          return condition();
        };
        await eventually(until(() => distinct === N1), "the first messages", 60_000, 50, state);
        await broker.kill();
        // The commit due now finds no broker: it must fail without stopping the processor
        // (the offsets are kept for the next commit).
        await clock.advance(1000);
        await eventually(
          until(() => consumer.stats.commitsFailed > 0),
          "a commit attempted while the broker is down",
          60_000,
          50,
          state,
        );
        await broker.start();
        await produceNumbers(kafka, topic, N2, N1);
        await eventually(
          until(() => distinct === N1 + N2),
          "every message processed after the restart",
          120_000,
          50,
          state,
        );
        // Commits resume (the clock moves on) and cover everything, the offsets of the
        // failed commit included.
        const ends = await endOffsets(kafka, topic);
        await eventually(
          async () => {
            await clock.advance(250);
            const committed = await committedOffsets(kafka, group, topic);
            return [...ends].every(([i, end]) => committed.get(i) === end);
          },
          "commits to reach the end offsets after the restart",
          30_000,
          300,
          state,
        );
        assert(processor.stats.commitsIncomplete >= 1, state());
        processor.signalShutdown();
        await running;
        running = undefined;
        assertEquals(distinct, N1 + N2, "nothing lost");
        assert(seen.every((n) => n >= 1));
      } finally {
        processor?.signalShutdown();
        await running?.catch(() => {});
        await broker.remove();
      }
    },
    missing,
  );
}
