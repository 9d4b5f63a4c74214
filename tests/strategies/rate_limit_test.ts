import { assert, assertEquals, assertLessOrEqual, assertThrows } from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { ConfigurationError } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { Noop } from "../../strategies/noop.ts";
import { RateLimit } from "../../strategies/rate_limit.ts";
import type { Message } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { strategyContract } from "../_support/contract.ts";
import { brokerMessage, Gate, tick, waitFor } from "../_support/helpers.ts";

strategyContract<number>({
  name: "RateLimit",
  make: ({ next, highWaterMark, clock }) =>
    new RateLimit(next, { ratePerSecond: 1000, capacity: 100, highWaterMark, clock }),
  makeFailing: ({ next, highWaterMark, clock }) =>
    new RateLimit(next, {
      ratePerSecond: 10,
      capacity: 1,
      cost: () => 2, // above capacity: a configuration mistake, reported by poll
      highWaterMark,
      clock,
    }),
});

Deno.test("RateLimit: rejects bad options with a ConfigurationError", () => {
  assertThrows(
    () => new RateLimit(new Noop(), { ratePerSecond: 0 }),
    ConfigurationError,
    "ratePerSecond",
  );
  assertThrows(
    () => new RateLimit(new Noop(), { ratePerSecond: 5, capacity: 0.5 }),
    ConfigurationError,
    "capacity",
  );
});

Deno.test("RateLimit: a burst of `capacity` goes through at once, then exactly `ratePerSecond`", async () => {
  const clock = new ManualClock(0);
  const gate = new Gate<number>(true);
  const step = new RateLimit(gate, { ratePerSecond: 5, capacity: 10, highWaterMark: 100, clock });
  await tick();
  for (let i = 0; i < 30; i++) step.submit(brokerMessage(i, i));
  await tick();
  assertEquals(gate.received.length, 10, "the burst: capacity messages at once");
  await clock.advance(199);
  assertEquals(gate.received.length, 10, "no token before 1/rate seconds");
  await clock.advance(1);
  assertEquals(gate.received.length, 11, "one token at 200 ms");
  // Steady state: 5 per second, at 200 ms intervals, never more.
  for (let t = 300; t <= 4000; t += 100) {
    await clock.advance(100);
    step.poll();
    const expected = Math.min(30, 10 + Math.floor(t / 200));
    assertEquals(gate.received.length, expected, `admitted by t=${t} ms`);
  }
  assertEquals(gate.received.map((m) => m.payload), [...Array(30).keys()], "order is kept");
  assertEquals(step.admitted, 30);
  assertEquals(step.delayed, 20);
  // The bucket refills to capacity, not beyond.
  await clock.advance(60_000);
  assertEquals(Math.round(step.tokens), 10);
});

Deno.test("RateLimit: cost charges several tokens per message (e.g. bytes per second)", async () => {
  const clock = new ManualClock(0);
  const gate = new Gate<string>(true);
  const step = new RateLimit(gate, {
    ratePerSecond: 100, // bytes per second
    capacity: 100,
    cost: (m: Message<string>) => m.payload.length,
    highWaterMark: 100,
    clock,
  });
  await tick();
  for (let i = 0; i < 5; i++) step.submit(brokerMessage("x".repeat(40), i));
  await tick();
  assertEquals(gate.received.length, 2, "80 of 100 bytes used; the third needs 40");
  await clock.advance(200); // +20 bytes: 40 available
  assertEquals(gate.received.length, 3);
  await clock.advance(800); // +80: two more
  assertEquals(gate.received.length, 5);
});

Deno.test("RateLimit: a rate-limited processor waits on timers, never spins, and commits everything", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<number>({ clock });
  const topic = broker.createTopic("rate-limited", 2);
  const total = 200;
  for (let i = 0; i < total; i++) broker.produce(topic, i);
  let step: RateLimit<number> | undefined;
  const processor = new StreamProcessor<number>({
    consumer: broker.getConsumer("rl"),
    topics: [topic],
    commitPolicy: CommitPolicy.IMMEDIATE,
    clock,
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        step = new RateLimit(new CommitOffsets(commit), {
          ratePerSecond: 100, // one token every 10 ms
          capacity: 5,
          highWaterMark: 5,
          clock,
        }),
    },
  });
  const running = processor.run();
  let t = 0;
  let maxIterationsPerStep = 0;
  const committed = () => [...broker.committed("rl").values()].reduce((a, b) => a + b, 0);
  while (committed() < total && t < 10_000) {
    const before = processor.stats.iterations;
    await clock.advance(10);
    t += 10;
    maxIterationsPerStep = Math.max(maxIterationsPerStep, processor.stats.iterations - before);
    if (step) {
      assertLessOrEqual(step.admitted, 5 + t / 10, `admitted by ${t} ms stays under the rate`);
    }
  }
  assertEquals(committed(), total, "every message is committed");
  assert(step !== undefined);
  assert(step.rejected > 0, "the processor was held back by rejections");
  assertLessOrEqual(t, 2100, "the rate is used: ~200 messages at 100/s take ~2 s of clock time");
  // With a manual clock nothing can happen between advances except what a wake-up allows;
  // a spinning loop would run many iterations (or hang) per 10 ms step.
  assertLessOrEqual(maxIterationsPerStep, 8, "a handful of loop iterations per 10 ms step");
  processor.signalShutdown();
  let done = false;
  running.then(() => done = true);
  await waitFor(() => {
    if (!done) clock.advance(10);
    return done;
  }, "the processor to shut down");
  await running;
  assertEquals(processor.stats.messagesSubmitted, total, "each message submitted once");
});

Deno.test("RateLimit: by default about one burst (capacity) waits in the step, not minutes of backlog", async () => {
  const clock = new ManualClock(0);
  const gate = new Gate<number>(true);
  const step = new RateLimit(gate, { ratePerSecond: 1, capacity: 3, clock });
  await tick();
  let accepted = 0;
  for (let turn = 0; turn < 3; turn++) {
    for (let i = 0; i < 10; i++) {
      try {
        step.submit(brokerMessage(accepted, accepted));
        accepted++;
      } catch {
        break;
      }
    }
    await tick();
  }
  assertEquals(gate.received.length, 3, "the burst went through");
  assertEquals(accepted, 6, "3 through, then 3 (one burst) waiting for tokens; the rest rejected");
  step.terminate();
});
