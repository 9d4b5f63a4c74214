/**
 * Over each Kafka backend's consumer (`kafka_backends.ts`): a fully backpressured processor
 * with a back-off far longer than the test (`pausedBackoffMs` 60 s) still lets a rebalance
 * through within seconds, because the consumer's `onGroupEvent` wakes it (kafkajs keeps
 * heartbeating while every partition is paused, which is how the rebalance is found), and
 * stops at once when asked to.
 */
import { assert } from "@std/assert";
import { StreamProcessor } from "../../processing/processor.ts";
import { Gate } from "../_support/helpers.ts";
import type { KafkaPayload } from "../../backends/kafka/mod.ts";
import { BACKENDS } from "./kafka_backends.ts";
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

for (const b of BACKENDS) {
  kafkaTest(
    `${b.name}: a paused processor with a 60 s back-off lets a rebalance through within seconds, and stops at once`,
    async (brokers) => {
      const kafka = testKafka(brokers);
      const topic = unique(`sluice-${b.name}-paused-wakeup`);
      const group = unique("g");
      await createTopic(kafka, topic, 2);
      const other = b.consumer({ brokers, group, ...FAST });
      let polling = true;
      let stop = () => Promise.resolve();
      try {
        await produceNumbers(kafka, topic, 200);
        const consumer = b.consumer({ brokers, group, ...FAST });
        const processor = new StreamProcessor<KafkaPayload>({
          consumer,
          topics: [topic],
          handleSignals: false,
          metrics: false,
          pauseAfterMs: 100,
          pausedBackoffMs: 60_000,
          factory: { createWithPartitions: () => new Gate(false) },
        });
        const running = processor.run();
        stop = () => (processor.signalShutdown(), running.catch(() => {}));
        await eventually(() => processor.paused, "the processor to pause", 30_000);
        // Its back-off doubles from 1 ms: after 7 s paused it sleeps seconds at a time.
        await new Promise((r) => setTimeout(r, 7_000));
        other.subscribe([topic]);
        const otherPolls = (async () => {
          while (polling) await other.poll(100);
        })();
        // From the rebalance becoming pending for this member to its revoke running.
        let pendingAt: number | undefined;
        await eventually(
          () => {
            if (pendingAt === undefined && consumer.rebalancePending?.()) {
              pendingAt = performance.now();
            }
            return processor.stats.revocations >= 1;
          },
          "the paused processor to let the rebalance through",
          30_000,
          5,
        );
        const delayMs = performance.now() - (pendingAt ?? performance.now());
        assert(delayMs < 1_500, `revoke ran ${delayMs} ms after the rebalance was pending`);
        await eventually(() => processor.paused, "the processor to pause again", 30_000);
        const stopAt = performance.now();
        processor.signalShutdown();
        await running;
        const stopMs = performance.now() - stopAt;
        assert(stopMs < 10_000, `stopped after ${stopMs} ms (not the 60 s back-off)`);
        polling = false;
        await otherPolls;
      } finally {
        polling = false;
        await stop(); // when an assertion failed: the processor still runs
        await other.close();
        await deleteTopics(kafka, [topic]);
      }
    },
    b.sanitize,
  );
}
