/**
 * User functions that return promises: every step either awaits them (in input order,
 * before anything after them is handed on or committed) or fails with a typed error
 * naming the step to use instead. Never a promise as a payload, never an unhandled
 * rejection, never a commit past unfinished work.
 */
import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertLessOrEqual,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { ManualClock } from "../clock.ts";
import { ConfigurationError, MessageRejected } from "../errors.ts";
import { CommitPolicy } from "../processing/commit_policy.ts";
import { StreamProcessor } from "../processing/processor.ts";
import type { Commit, ProcessingStrategy } from "../strategies/abstract.ts";
import { BatchStep } from "../strategies/batching.ts";
import { BufferStep } from "../strategies/buffer.ts";
import { CircuitBreaker } from "../strategies/circuit_breaker.ts";
import { CommitOffsets } from "../strategies/commit_offsets.ts";
import { Decode } from "../strategies/decode.ts";
import { FilterStep } from "../strategies/filter.ts";
import { KeyedConcurrency } from "../strategies/keyed_concurrency.ts";
import { LoadShed } from "../strategies/load_shed.ts";
import { RateLimit } from "../strategies/rate_limit.ts";
import { Reduce } from "../strategies/reduce.ts";
import { RunTask } from "../strategies/run_task.ts";
import { Unfold } from "../strategies/unfold.ts";
import { InvalidMessage, type Message, Partition, StepError } from "../types.ts";
import { LocalBroker } from "../backends/local/mod.ts";
import {
  brokerMessage,
  CommitRecorder,
  Gate,
  P0,
  pollError,
  Sink,
  tick,
  waitFor,
} from "./_support/helpers.ts";

/** A promise resolved or rejected from outside, for work whose end the test decides. */
class Deferred<T> {
  readonly promise: Promise<T>;
  resolve!: (value: T) => void;
  reject!: (error: unknown) => void;
  settled = false;
  constructor() {
    this.promise = new Promise<T>((res, rej) => {
      this.resolve = (v) => {
        this.settled = true;
        res(v);
      };
      this.reject = (e) => {
        this.settled = true;
        rej(e);
      };
    });
  }
}

/** One deferred per offset, created when the user function is first called for it. */
function deferreds<T>(): { calls: number[]; get(offset: number): Deferred<T> } {
  const map = new Map<number, Deferred<T>>();
  const calls: number[] = [];
  return {
    calls,
    get(offset: number): Deferred<T> {
      let d = map.get(offset);
      if (d === undefined) map.set(offset, d = new Deferred<T>());
      return d;
    },
  };
}

function offsetOf(m: Message<unknown>): number {
  return m.source.offset!;
}

Deno.test("async RunTask: an offset is never committed before its promise settles; results in input order", async () => {
  const d = deferreds<string>();
  const recorder = new CommitRecorder();
  const sink = new Sink<string>();
  const step = new RunTask(
    (m: Message<number>) => {
      d.calls.push(m.payload);
      return d.get(offsetOf(m)).promise;
    },
    sink,
    { name: "save" },
  );
  for (let i = 0; i < 5; i++) step.submit(brokerMessage(i, i));
  await waitFor(() => d.calls.length === 1, "the first call");
  await tick();
  step.poll();
  assertEquals(d.calls, [0], "one call at a time: the next message waits for the promise");
  assertEquals(sink.received.length, 0, "nothing handed on while the promise is pending");
  d.get(0).resolve("zero");
  await waitFor(() => d.calls.length === 2, "the second call");
  assertEquals(sink.received.map((m) => m.payload), ["zero"], "the value, not a promise");
  assertEquals(sink.committed().get(P0), 1, "offset 0 done, so next offset 1, no further");
  for (let i = 1; i < 5; i++) {
    await waitFor(() => d.calls.length > i, `call ${i}`);
    d.get(i).resolve(`v${i}`);
  }
  await step.join(5_000);
  assertEquals(sink.received.map((m) => m.payload), ["zero", "v1", "v2", "v3", "v4"]);
  void recorder;
});

Deno.test("async RunTask: a rejection fails the step with a StepError naming partition and offset; nothing after it is handed on", async () => {
  const sink = new Sink<number>();
  const step = new RunTask(
    async (m: Message<number>) => {
      await tick();
      if (m.payload === 2) throw new Error("insert failed");
      return m.payload;
    },
    sink,
    { name: "insert" },
  );
  for (let i = 0; i < 5; i++) step.submit(brokerMessage(i, i));
  const e = await pollError(step);
  assertInstanceOf(e, StepError);
  assertEquals([e.step, e.partition, e.offset], ["insert", P0, 2]);
  assertStringIncludes(e.message, "insert failed");
  assertEquals(sink.received.map((m) => m.payload), [0, 1]);
  assertEquals(sink.committed().get(P0), 2, "committable stops before the failed message");
  await assertRejects(() => step.join(1_000), StepError);
});

Deno.test("async RunTask: MessageRejected holds the message and runs it again; InvalidMessage is reported", async () => {
  let attempts = 0;
  const sink = new Sink<number>();
  const step = new RunTask(async (m: Message<number>) => {
    await tick();
    if (m.payload === 1 && attempts++ < 2) throw new MessageRejected();
    if (m.payload === 3) throw new InvalidMessage(P0, 3, "bad");
    return m.payload * 10;
  }, sink);
  for (let i = 0; i < 5; i++) step.submit(brokerMessage(i, i));
  const e = await pollError(step);
  assertInstanceOf(e, InvalidMessage);
  assertEquals(e.offset, 3);
  await step.join(5_000);
  assertEquals(attempts, 3);
  assertEquals(sink.received.filter((m) => !m.filtered).map((m) => m.payload), [0, 10, 20, 40]);
  assertEquals(sink.committed().get(P0), 5);
});

Deno.test("async RunTask is backpressured by its highWaterMark while a promise is pending", async () => {
  const d = new Deferred<number>();
  const step = new RunTask((_m: Message<number>) => d.promise, new Sink<number>(), {
    highWaterMark: 4,
    chunkSize: 1,
  });
  let accepted = 0;
  for (let i = 0; i < 100; i++) {
    try {
      step.submit(brokerMessage(i, i));
      accepted++;
    } catch (e) {
      assertInstanceOf(e, MessageRejected);
      break;
    }
    await tick();
  }
  assertLessOrEqual(accepted, 6, "the queue bound holds while the function waits");
  d.resolve(1);
  await step.join(5_000);
});

Deno.test("async RunTask under a processor: a rejection stops run() with a StepError; nothing at or after it is committed", async () => {
  const clock = new ManualClock(1_000_000);
  const broker = new LocalBroker<number>({ clock });
  const topic = broker.createTopic(`t-${crypto.randomUUID()}`, 1);
  for (let i = 0; i < 10; i++) broker.produce(topic, i);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: PromiseRejectionEvent) => {
    unhandled.push(e.reason);
    e.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  try {
    const p = new StreamProcessor<number>({
      consumer: broker.getConsumer("g"),
      topics: [topic.name],
      factory: {
        createWithPartitions: (commit: Commit) =>
          new RunTask(
            async (m: Message<number>) => {
              await tick();
              if (m.payload === 6) throw new Error("db down");
              return m.payload;
            },
            new CommitOffsets(commit),
            { name: "save" },
          ),
      },
      commitPolicy: CommitPolicy.IMMEDIATE,
      pollTimeoutMs: 0,
      handleSignals: false,
      clock,
    });
    let outcome: unknown = "pending";
    const running = p.run().then(() => outcome = "returned", (e) => outcome = e);
    await waitFor(
      () => outcome !== "pending" || unhandled.length > 0,
      "run() to end, or a rejection to go unhandled",
    );
    if (outcome === "pending") {
      p.signalShutdown();
      await running;
    }
    assertLessOrEqual(broker.committed("g").get(Partition.of(topic.name, 0)) ?? 0, 6);
    assertEquals(unhandled, [], "no unhandled rejection");
    assertInstanceOf(outcome, StepError);
    assertEquals([outcome.step, outcome.offset], ["save", 6]);
  } finally {
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
  }
});

Deno.test("async FilterStep: awaited in order; a dropped message's offset moves on only after its verdict", async () => {
  const d = deferreds<boolean>();
  const sink = new Sink<number>();
  const step = new FilterStep((m: Message<number>) => {
    d.calls.push(m.payload);
    return d.get(offsetOf(m)).promise;
  }, sink);
  for (let i = 0; i < 4; i++) step.submit(brokerMessage(i, i));
  await waitFor(() => d.calls.length === 1, "first verdict asked");
  d.get(0).resolve(false);
  await waitFor(() => d.calls.length === 2, "second verdict asked");
  assertEquals(sink.received.length, 0, "a Promise is not a truthy verdict");
  d.get(1).resolve(true);
  await waitFor(() => d.calls.length === 3, "third");
  d.get(2).resolve(false);
  await waitFor(() => d.calls.length === 4, "fourth");
  d.get(3).resolve(false);
  await step.join(5_000);
  assertEquals(sink.received.filter((m) => !m.filtered).map((m) => m.payload), [1]);
  assertEquals(step.dropped, 3);
  assertEquals(sink.committed().get(P0), 4);
});

Deno.test("async FilterStep: a rejection fails the step naming the message", async () => {
  const sink = new Sink<number>();
  const step = new FilterStep(
    async (m: Message<number>) => {
      await tick();
      if (m.payload === 1) throw new Error("lookup failed");
      return true;
    },
    sink,
    { name: "allowed" },
  );
  for (let i = 0; i < 3; i++) step.submit(brokerMessage(i, i));
  const e = await pollError(step);
  assertInstanceOf(e, StepError);
  assertEquals([e.step, e.offset], ["allowed", 1]);
  assertEquals(sink.received.map((m) => m.payload), [0]);
});

Deno.test("async Decode: the decoded value is handed on, a rejection is an InvalidMessage", async () => {
  const sink = new Sink<number>();
  const step = new Decode(async (raw: string) => {
    await tick();
    const n = Number(raw);
    if (Number.isNaN(n)) throw new Error("not a number");
    return n;
  }, sink);
  step.submit(brokerMessage("1", 0));
  step.submit(brokerMessage("x", 1));
  step.submit(brokerMessage("3", 2));
  const e = await pollError(step);
  assertInstanceOf(e, InvalidMessage);
  assertEquals(e.offset, 1);
  await step.join(5_000);
  assertEquals(sink.received.filter((m) => !m.filtered).map((m) => m.payload), [1, 3]);
  assertEquals(step.failures, 1);
});

Deno.test("async Reduce accumulator: each fold is awaited before the next; the batch holds the awaited value", async () => {
  const d = deferreds<number>();
  const sink = new Sink<number>();
  const step = new Reduce(
    (acc: number, m: Message<number>) => {
      d.calls.push(m.payload);
      return d.get(offsetOf(m)).promise.then((x) => acc + x);
    },
    () => 0,
    sink,
    { maxBatchSize: 3 },
  );
  for (let i = 0; i < 3; i++) step.submit(brokerMessage(i + 1, i));
  await waitFor(() => d.calls.length === 1, "first fold");
  await tick();
  assertEquals(d.calls, [1], "the next fold waits");
  d.get(0).resolve(1);
  await waitFor(() => d.calls.length === 2, "second fold");
  d.get(1).resolve(2);
  await waitFor(() => d.calls.length === 3, "third fold");
  assertEquals(sink.received.length, 0, "nothing before the batch is complete");
  d.get(2).resolve(3);
  await step.join(5_000);
  assertEquals(sink.received.map((m) => m.payload), [6]);
  assertEquals(sink.committed().get(P0), 3);
});

Deno.test("async Reduce accumulator: a rejection fails the step; the batch is not handed on", async () => {
  const sink = new Sink<number>();
  const step = new Reduce(
    async (acc: number, m: Message<number>) => {
      await tick();
      if (m.payload === 2) throw new Error("fold failed");
      return acc + m.payload;
    },
    () => 0,
    sink,
    { maxBatchSize: 10, name: "sum" },
  );
  for (let i = 0; i < 4; i++) step.submit(brokerMessage(i, i));
  const e = await pollError(step);
  assertInstanceOf(e, StepError);
  assertEquals([e.step, e.offset], ["sum", 2]);
  await assertRejects(() => step.join(1_000), StepError);
  assertEquals(sink.received.length, 0);
});

Deno.test("async Unfold: the promised iterable is awaited and unfolded in order", async () => {
  const d = deferreds<string[]>();
  const sink = new Sink<string>();
  const step = new Unfold((m: Message<number>) => {
    d.calls.push(m.payload);
    return d.get(offsetOf(m)).promise;
  }, sink);
  step.submit(brokerMessage(0, 0));
  step.submit(brokerMessage(1, 1));
  await waitFor(() => d.calls.length === 1, "first call");
  await tick();
  assertEquals(d.calls, [0]);
  d.get(0).resolve(["a", "b"]);
  await waitFor(() => d.calls.length === 2, "second call");
  assertEquals(sink.committed().get(P0), 1);
  d.get(1).resolve([]);
  await step.join(5_000);
  assertEquals(sink.received.filter((m) => !m.filtered).map((m) => m.payload), ["a", "b"]);
  assertEquals(sink.committed().get(P0), 2);
});

Deno.test("async Unfold: a rejection fails the step naming the message", async () => {
  const sink = new Sink<string>();
  const step = new Unfold(
    async (m: Message<number>) => {
      await tick();
      if (m.payload === 1) throw new Error("fetch failed");
      return ["x"];
    },
    sink,
    { name: "expand" },
  );
  step.submit(brokerMessage(0, 0));
  step.submit(brokerMessage(1, 1));
  const e = await pollError(step);
  assertInstanceOf(e, StepError);
  assertEquals([e.step, e.offset], ["expand", 1]);
  assertEquals(sink.committed().get(P0), 1);
});

Deno.test("BatchStep then async RunTask: the batch is committed only once the bulk write settled", async () => {
  const d = new Deferred<void>();
  const recorder = new CommitRecorder();
  const step: ProcessingStrategy<number> = new BatchStep<number>(
    new RunTask(async (b: Message<Message<number>[]>) => {
      await d.promise;
      return b.payload.length;
    }, new CommitOffsets(recorder.commit)),
    { maxBatchSize: 3 },
  );
  for (let i = 0; i < 3; i++) step.submit(brokerMessage(i, i));
  await tick();
  step.poll();
  await tick();
  assertEquals(recorder.latest.get(P0), undefined, "nothing committed before the write");
  d.resolve();
  await waitFor(() => {
    step.poll();
    return recorder.latest.get(P0) === 3;
  }, "the batch committed");
  await step.join(1_000);
  assert(d.settled);
});

// Callbacks Sluice does not await: a promise from them is a typed error at the first one,
// never a NaN size, a fresh key per message, a truthy flag or a dropped rejection.

Deno.test("a size() that returns a promise is a ConfigurationError at submit, naming the step", () => {
  const step = new RunTask((m: Message<number>) => m.payload, new Sink<number>(), {
    name: "sized",
    // @ts-expect-error: size must return a number
    size: () => Promise.resolve(1),
    highWaterMark: 100,
  });
  const e = assertThrows(() => step.submit(brokerMessage(1, 0)), ConfigurationError);
  assertStringIncludes(e.message, `step "sized": size() returned a promise`);
  step.terminate();
});

Deno.test("KeyedConcurrency: a key() that returns a promise fails the step instead of making a new key per message", async () => {
  const step = new KeyedConcurrency((m: Message<number>) => m.payload, new Sink<number>(), {
    name: "keyed",
    // @ts-expect-error: key must return a string or a number
    key: (m: Message<number>) => Promise.resolve(m.payload % 2),
  });
  step.submit(brokerMessage(1, 0));
  const e = await pollError(step);
  assertStringIncludes(String(e), `key() returned a promise`);
  step.terminate();
});

Deno.test("RateLimit: a cost() that returns a promise fails the step with a ConfigurationError", async () => {
  const step = new RateLimit(new Sink<number>(), {
    ratePerSecond: 100,
    // @ts-expect-error: cost must return a number
    cost: () => Promise.resolve(1),
  });
  step.submit(brokerMessage(1, 0));
  const e = await pollError(step);
  assertStringIncludes(String(e), "cost() returned a promise");
  step.terminate();
});

Deno.test("LoadShed: an onDrop that returns a promise fails the step (it is not awaited)", async () => {
  const full = new Gate<number>(false);
  const step = new LoadShed(full, {
    capacity: 1,
    policy: "drop-newest",
    onDrop: () => Promise.resolve(),
  });
  let e: unknown;
  for (let i = 0; i < 4 && e === undefined; i++) {
    try {
      step.submit(brokerMessage(i, i));
    } catch (err) {
      if (!(err instanceof MessageRejected)) e = err;
    }
    await tick();
  }
  e ??= await pollError(step);
  assertInstanceOf(e, ConfigurationError);
  assertStringIncludes(e.message, "onDrop() returned a promise");
  step.terminate();
});

Deno.test("CircuitBreaker: an isFailure that returns a promise fails the step", async () => {
  const step = new CircuitBreaker(
    () => Promise.reject(new Error("down")),
    new Sink<number>(),
    // @ts-expect-error: isFailure must return a boolean
    { isFailure: () => Promise.resolve(true), onStateChange: () => {} },
  );
  step.submit(brokerMessage(1, 0));
  const e = await pollError(step);
  assertStringIncludes(String(e), "isFailure() returned a promise");
  step.terminate();
});

Deno.test("Reduce: an initialValue that returns a promise is a ConfigurationError; computeBatchSize one fails the step", async () => {
  assertThrows(
    () =>
      new Reduce(
        (acc: number) => acc,
        // @ts-expect-error: initialValue must return the accumulator
        () => Promise.resolve(0),
        new Sink<number>(),
        { maxBatchSize: 2 },
      ),
    ConfigurationError,
    "initialValue returned a promise",
  );
  const step = new Reduce((acc: number) => acc + 1, () => 0, new Sink<number>(), {
    maxBatchSize: 2,
    // @ts-expect-error: computeBatchSize must return a number
    computeBatchSize: () => Promise.resolve(1),
  });
  step.submit(brokerMessage(1, 0));
  const e = await pollError(step);
  assertInstanceOf(e, StepError);
  assertStringIncludes(e.message, "computeBatchSize must return a number synchronously");
});

Deno.test("BufferStep: an isReady() that returns a promise fails the step instead of counting as true", async () => {
  const sink = new Sink<number[]>();
  let rows: number[] = [];
  const step = new BufferStep<number, number[]>({
    append(m: Message<number>) {
      rows.push(m.payload);
    },
    // @ts-expect-error: isReady must return a boolean
    isReady: () => Promise.resolve(false),
    flush() {
      const r = rows;
      rows = [];
      return r;
    },
  }, sink);
  step.submit(brokerMessage(1, 0));
  const e = await pollError(step);
  assertInstanceOf(e, StepError);
  assertStringIncludes(e.message, "isReady() returned a promise");
  assertEquals(sink.received.length, 0);
});

Deno.test("Unfold: an async generator fails the step saying to return a promise of an array", async () => {
  const step = new Unfold(
    // @ts-expect-error: an async iterable is not an iterable
    async function* (m: Message<number>) {
      yield m.payload;
    },
    new Sink<number>(),
  );
  step.submit(brokerMessage(1, 0));
  const e = await pollError(step);
  assertInstanceOf(e, StepError);
  assertStringIncludes(e.message, "async iterable");
});

Deno.test("async RunTask: a join that times out abandons the pending call; its late rejection is neither committed nor unhandled", async () => {
  const d = new Deferred<number>();
  const recorder = new CommitRecorder();
  const unhandled: unknown[] = [];
  const onUnhandled = (e: PromiseRejectionEvent) => {
    unhandled.push(e.reason);
    e.preventDefault();
  };
  globalThis.addEventListener("unhandledrejection", onUnhandled);
  try {
    const step = new RunTask(
      (m: Message<number>) => m.payload === 1 ? d.promise : m.payload,
      new CommitOffsets(recorder.commit),
    );
    for (let i = 0; i < 3; i++) step.submit(brokerMessage(i, i));
    await step.join(50);
    assertEquals(recorder.latest.get(P0), 1, "only offset 0 was finished");
    d.reject(new Error("late failure"));
    await tick();
    await tick();
    assertEquals(unhandled, []);
    assertEquals(recorder.latest.get(P0), 1);
  } finally {
    globalThis.removeEventListener("unhandledrejection", onUnhandled);
  }
});
