import {
  assert,
  assertEquals,
  assertGreater,
  assertLessOrEqual,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { MessageRejected } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor, type StreamProcessorOptions } from "../../processing/processor.ts";
import type { Commit, ProcessingStrategy } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { InvalidMessage, type Message, Partition, StepError } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { Gate, tick, waitFor } from "../_support/helpers.ts";

function setup(partitions = 1, count = 0) {
  const clock = new ManualClock(1_000_000);
  const broker = new LocalBroker<number>({ clock });
  const topic = broker.createTopic(`t-${crypto.randomUUID()}`, partitions);
  for (let i = 0; i < count; i++) broker.produce(topic, i);
  return { clock, broker, topic };
}

function processorFor(
  broker: LocalBroker<number>,
  topic: string | { name: string },
  build: (commit: Commit) => ProcessingStrategy<number>,
  extra: Partial<StreamProcessorOptions<number>> = {},
  group = "g",
) {
  return new StreamProcessor<number>({
    consumer: broker.getConsumer(group, {
      maxPollMessages: extra.pollTimeoutMs === 0 ? 1000 : 1000,
    }),
    topics: [typeof topic === "string" ? topic : topic.name],
    factory: { createWithPartitions: (commit) => build(commit) },
    pollTimeoutMs: 0,
    handleSignals: false,
    clock: broker.clock,
    ...extra,
  });
}

async function runUntil(
  p: StreamProcessor<number>,
  cond: () => boolean,
  what: string,
  max = 10_000,
) {
  for (let i = 0; i < max && !cond(); i++) {
    await p.runOnce();
    await tick();
  }
  assert(cond(), `condition not reached: ${what}`);
}

Deno.test("processor commits by time: nothing before the interval, everything after it", async () => {
  const { clock, broker, topic } = setup(1, 10);
  const p = processorFor(
    broker,
    topic,
    (commit) => new RunTask((m) => m.payload, new CommitOffsets(commit)),
  );
  await runUntil(p, () => p.stats.messagesSubmitted === 10, "all submitted");
  await p.runOnce();
  assertEquals(broker.committed("g").size, 0, "ONCE_PER_SECOND: no commit before a second passed");
  await clock.advance(1000);
  await p.runOnce();
  await tick();
  assertEquals([...broker.committed("g").values()], [10]);
});

Deno.test("processor commits by count: every N messages", async () => {
  const { broker, topic } = setup(1, 12);
  const consumer = broker.getConsumer("g", { maxPollMessages: 3 });
  const seen: number[] = [];
  const p = new StreamProcessor<number>({
    consumer,
    topics: [topic],
    factory: {
      createWithPartitions: (commit) => new RunTask((m) => m.payload, new CommitOffsets(commit)),
    },
    commitPolicy: new CommitPolicy({ messages: 5 }),
    pollTimeoutMs: 0,
    handleSignals: false,
    clock: broker.clock,
  });
  for (let i = 0; i < 8; i++) {
    await p.runOnce();
    await tick();
    const c = [...broker.committed("g").values()][0];
    if (c !== undefined && seen.at(-1) !== c) seen.push(c);
  }
  assertEquals(seen, [6, 12], "a commit after each 5+ messages processed (chunks of 3)");
});

Deno.test("a rejected message is neither lost nor processed twice", async () => {
  const { clock, broker, topic } = setup(2, 40);
  const calls = new Map<string, number>();
  let gate: Gate<number> | undefined;
  const p = processorFor(broker, topic, (commit) => {
    gate = new Gate<number>(false, new CommitOffsets(commit, { clock }));
    return new RunTask(
      (m: Message<number>) => {
        const key = String(m);
        calls.set(key, (calls.get(key) ?? 0) + 1);
        return m.payload;
      },
      gate,
      { highWaterMark: 3, clock },
    );
  }, { commitPolicy: CommitPolicy.IMMEDIATE });
  const running = p.run();
  await waitFor(() => p.backpressured, "the pipeline to reject");
  // Rejected for a while: the processor holds the batch and retries.
  for (let i = 0; i < 20; i++) await clock.advance(5);
  assert(p.backpressured, "the processor is holding a rejected message");
  assertEquals(broker.committed("g").size, 0);
  gate!.setOpen(true);
  await waitFor(() => {
    const c = broker.committed("g");
    return broker.partitions(topic).every((q) => c.get(q) === broker.endOffset(q));
  }, "everything committed");
  assertEquals(calls.size, 40, "every message processed");
  assert([...calls.values()].every((n) => n === 1), "the user function ran once per message");
  assert(!p.backpressured, "the episode ended");
  p.signalShutdown();
  await clock.advance(100);
  await running;
});

Deno.test("pauses the consumer after pauseAfterMs of rejection and resumes on acceptance", async () => {
  const { clock, broker, topic } = setup(2, 50);
  let blocked = true;
  const consumer = broker.getConsumer("g");
  const p = new StreamProcessor<number>({
    consumer,
    topics: [topic],
    factory: {
      createWithPartitions: (commit) =>
        new RunTask(
          (m) => {
            if (blocked) throw new MessageRejected();
            return m.payload;
          },
          new CommitOffsets(commit, { clock }),
          { highWaterMark: 4, clock },
        ),
    },
    pauseAfterMs: 500,
    pollTimeoutMs: 0,
    clock,
    handleSignals: false,
  });
  const running = p.run();
  await waitFor(() => p.backpressured, "backpressure");
  for (let t = 0; t < 400; t += 50) await clock.advance(50);
  assertEquals(p.paused, false, "not paused before the threshold");
  for (let t = 0; t < 200; t += 50) await clock.advance(50);
  assertEquals(p.paused, true, "paused after the threshold");
  assertEquals(consumer.paused().length, 2, "all assigned partitions are paused");
  blocked = false;
  for (let i = 0; i < 20 && p.paused; i++) await clock.advance(100);
  assertEquals(p.paused, false, "resumed once the message was accepted");
  assertEquals(consumer.paused().length, 0);
  assertEquals(p.stats.pauses, 1);
  assertEquals(p.stats.resumes, 1);
  p.signalShutdown();
  await running;
  const committed = broker.committed("g");
  assertEquals(
    broker.partitions(topic).map((q) => committed.get(q)),
    broker.partitions(topic).map((q) => broker.endOffset(q)),
    "everything committed on shutdown",
  );
});

Deno.test("while a function keeps rejecting for 2 s the processor waits instead of spinning", async () => {
  const { clock, broker, topic } = setup(1, 100);
  const p = processorFor(broker, topic, (commit) =>
    new RunTask(
      () => {
        throw new MessageRejected();
      },
      new CommitOffsets(commit, { clock }),
      { highWaterMark: 2, clock },
    ), { joinTimeoutMs: 500 });
  const running = p.run();
  await waitFor(() => p.backpressured, "backpressure");
  const before = p.stats.iterations;
  for (let t = 0; t < 2000; t += 10) await clock.advance(10);
  const iterations = p.stats.iterations - before;
  // Backoff doubles from 1 ms to 100 ms: about 7 + 20 wake-ups in 2 s, plus a few for the
  // initial fill. A spinning loop would do thousands (or starve this test entirely).
  assertLessOrEqual(iterations, 60, `loop iterations in 2 s of rejection: ${iterations}`);
  assertGreater(iterations, 5, "it still retries");
  p.signalShutdown();
  // The held message never completes: the join times out (500 ms) on the manual clock.
  let stopped = false;
  running.then(() => stopped = true);
  for (let i = 0; i < 20 && !stopped; i++) await clock.advance(100);
  await running;
  assertEquals(broker.committed("g").size, 0, "nothing was processed, so nothing is committed");
});

Deno.test("revoke closes, joins and commits the pipeline before the partitions go to another member", async () => {
  const { broker, topic } = setup(2, 20);
  const a = processorFor(
    broker,
    topic,
    (commit) => new RunTask((m) => m.payload, new CommitOffsets(commit)),
  );
  await runUntil(a, () => a.stats.messagesSubmitted === 20, "A processed everything");
  assertEquals(broker.committed("g").size, 0, "nothing committed yet (once per second)");
  let committedWhenBAssigned: Map<unknown, number> | undefined;
  const b = broker.getConsumer("g");
  b.subscribe([topic], { onAssign: () => void (committedWhenBAssigned = broker.committed("g")) });
  // A revokes (close, join, commit) on its next poll; then B gets its share.
  for (let i = 0; i < 5 && committedWhenBAssigned === undefined; i++) {
    await a.runOnce();
    await b.poll(0);
  }
  assert(committedWhenBAssigned, "B was assigned");
  assertEquals(
    [...committedWhenBAssigned.values()].sort(),
    [10, 10],
    "A's finished work was committed before B received the partitions",
  );
  assertEquals(a.stats.revocations, 1);
});

Deno.test("a commit the consumer could not make is made by a later commit, even on an idle topic", async () => {
  const { clock, broker, topic } = setup(1, 10);
  // A consumer whose commits fail while `down` (as KafkaConsumer's do while the broker
  // restarts): it resolves with nothing committed.
  const consumer = broker.getConsumer("g", { maxPollMessages: 1000 });
  let down = true;
  const stage = consumer.stageOffsets.bind(consumer);
  const commit = consumer.commitOffsets.bind(consumer);
  consumer.stageOffsets = (offsets) => {
    if (!down) stage(offsets);
  };
  consumer.commitOffsets = () => down ? Promise.resolve(new Map()) : commit();
  const p = processorFor(
    broker,
    topic,
    (commit) => new RunTask((m) => m.payload, new CommitOffsets(commit)),
    { consumer },
  );
  await runUntil(p, () => p.stats.messagesSubmitted === 10, "all submitted");
  await clock.advance(1000);
  await runUntil(p, () => p.stats.commitsIncomplete === 1, "a commit that failed");
  assertEquals(broker.committed("g").size, 0);
  // More work while commits still fail: the next commit covers the newest offset.
  for (let i = 10; i < 15; i++) broker.produce(topic, i);
  await runUntil(p, () => p.stats.messagesSubmitted === 15, "the new messages submitted");
  await clock.advance(1000);
  await runUntil(p, () => p.stats.commitsIncomplete === 2, "a second commit that failed");
  down = false;
  // No new message: the kept offsets are committed by the policy's next commit.
  await clock.advance(1000);
  await runUntil(p, () => broker.committed("g").size > 0, "the kept offsets committed");
  assertEquals([...broker.committed("g").values()], [15]);
  assertEquals(p.stats.commitsIncomplete, 2);
});

Deno.test("a final commit that does not go through at shutdown is reported, and run() still ends", async () => {
  const { broker, topic } = setup(1, 10);
  const consumer = broker.getConsumer("g", { maxPollMessages: 1000 });
  consumer.stageOffsets = () => {};
  consumer.commitOffsets = () => Promise.resolve(new Map()); // e.g. the broker is down
  const p = processorFor(
    broker,
    topic,
    (commit) => new RunTask((m) => m.payload, new CommitOffsets(commit)),
    { consumer },
  );
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => void warnings.push(args.join(" "));
  try {
    const running = p.run();
    await waitFor(() => p.stats.messagesSubmitted === 10, "all submitted");
    p.signalShutdown();
    await running;
  } finally {
    console.warn = warn;
  }
  assertEquals(broker.committed("g").size, 0);
  assertEquals(p.stats.commitsIncomplete, 1);
  const report = warnings.find((w) => w.includes("did not go through"));
  assert(report !== undefined, `no report among ${JSON.stringify(warnings)}`);
  assertStringIncludes(report, `${topic.name}/0@10`);
  assertStringIncludes(report, "shutdown");
});

Deno.test("shutdown commits finished work", async () => {
  const { broker, topic } = setup(3, 30);
  const p = processorFor(
    broker,
    topic,
    (commit) => new RunTask((m) => m.payload + 1, new CommitOffsets(commit)),
  );
  const running = p.run();
  await waitFor(() => p.stats.messagesSubmitted === 30, "all submitted");
  assertEquals(broker.committed("g").size, 0, "the manual clock never reached a commit interval");
  p.signalShutdown();
  await running;
  assertEquals([...broker.committed("g").values()].sort(), [10, 10, 10]);
});

Deno.test("a failing user function stops the processor with the message identified, committing nothing past it", async () => {
  const { broker, topic } = setup(1, 10);
  const p = processorFor(broker, topic, (commit) =>
    new RunTask(
      (m) => {
        if (m.payload === 6) throw new Error("bad data");
        return m.payload;
      },
      new CommitOffsets(commit),
      { name: "parse" },
    ), { commitPolicy: CommitPolicy.IMMEDIATE });
  const e = await assertRejects(() => p.run(), StepError);
  assertStringIncludes(e.message, `step "parse" failed on message ${topic.name}/0@6: bad data`);
  assertEquals([e.step, e.partition, e.offset], ["parse", Partition.of(topic.name, 0), 6]);
  assertEquals(e.committable?.get(Partition.of(topic.name, 0)), 7);
  assertEquals((e.cause as Error).message, "bad data");
  assertLessOrEqual(
    [...broker.committed("g").values()][0] ?? 0,
    6,
    "offsets never pass the failed message",
  );
});

Deno.test("an invalid message without a dead-letter queue stops the processor; commits stop at it", async () => {
  const { broker, topic } = setup(1, 10);
  const p = processorFor(broker, topic, (commit) =>
    new RunTask((m) => {
      if (m.payload === 4) {
        throw new InvalidMessage(m.value.committable.keys().next().value!, 4, "not JSON");
      }
      return m.payload;
    }, new CommitOffsets(commit)), { commitPolicy: CommitPolicy.IMMEDIATE });
  const e = await assertRejects(() => p.run(), InvalidMessage);
  assertStringIncludes(e.message, "not JSON");
  assertStringIncludes(e.message, "dlqPolicy");
  assertEquals(
    [...broker.committed("g").values()],
    [4],
    "committed up to, not past, the invalid message",
  );
});

Deno.test("a backpressured processor lets a pending rebalance through at once, not after pauseAfterMs", async () => {
  const { clock, broker, topic } = setup(2, 50);
  const consumer = broker.getConsumer("g");
  // The Kafka consumer says so through rebalancePending(); here the test does.
  let pending = false;
  Object.assign(consumer, { rebalancePending: () => pending });
  const p = new StreamProcessor<number>({
    consumer,
    topics: [topic],
    factory: {
      createWithPartitions: (commit) =>
        new RunTask(
          () => {
            throw new MessageRejected();
          },
          new CommitOffsets(commit, { clock }),
          { highWaterMark: 2, clock },
        ),
    },
    pauseAfterMs: 60_000,
    pollTimeoutMs: 0,
    joinTimeoutMs: 100,
    clock,
    handleSignals: false,
  });
  const running = p.run();
  await waitFor(() => p.backpressured, "backpressure");
  const b = broker.getConsumer("g");
  b.subscribe([topic]);
  pending = true;
  for (let t = 0; t < 1000 && p.stats.revocations === 0; t += 50) await clock.advance(50);
  assertEquals(p.stats.revocations, 1, "revoked within a second, long before pauseAfterMs");
  assertEquals(p.paused, false, "without pausing first");
  pending = false;
  p.signalShutdown();
  let stopped = false;
  running.then(() => stopped = true);
  for (let i = 0; i < 50 && !stopped; i++) await clock.advance(100);
  await running;
  await b.close();
});
