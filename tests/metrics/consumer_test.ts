/**
 * Processor metrics: where the loop's time goes (poll, processing) on the injected or the
 * system clock, commits timed afresh, and lag, read back through the OpenTelemetry SDK's
 * in-memory collection.
 */
import { assert, assertEquals } from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import type { Message } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { meterProvider, ONE, settle, SlowSink, tp } from "../_support/metrics.ts";

Deno.test("poll and processing time come from the injected clock", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  broker.createTopic("idle", 1);
  const { provider, snapshot } = meterProvider();
  const processor = new StreamProcessor<string>({
    consumer: broker.getConsumer("g"),
    topics: ["idle"],
    clock,
    meterProvider: provider,
    pollTimeoutMs: 100,
    handleSignals: false,
    factory: { createWithPartitions: (commit) => new CommitOffsets(commit, { clock }) },
  });
  for (let i = 0; i < 3; i++) {
    const once = processor.runOnce(); // an empty topic: poll waits its full 100 ms
    await settle();
    await clock.advance(100);
    await once;
  }
  const s = await snapshot();
  assertEquals(s.value("sluice.consumer.poll.time"), 300);
  assertEquals(s.value("sluice.consumer.processing.time"), 0);
  assertEquals(s.value("sluice.consumer.iterations"), 3);
  assertEquals(s.value("sluice.consumer.lag", tp("idle", 0)), 0);
});

Deno.test("with the system clock, poll and processing time stay exact though the loop's clock readings are shared", async () => {
  // The system clock reads Date.now(); stubbed, time moves only when the scenario says so:
  // 1 ms per poll, 1 ms per message processed (in the pipeline's microtasks, after the
  // iteration that submitted it), and 1000 ms once inside one of the loop's yields. One
  // reading per iteration serves the yield check and the start of the poll phase; it must
  // be taken after the pipeline's microtasks, and again after a yield.
  const realNow = Date.now;
  let t = 1_000_000;
  Date.now = () => t;
  try {
    const broker = new LocalBroker<string>();
    broker.createTopic("wall", 1);
    for (let i = 0; i < 400; i++) broker.produce("wall", `m${i}`);
    const consumer = broker.getConsumer("g", { maxPollMessages: 4 });
    const realPoll = consumer.poll.bind(consumer);
    let polls = 0;
    consumer.poll = (timeoutMs?: number) => {
      polls++;
      t += 1;
      return realPoll(timeoutMs);
    };
    const { provider, snapshot } = meterProvider();
    let processed = 0;
    let duringYield = 0;
    const processor: StreamProcessor<string> = new StreamProcessor<string>({
      consumer,
      topics: ["wall"],
      meterProvider: provider,
      pollTimeoutMs: 0,
      handleSignals: false,
      factory: {
        createWithPartitions: (commit) =>
          new RunTask((m: Message<string>) => {
            t += 1;
            // Queued ahead of the loop's next yield (every 20 ms of this clock), so it runs there.
            if (++processed === 40) setImmediate(() => void (t += duringYield = 1000));
            if (processed === 200) processor.signalShutdown();
            return m.payload;
          }, new CommitOffsets(commit)),
      },
    });
    const start = t;
    await processor.run();
    assertEquals(duringYield, 1000, "time passed inside a yield");
    const s = await snapshot();
    assertEquals(s.value("sluice.consumer.poll.time"), polls);
    assertEquals(s.value("sluice.consumer.processing.time"), processed + 1000);
    assertEquals(s.value("sluice.consumer.join.time"), 0);
    assertEquals(polls + processed + 1000, t - start, "every millisecond accounted once");
  } finally {
    Date.now = realNow;
  }
});

Deno.test("a commit outside the loop's strategy.poll() reads the clock afresh, not the poll's reading", async () => {
  // While metered, the commit check made in strategy.poll() reuses the clock reading taken
  // when the poll returned; a commit made later (a step finishing on its own) must not.
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  broker.createTopic("late", 1);
  broker.produce("late", "m0");
  const { provider } = meterProvider();
  let sink: SlowSink | undefined;
  const processor = new StreamProcessor<string>({
    consumer: broker.getConsumer("g"),
    topics: ["late"],
    clock,
    meterProvider: provider,
    commitPolicy: new CommitPolicy({ intervalMs: 100 }),
    pollTimeoutMs: 0,
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        sink = new SlowSink(commit, { name: "sink", clock, ...ONE }),
    },
  });
  await processor.runOnce(); // m0 polled at t=0 and held by the sink
  await settle();
  assertEquals(processor.stats.commits, 0);
  await clock.advance(150);
  assert(sink!.release(), "the sink finishes m0 at t=150 and commits");
  await settle();
  assertEquals(processor.stats.commits, 1, "150 ms after the last commit, the policy commits");
});

Deno.test("lag is end offset minus committed offset, and absent for consumers without endOffset", async () => {
  for (const withEndOffset of [true, false]) {
    const clock = new ManualClock(0);
    const broker = new LocalBroker<string>({ clock });
    const topic = broker.createTopic("lag", 2);
    const consumer = broker.getConsumer("g", { maxPollMessages: 3 });
    if (!withEndOffset) {
      (consumer as { endOffset?: unknown }).endOffset = undefined;
    }
    for (let i = 0; i < 10; i++) broker.produce(topic, `m${i}`); // 5 per partition
    const { provider, snapshot } = meterProvider();
    const processor = new StreamProcessor<string>({
      consumer,
      topics: [topic],
      clock,
      meterProvider: provider,
      commitPolicy: CommitPolicy.IMMEDIATE,
      pollTimeoutMs: 0,
      handleSignals: false,
      factory: { createWithPartitions: (commit) => new CommitOffsets(commit, { clock }) },
    });
    await processor.runOnce(); // 3 messages: partition 0 (rotation starts there)
    await settle();
    const s = await snapshot();
    if (withEndOffset) {
      assertEquals(s.value("sluice.consumer.lag", tp("lag", 0)), 2);
      assertEquals(s.value("sluice.consumer.lag", tp("lag", 1)), 5);
    } else {
      assertEquals(s.points("sluice.consumer.lag"), []);
      assertEquals(s.value("sluice.consumer.messages"), 3, "other metrics still work");
    }
  }
});
