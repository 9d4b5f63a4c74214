/**
 * `run({ untilCaughtUp: true })` over each Kafka backend's consumer (`kafka_backends.ts`):
 * its `endOffsets()` asks the broker, and the processor stops once everything there was is
 * processed and committed.
 */
import { assertEquals } from "@std/assert";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { Partition } from "../../types.ts";
import type { KafkaPayload } from "../../backends/kafka/mod.ts";
import { BACKENDS } from "./kafka_backends.ts";
import {
  committedOffsets,
  createTopic,
  deleteTopics,
  endOffsets,
  FAST,
  kafkaTest,
  produceNumbers,
  testKafka,
  unique,
} from "./kafka_helpers.ts";

for (const b of BACKENDS) {
  kafkaTest(
    `${b.name}: run({ untilCaughtUp: true }) stops once every partition is committed to its end`,
    async (brokers) => {
      const kafka = testKafka(brokers);
      const topic = unique(`sluice-${b.name}-caught-up`);
      const group = unique("g");
      const N = 2_000;
      await createTopic(kafka, topic, 3);
      try {
        await produceNumbers(kafka, topic, N);
        const ends = await endOffsets(kafka, topic);
        const consumer = b.consumer({ brokers, group, ...FAST });
        let processed = 0;
        const processor = new StreamProcessor<KafkaPayload>({
          consumer,
          topics: [topic],
          handleSignals: false,
          factory: {
            createWithPartitions: (commit) =>
              new RunTask(() => processed++, new CommitOffsets(commit)),
          },
        });
        await processor.run({ untilCaughtUp: true });
        assertEquals(processed, N);
        assertEquals(await committedOffsets(kafka, group, topic), ends);
        // endOffsets() asked the broker: the lag source agrees.
        for (const [p, end] of ends) assertEquals(consumer.endOffset(Partition.of(topic, p)), end);
      } finally {
        await deleteTopics(kafka, [topic]);
      }
    },
    b.sanitize,
  );
}
