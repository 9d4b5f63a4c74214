/**
 * A rebalance let through while the pipeline holds messages back: the poll that runs the
 * revoke may also return the kept partitions' next messages (the revoke resumed them).
 * They follow what is carried, in order; nothing is skipped, repeated or thrown away.
 */
import { assertEquals } from "@std/assert";
import { MessageRejected } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import type { Commit, ProcessingStrategy } from "../../strategies/abstract.ts";
import type { BrokerValue, Message } from "../../types.ts";
import { ScriptedConsumer } from "../_support/scripted_consumer.ts";

Deno.test("a revoke let through while backpressured: the kept partition's next messages follow what is carried", async () => {
  const consumer = new ScriptedConsumer<number>("t", 2);
  for (let i = 0; i < 5; i++) consumer.produce(0, i);
  for (let i = 0; i < 5; i++) consumer.produce(1, 100 + i);
  consumer.assign(0, 1);
  let open = false;
  const seen: number[] = [];
  const processor = new StreamProcessor<number>({
    consumer,
    topics: ["t"],
    handleSignals: false,
    metrics: false,
    commitPolicy: CommitPolicy.IMMEDIATE,
    pollTimeoutMs: 0,
    pauseAfterMs: 0,
    maxBackoffMs: 1,
    pausedBackoffMs: 1,
    factory: {
      createWithPartitions: (commit: Commit): ProcessingStrategy<number> => ({
        // Takes a message only when open, and commits it at once.
        submit: (m: Message<number>) => {
          if (!open) throw new MessageRejected();
          seen.push(m.payload);
          const b = m.source as BrokerValue<number>;
          commit(new Map([[b.partition, b.offset + 1]]));
        },
        poll() {},
        close() {},
        join: () => Promise.resolve(),
        terminate() {},
        ready: new Promise<void>(() => {}),
      }),
    },
  });
  const until = async (what: string, done: () => boolean) => {
    const deadline = Date.now() + 5_000;
    while (!done()) {
      if (Date.now() > deadline) {
        throw new Error(
          `timed out waiting for ${what}: seen ${seen}, committed ${[
            ...consumer.committed,
          ]}, carried ${processor.carriedCount}`,
        );
      }
      await processor.runOnce();
    }
  };
  await until("the first poll to be carried", () => processor.stats.rejections >= 2);
  // While held back (and paused): p1 is revoked and p0 gets five more messages. The poll
  // that runs the revoke resumes p0 and hands out 5..9 while 0..4 are still carried.
  consumer.revoke(1);
  for (let i = 5; i < 10; i++) consumer.produce(0, i);
  await until("the revoke", () => processor.stats.revocations >= 1);
  open = true;
  await until(
    "p0 committed to its end",
    () => consumer.committed.get(consumer.partition(0)) === 10,
  );
  assertEquals(seen, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  processor.signalShutdown();
  await processor.run();
});
