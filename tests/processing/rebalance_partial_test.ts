import { assert, assertEquals } from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTaskAsync } from "../../strategies/run_task_async.ts";
import type { Message } from "../../types.ts";
import { ScriptedConsumer } from "../_support/scripted_consumer.ts";
import { tick } from "../_support/helpers.ts";

/** p0 holds payloads 0..n-1, p1 holds 1000 + i: a payload names its partition and offset. */
function setup(p0: number, p1: number, hangOn: number) {
  const clock = new ManualClock(1_000_000);
  const consumer = new ScriptedConsumer<number>("t", 2);
  for (let i = 0; i < p0; i++) consumer.produce(0, i);
  for (let i = 0; i < p1; i++) consumer.produce(1, 1000 + i);
  let release!: () => void;
  const released = new Promise<void>((r) => release = r);
  /** Payloads whose function finished, per pipeline (1-based). */
  const finished: Array<Set<number>> = [new Set()];
  const processor = new StreamProcessor<number>({
    consumer,
    topics: ["t"],
    clock,
    pollTimeoutMs: 0,
    handleSignals: false,
    joinTimeoutMs: 100,
    commitPolicy: CommitPolicy.IMMEDIATE,
    factory: {
      createWithPartitions: (commit) => {
        const done = new Set<number>();
        finished.push(done);
        const first = finished.length === 2;
        return new RunTaskAsync(
          async (m: Message<number>) => {
            if (first && m.payload === hangOn) await released;
            done.add(m.payload);
            return m.payload;
          },
          new CommitOffsets(commit, { clock }),
          { clock, highWaterMark: 2, concurrency: 4 },
        );
      },
    },
  });
  // Every commit of p0 covers only payloads some pipeline finished.
  const violations: string[] = [];
  consumer.onCommit = (offsets) => {
    const o = offsets.get(consumer.partition(0));
    if (o === undefined) return;
    for (let i = 0; i < o; i++) {
      if (!finished.some((s) => s.has(i))) violations.push(`committed ${o} before ${i} finished`);
    }
  };
  return { clock, consumer, processor, finished, violations, release };
}

/** Runs one iteration, advancing the manual clock while it waits (a join timing out). */
async function step(clock: ManualClock, processor: StreamProcessor<number>): Promise<void> {
  let done = false;
  const once = processor.runOnce().finally(() => done = true);
  for (let i = 0; i < 1000 && !done; i++) {
    await tick();
    await clock.advance(10);
  }
  await once;
}

Deno.test("a partial revoke whose join times out: the kept partition's abandoned messages are read again, never committed past", async () => {
  const { clock, consumer, processor, finished, violations, release } = setup(20, 10, 3);
  const p0 = consumer.partition(0);
  consumer.assign(0, 1);
  for (let i = 0; i < 20; i++) await step(clock, processor);
  assertEquals(consumer.committed.get(p0), 3, "p0 committed up to the message that hangs");
  assert(processor.carriedCount > 0, "some messages are carried over (the pipeline is full)");

  consumer.revoke(1); // p0 stays assigned; the join times out on p0's offset 3
  await step(clock, processor);
  for (let i = 0; i < 50 && consumer.committed.get(p0) !== 20; i++) await step(clock, processor);

  assertEquals(consumer.committed.get(p0), 20, "p0 is committed to its end");
  assertEquals(violations, [], "no commit passed an unfinished message");
  for (let i = 3; i < 10; i++) {
    assert(finished[2].has(i), `offset ${i} read again after the revoke`);
  }
  assertEquals(
    consumer.seeks.map((s) => s.get(p0)),
    [3],
    "p0 was rewound to its first unfinished offset",
  );
  release();
});

Deno.test("a partial revoke whose join completes keeps the kept partition's carried messages, in order, once", async () => {
  const { clock, consumer, processor, finished, violations } = setup(20, 10, -1);
  const p0 = consumer.partition(0);
  consumer.assign(0, 1);
  await step(clock, processor);
  assert(processor.carriedCount > 0, "some messages are carried over (the pipeline is full)");
  consumer.revoke(1);
  for (let i = 0; i < 50 && processor.stats.revocations === 0; i++) await step(clock, processor);
  for (let i = 0; i < 50 && consumer.committed.get(p0) !== 20; i++) await step(clock, processor);
  assertEquals(processor.stats.revocations, 1);
  assertEquals(consumer.committed.get(p0), 20);
  assertEquals(violations, []);
  assertEquals(consumer.seeks, [], "nothing to read again");
  const all = [...finished[1], ...finished[2]].filter((x) => x < 1000).sort((a, b) => a - b);
  assertEquals(all, Array.from({ length: 20 }, (_, i) => i), "each p0 message processed once");
});
