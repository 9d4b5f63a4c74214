import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { ConfigurationError, MessageRejected } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CircuitBreaker, type CircuitStateChange } from "../../strategies/circuit_breaker.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { Noop } from "../../strategies/noop.ts";
import type { Message } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { strategyContract } from "../_support/contract.ts";
import {
  brokerMessage,
  CommitRecorder,
  P0,
  settlesWithin,
  tick,
  waitFor,
} from "../_support/helpers.ts";

strategyContract<number>({
  name: "CircuitBreaker",
  make: ({ next, highWaterMark, clock }) =>
    new CircuitBreaker((m: Message<number>) => m.payload * 2, next, {
      highWaterMark,
      clock,
      onStateChange: () => {},
    }),
  makeFailing: ({ next, highWaterMark, clock }) =>
    new CircuitBreaker(
      () => {
        throw new TypeError("a bug, not an outage");
      },
      next,
      {
        highWaterMark,
        clock,
        isFailure: (e) => !(e instanceof TypeError),
        onStateChange: () => {},
      },
    ),
});

Deno.test("CircuitBreaker: rejects bad options with a ConfigurationError", () => {
  assertThrows(
    () => new CircuitBreaker((m) => m, new Noop(), { failureRatio: 1.5 }),
    ConfigurationError,
    "failureRatio",
  );
  assertThrows(
    () => new CircuitBreaker((m) => m, new Noop(), { failureThreshold: 0 }),
    ConfigurationError,
    "failureThreshold",
  );
});

function setup(options: ConstructorParameters<typeof CircuitBreaker>[2] = {}) {
  const clock = new ManualClock(0);
  const recorder = new CommitRecorder();
  const changes: CircuitStateChange[] = [];
  const dependency = { healthy: true, calls: 0, succeeded: [] as number[] };
  const step = new CircuitBreaker(
    async (m: Message<number>) => {
      dependency.calls++;
      await Promise.resolve();
      if (!dependency.healthy || (dependency as { failFrom?: number }).failFrom! <= m.payload) {
        throw new Error("dependency unavailable");
      }
      dependency.succeeded.push(m.payload);
      return m.payload;
    },
    new CommitOffsets(recorder.commit),
    { clock, highWaterMark: 10, onStateChange: (c) => changes.push(c), ...options },
  );
  return { clock, recorder, changes, dependency, step };
}

Deno.test("CircuitBreaker: closed → open after N failures, rejects while open, half-open probe, closed again — no message lost", async () => {
  const { clock, recorder, changes, dependency, step } = setup({
    failureThreshold: 3,
    retryDelayMs: 100,
    coolDownMs: 1000,
  });
  await tick();
  for (let i = 0; i < 5; i++) step.submit(brokerMessage(i, i));
  await waitFor(() => recorder.latest.get(P0) === 5, "the healthy messages to commit");
  dependency.healthy = false;
  for (let i = 5; i < 10; i++) step.submit(brokerMessage(i, i));
  await tick();
  assertEquals(step.state, "closed");
  await clock.advance(100); // second failure (retry of message 5)
  assertEquals(step.state, "closed");
  await clock.advance(100); // third failure: opens
  assertEquals(step.state, "open");
  assertEquals(changes.map((c) => c.to), ["open"]);
  assertStringIncludes(changes[0].reason, "3 failures");
  assertEquals(step.failures, 3);

  // While open: submit rejects, ready waits for the probe, and no call is made.
  const e = assertThrows(() => step.submit(brokerMessage(10, 10)));
  assertInstanceOf(e, MessageRejected);
  assertEquals(await settlesWithin(step.ready, 20), "pending", "ready waits while open");
  const callsWhileOpen = dependency.calls;
  await clock.advance(999);
  assertEquals(dependency.calls, callsWhileOpen, "no call hammers the dependency while open");
  assertEquals(step.state, "open");

  await clock.advance(1); // cool-down over: half-open, the probe fails, open again
  assertEquals(changes.map((c) => c.to), ["open", "half-open", "open"]);
  assertStringIncludes(changes[2].reason, "probe failed");
  assertEquals(dependency.calls, callsWhileOpen + 1, "exactly one probe");

  dependency.healthy = true;
  await clock.advance(1000); // half-open, the probe succeeds, closed
  assertEquals(changes.map((c) => c.to), ["open", "half-open", "open", "half-open", "closed"]);
  assertEquals(step.state, "closed");
  assertEquals(await settlesWithin(step.ready, 2000), "resolved");
  step.submit(brokerMessage(10, 10));
  step.close();
  await step.join(1000);
  assertEquals(
    dependency.succeeded,
    [...Array(11).keys()],
    "each message succeeded once, in order",
  );
  assertEquals(recorder.latest.get(P0), 11, "everything committed, nothing skipped");
  assertEquals(step.transitionCounts, { closed: 1, open: 2, "half-open": 2 });
  assert(changes.every((c, i) => i === 0 || c.at >= changes[i - 1].at));
});

Deno.test("CircuitBreaker: commits never pass the failing message while open", async () => {
  const { clock, recorder, dependency, step } = setup({ failureThreshold: 2, retryDelayMs: 10 });
  await tick();
  dependency.healthy = true;
  (dependency as { failFrom?: number }).failFrom = 3;
  for (let i = 0; i < 6; i++) step.submit(brokerMessage(i, i));
  await tick();
  await clock.advance(10);
  assertEquals(step.state, "open");
  assertEquals(recorder.latest.get(P0), 3, "0..2 committed; 3 (failing) and later are not");
  step.terminate();
});

Deno.test("CircuitBreaker: opens on a failure ratio within the window", async () => {
  const { clock, changes, dependency, step } = setup({
    failureThreshold: 100,
    failureRatio: 0.5,
    minimumCalls: 6,
    retryDelayMs: 10,
  });
  (dependency as { failFrom?: number }).failFrom = 3;
  await tick();
  for (let i = 0; i < 5; i++) step.submit(brokerMessage(i, i));
  await tick(); // 3 successes, 1 failure
  assertEquals(step.state, "closed");
  await clock.advance(10); // 2 failures out of 5 calls
  assertEquals(step.state, "closed");
  await clock.advance(10); // 3 out of 6: ratio 0.5
  assertEquals(step.state, "open");
  assertStringIncludes(changes[0].reason, "3/6 calls failed");
  step.terminate();
});

Deno.test("CircuitBreaker: failures older than the window do not count", async () => {
  const { clock, dependency, step } = setup({
    failureThreshold: 3,
    windowMs: 150,
    retryDelayMs: 100,
  });
  dependency.healthy = false;
  await tick();
  step.submit(brokerMessage(0, 0));
  await tick();
  for (let i = 0; i < 10; i++) await clock.advance(100);
  assertEquals(step.failures, 11);
  assertEquals(step.state, "closed", "at most 2 failures are ever within 150 ms");
  step.terminate();
});

Deno.test("CircuitBreaker: an open breaker pauses the consumer; everything is committed once the dependency recovers", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<number>({ clock });
  const topic = broker.createTopic("cb", 2);
  const total = 50;
  for (let i = 0; i < total; i++) broker.produce(topic, i);
  let healthy = false;
  const succeeded: number[] = [];
  const processor = new StreamProcessor<number>({
    consumer: broker.getConsumer("cb"),
    topics: [topic],
    commitPolicy: CommitPolicy.IMMEDIATE,
    pauseAfterMs: 500,
    clock,
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        new CircuitBreaker(
          (m: Message<number>) => {
            if (!healthy) throw new Error("down");
            succeeded.push(m.payload);
            return m.payload;
          },
          new CommitOffsets(commit),
          {
            failureThreshold: 3,
            coolDownMs: 1000,
            retryDelayMs: 50,
            highWaterMark: 5,
            clock,
            onStateChange: () => {},
          },
        ),
    },
  });
  const running = processor.run();
  let sawPaused = false;
  for (let t = 0; t < 3000; t += 10) {
    await clock.advance(10);
    sawPaused ||= processor.paused;
  }
  assert(sawPaused, "the consumer was paused while the breaker was open");
  const committed = () => [...broker.committed("cb").values()].reduce((a, b) => a + b, 0);
  assert(committed() < total);
  healthy = true;
  let t = 0;
  while (committed() < total && t < 10_000) {
    await clock.advance(10);
    t += 10;
  }
  assertEquals(committed(), total);
  assertEquals(succeeded.toSorted((a, b) => a - b), [...Array(total).keys()], "each once");
  assertEquals(processor.paused, false, "resumed");
  processor.signalShutdown();
  let done = false;
  running.then(() => done = true);
  await waitFor(() => {
    if (!done) clock.advance(10);
    return done;
  }, "shutdown");
});
