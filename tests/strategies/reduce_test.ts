import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { ConfigurationError, MessageRejected } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { type BufferProtocol, BufferStep } from "../../strategies/buffer.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { Reduce } from "../../strategies/reduce.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { InvalidMessage, type Message, Partition, StepError } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { strategyContract } from "../_support/contract.ts";
import {
  brokerMessage,
  CommitRecorder,
  feed,
  filtered,
  Gate,
  offsets,
  P0,
  P1,
  pollError,
  Sink,
  tick,
  waitFor,
} from "../_support/helpers.ts";

// ---- contract -------------------------------------------------------------------------

strategyContract<number>({
  name: "Reduce",
  holds: 3,
  batch: 3,
  make: ({ next, highWaterMark, clock }) =>
    new Reduce((acc: number, m) => acc + m.payload, () => 0, next, {
      maxBatchSize: 3,
      maxBatchTimeMs: 1000,
      highWaterMark,
      clock,
    }),
  makeFailing: ({ next, highWaterMark, clock }) =>
    new Reduce(
      () => {
        throw new Error("boom");
      },
      () => 0,
      next,
      { maxBatchSize: 3, highWaterMark, clock, name: "failing" },
    ),
});

// ---- harness ----------------------------------------------------------------------------

const sum = (acc: number, m: Message<number>) => acc + m.payload;

// ---- Reduce -----------------------------------------------------------------------------

Deno.test("Reduce: flushes by size; each result carries the highest offsets and the newest timestamp", async () => {
  const sink = new Sink<number>();
  const step = new Reduce(sum, () => 0, sink, { maxBatchSize: 3, clock: new ManualClock() });
  await feed(step, [0, 1, 2, 3, 4, 5, 6].map((i) => brokerMessage(i, i)));
  await waitFor(() => sink.received.length === 2, "two full batches");
  assertEquals(sink.received.map((m) => m.payload), [3, 12]);
  assertEquals(sink.received.map((m) => offsets(m.committable)), [
    { "contract-topic/0": 3 },
    { "contract-topic/0": 6 },
  ]);
  assertEquals(sink.received.map((m) => m.timestamp), [
    brokerMessage(0, 2).timestamp,
    brokerMessage(0, 5).timestamp,
  ]);
  await step.join();
  assertEquals(sink.received.map((m) => m.payload), [3, 12, 6], "join flushes the partial batch");
  assertEquals(sink.committed().get(P0), 7);
});

Deno.test("Reduce: a batch due by time is flushed from poll() with no new message", async () => {
  const clock = new ManualClock(0);
  const sink = new Sink<number>();
  const step = new Reduce(sum, () => 0, sink, {
    maxBatchSize: 100,
    maxBatchTimeMs: 200,
    clock,
  });
  step.submit(brokerMessage(1, 0));
  step.submit(brokerMessage(2, 1));
  await tick();
  await clock.advance(199);
  step.poll();
  assertEquals(sink.received.length, 0, "not due before maxBatchTimeMs");
  await clock.advance(1);
  step.poll();
  assertEquals(sink.received.map((m) => m.payload), [3], "due at maxBatchTimeMs, flushed by poll");
  assertEquals(sink.committed().get(P0), 2);
});

Deno.test("Reduce: the batch time counts from the batch's first message, not from creation", async () => {
  const clock = new ManualClock(0);
  const sink = new Sink<number>();
  const step = new Reduce(sum, () => 0, sink, { maxBatchTimeMs: 100, clock });
  await clock.advance(10_000); // idle long after creation
  step.poll();
  step.submit(brokerMessage(5, 0));
  await tick();
  step.poll();
  assertEquals(sink.received.length, 0, "a fresh batch is not flushed at once after an idle gap");
  await clock.advance(60);
  step.submit(brokerMessage(6, 1));
  await tick();
  step.poll();
  assertEquals(sink.received.length, 0);
  await clock.advance(40);
  step.poll();
  assertEquals(sink.received.map((m) => m.payload), [11]);
  // The next batch's clock starts with its own first message.
  await clock.advance(500);
  step.submit(brokerMessage(7, 2));
  await tick();
  step.poll();
  assertEquals(sink.received.length, 1);
  await clock.advance(100);
  step.poll();
  assertEquals(sink.received.map((m) => m.payload), [11, 7]);
});

Deno.test("Reduce: an overdue batch is flushed before a new message joins it", async () => {
  const clock = new ManualClock(0);
  const sink = new Sink<number>();
  const step = new Reduce(sum, () => 0, sink, { maxBatchTimeMs: 100, clock });
  step.submit(brokerMessage(1, 0));
  await tick();
  await clock.advance(150); // nobody polled
  step.submit(brokerMessage(2, 1));
  await tick();
  assertEquals(sink.received.map((m) => m.payload), [1]);
  assertEquals(offsets(sink.received[0].committable), { "contract-topic/0": 1 });
  await step.join();
  assertEquals(sink.received.map((m) => m.payload), [1, 2]);
});

Deno.test("Reduce: filtered messages ride with the pending batch and never overtake it", async () => {
  const clock = new ManualClock(0);
  const sink = new Sink<number>();
  const step = new Reduce(sum, () => 0, sink, { maxBatchSize: 2, clock });
  step.submit(brokerMessage(10, 0));
  step.submit(filtered(1));
  step.submit(filtered(0, P1));
  await tick();
  step.poll();
  assertEquals(sink.received.length, 0, "no filtered marker passed ahead of the pending batch");
  step.submit(brokerMessage(20, 2));
  await tick();
  assertEquals(sink.received.length, 1);
  assertEquals(sink.received[0].payload, 30);
  assertEquals(offsets(sink.received[0].committable), {
    "contract-topic/0": 3,
    "contract-topic/1": 1,
  });
  // With no batch pending, filtered offsets go on at once (one marker per chunk).
  step.submit(filtered(3));
  step.submit(filtered(4));
  await tick();
  assertEquals(sink.received.length, 2);
  assert(sink.received[1].filtered);
  assertEquals(offsets(sink.received[1].committable), { "contract-topic/0": 5 });
  // A fully filtered stream keeps committing, and join has nothing left to flush.
  await step.join();
  assertEquals(sink.received.length, 2);
  assertEquals(sink.committed().get(P0), 5);
});

Deno.test("Reduce: join flushes the partial batch through a closed next step once it opens", async () => {
  const recorder = new CommitRecorder();
  const gate = new Gate<number>(false, new CommitOffsets(recorder.commit));
  const step = new Reduce(sum, () => 0, gate, { maxBatchSize: 10, clock: new ManualClock() });
  await feed(step, [1, 2, 3].map((i) => brokerMessage(i, i)));
  let joined = false;
  const join = step.join(undefined).then(() => joined = true);
  await tick();
  assertEquals(joined, false, "join waits while the next step rejects");
  assertEquals(recorder.latest.size, 0);
  gate.setOpen(true);
  await join;
  assertEquals(gate.received.map((m) => m.payload), [6]);
  assertEquals(recorder.latest.get(P0), 4);
});

Deno.test("Reduce: a rejection at any point changes nothing but timing; the accumulator runs once per message", async () => {
  // Input: 23 messages on two partitions, with filtered ones sprinkled in.
  const input: Message<number>[] = [];
  for (let i = 0; i < 23; i++) {
    const p = i % 3 === 2 ? P1 : P0;
    input.push(i % 5 === 4 ? filtered(i, p) : brokerMessage(i, i, p));
  }
  async function run(rejectAt: number) {
    const clock = new ManualClock(0);
    const sink = new Sink<number[]>((a) => a === rejectAt);
    let calls = 0;
    const step = new Reduce(
      (acc: number[], m: Message<number>) => {
        calls++;
        acc.push(m.payload);
        return acc;
      },
      () => [],
      sink,
      { maxBatchSize: 4, maxBatchTimeMs: 50, clock, highWaterMark: 2, chunkSize: 1 },
    );
    for (const [k, m] of input.entries()) {
      await feed(step, [m]);
      if (k % 7 === 6) {
        await clock.advance(60); // time flushes from poll, some rejected
        step.poll();
      }
    }
    await step.join(1000);
    return { sink, calls };
  }
  const baseline = await run(-1);
  const real = input.filter((m) => !m.filtered).map((m) => m.payload);
  assertEquals(baseline.calls, real.length);
  assertEquals(baseline.sink.received.filter((m) => !m.filtered).flatMap((m) => m.payload), real);
  for (let k = 0; k < baseline.sink.attempts; k++) {
    const r = await run(k);
    assertEquals(r.sink.rejections, 1, `attempt ${k} was rejected`);
    assertEquals(r.calls, real.length, `accumulator ran once per message (reject at ${k})`);
    assertEquals(
      r.sink.received.filter((m) => !m.filtered).flatMap((m) => m.payload),
      real,
      `every message is in exactly one batch, in order (reject at ${k})`,
    );
    assertEquals(
      r.sink.committed(),
      baseline.sink.committed(),
      `same final commit (reject at ${k})`,
    );
    // Commits never pass a message that is not yet in a delivered batch.
    const seen = new Map<Partition, number>();
    for (const m of r.sink.received) {
      for (const v of m.filtered ? [] : m.payload) {
        const src = input[v];
        const p = [...src.committable.keys()][0];
        seen.set(p, Math.max(seen.get(p) ?? 0, v + 1));
      }
      for (const [p, o] of m.committable) {
        for (const src of input) {
          const [sp, so] = [...src.committable][0];
          if (sp === p && so <= o && !src.filtered) {
            assert((seen.get(p) ?? 0) >= so, `offset ${o} committed before ${src} was delivered`);
          }
        }
      }
    }
  }
});

Deno.test("Reduce: an accumulator failure surfaces in poll naming the step and the message", async () => {
  const step = new Reduce(
    (acc: number, m: Message<number>) => {
      if (m.payload === 2) throw new Error("cannot add 2");
      return acc + m.payload;
    },
    () => 0,
    new Sink<number>(),
    { maxBatchSize: 10, name: "adder", clock: new ManualClock() },
  );
  step.submit(brokerMessage(1, 0));
  step.submit(brokerMessage(2, 1));
  await tick();
  const e = assertThrows(() => step.poll(), StepError);
  assertStringIncludes(e.message, `step "adder"`);
  assertStringIncludes(e.message, "contract-topic/0@1");
  assertStringIncludes(e.message, "cannot add 2");
  await assertRejects(() => step.join(100), StepError);
});

Deno.test("Reduce: initialValue and flush failures name the batch", async () => {
  let n = 0;
  const step = new Reduce(
    sum,
    () => {
      if (n++ > 0) throw new Error("no more accumulators");
      return 0;
    },
    new Sink<number>(),
    { maxBatchSize: 2, clock: new ManualClock() },
  );
  step.submit(brokerMessage(1, 0));
  step.submit(brokerMessage(2, 1));
  await tick();
  const e = assertThrows(() => step.poll(), StepError);
  assertStringIncludes(e.message, "batch of 2 message(s) ending at contract-topic/0@1");
});

Deno.test("Reduce: InvalidMessage from the accumulator flushes the batch first, then reports", async () => {
  const sink = new Sink<number>();
  const step = new Reduce(
    (acc: number, m: Message<number>) => {
      if (m.payload === 99) throw new InvalidMessage(P0, 2, "not a number");
      return acc + m.payload;
    },
    () => 0,
    sink,
    { maxBatchSize: 10, clock: new ManualClock() },
  );
  step.submit(brokerMessage(1, 0));
  step.submit(brokerMessage(2, 1));
  step.submit(brokerMessage(99, 2));
  step.submit(brokerMessage(3, 3));
  const error = await pollError(step, "the invalid message to be reported");
  assertInstanceOf(error, InvalidMessage);
  assertEquals(error.step, "reduce");
  await step.join(1000);
  assertEquals(sink.received.length, 3);
  assertEquals(sink.received[0].payload, 3, "the batch before it went first");
  assertEquals(offsets(sink.received[0].committable), { "contract-topic/0": 2 });
  assert(sink.received[1].filtered, "then the invalid message's marker");
  assertEquals(offsets(sink.received[1].committable), { "contract-topic/0": 3 });
  assertEquals(sink.received[2].payload, 3);
  assertEquals(sink.committed().get(P0), 4);
});

Deno.test("Reduce: MessageRejected from the accumulator holds the message until the next poll", async () => {
  let paused = true;
  let calls = 0;
  const sink = new Sink<number>();
  const step = new Reduce(
    (acc: number, m: Message<number>) => {
      calls++;
      if (paused) throw new MessageRejected();
      return acc + m.payload;
    },
    () => 0,
    sink,
    { maxBatchSize: 1, clock: new ManualClock() },
  );
  step.submit(brokerMessage(4, 0));
  await tick();
  assertEquals(sink.received.length, 0);
  paused = false;
  step.poll();
  await waitFor(() => sink.received.length === 1, "the held message to be folded");
  assertEquals(sink.received[0].payload, 4);
  assertEquals(calls, 2);
});

Deno.test("Reduce: computeBatchSize counts towards maxBatchSize", async () => {
  const sink = new Sink<string[]>();
  const step = new Reduce(
    (acc: string[], m: Message<string>) => [...acc, m.payload],
    () => [],
    sink,
    { maxBatchSize: 10, computeBatchSize: (m) => m.payload.length, clock: new ManualClock() },
  );
  await feed(step, ["abcd", "efgh", "ij", "k"].map((s, i) => brokerMessage(s, i)));
  await tick();
  assertEquals(sink.received.map((m) => m.payload), [["abcd", "efgh", "ij"]]);
});

Deno.test("Reduce: bad options are configuration errors that say what to do", () => {
  const sink = new Sink<number>();
  assertThrows(
    () => new Reduce(sum, () => 0, sink, {}),
    ConfigurationError,
    "maxBatchSize and/or maxBatchTimeMs",
  );
  assertThrows(
    () => new Reduce(sum, () => 0, sink, { maxBatchSize: 0 }),
    ConfigurationError,
    "maxBatchSize",
  );
  assertThrows(
    () => new Reduce(sum, () => 0, sink, { maxBatchTimeMs: -5 }),
    ConfigurationError,
    "maxBatchTimeMs",
  );
  assertThrows(
    () => new Reduce(sum, 0 as unknown as () => number, sink, { maxBatchSize: 1 }),
    ConfigurationError,
    "initialValue must be a function",
  );
  assertThrows(
    () => new BufferStep({} as BufferProtocol<number, number>, sink),
    ConfigurationError,
    "append(message), isReady() and flush()",
  );
});

Deno.test("Reduce: the queue bounds memory while the next step rejects", async () => {
  const gate = new Gate<number>(false);
  const step = new Reduce(sum, () => 0, gate, {
    maxBatchSize: 2,
    highWaterMark: 4,
    chunkSize: 1,
    clock: new ManualClock(),
  });
  let accepted = 0;
  for (let i = 0; i < 100; i++) {
    try {
      step.submit(brokerMessage(1, i));
      accepted++;
    } catch (e) {
      assertInstanceOf(e, MessageRejected);
      await tick();
      step.poll();
    }
  }
  // queue (4) + batch being built (2, one of them in the held result) + a chunk in process.
  assert(accepted <= 4 + 2 + 2, `accepted ${accepted} messages while the next step rejected`);
  gate.setOpen(true);
  await step.join();
  assertEquals(gate.received.reduce((a, m) => a + m.payload, 0), accepted);
});

// ---- with the stream processor ------------------------------------------------------------

Deno.test("Reduce under the processor: commits follow flushes, by time while idle, and revoke flushes the partial batch", async () => {
  const clock = new ManualClock(1_000_000);
  const broker = new LocalBroker<number>({ clock });
  const topic = broker.createTopic(`reduce-${crypto.randomUUID()}`, 1);
  const p0 = Partition.of(topic, 0);
  for (let i = 0; i < 10; i++) broker.produce(topic, i);
  const sums: number[] = [];
  const processor = new StreamProcessor<number>({
    consumer: broker.getConsumer("g"),
    topics: [topic],
    commitPolicy: CommitPolicy.IMMEDIATE,
    pollTimeoutMs: 0,
    handleSignals: false,
    clock,
    factory: {
      createWithPartitions: (commit) =>
        new Reduce(
          sum,
          () => 0,
          new RunTask((m: Message<number>) => {
            sums.push(m.payload);
            return m.payload;
          }, new CommitOffsets(commit)),
          { maxBatchSize: 1000, maxBatchTimeMs: 500, clock },
        ),
    },
  });
  for (let i = 0; i < 5; i++) await processor.runOnce();
  assertEquals(
    broker.committed("g").get(p0),
    undefined,
    "nothing committed while the batch is open",
  );
  await clock.advance(500);
  await processor.runOnce(); // no new message: the poll flushes the due batch
  await waitFor(() => sums.length === 1, "the time flush");
  for (let i = 0; i < 3; i++) await processor.runOnce();
  assertEquals(sums, [45]);
  assertEquals(broker.committed("g").get(p0), 10);
  for (let i = 10; i < 13; i++) broker.produce(topic, i);
  for (let i = 0; i < 3; i++) await processor.runOnce();
  assertEquals(broker.committed("g").get(p0), 10);
  // A second member joins: revoke closes and joins the pipeline, flushing the partial batch.
  const other = broker.getConsumer("g");
  other.subscribe([topic]);
  await processor.runOnce();
  assertEquals(sums, [45, 33]);
  assertEquals(broker.committed("g").get(p0), 13, "the partial batch was committed on revoke");
  await other.close();
  processor.signalShutdown();
});

Deno.test("Reduce: a batch due by time is flushed even while the accumulator holds a message", async () => {
  const clock = new ManualClock(0);
  let paused = false;
  const sink = new Sink<number>();
  const step = new Reduce(
    (acc: number, m: Message<number>) => {
      if (paused) throw new MessageRejected();
      return acc + m.payload;
    },
    () => 0,
    sink,
    { maxBatchTimeMs: 100, clock },
  );
  step.submit(brokerMessage(1, 0));
  await tick();
  paused = true;
  step.submit(brokerMessage(2, 1)); // held
  await tick();
  await clock.advance(100);
  step.poll();
  await waitFor(() => sink.received.length === 1, "the due batch");
  assertEquals(sink.received[0].payload, 1);
  assertEquals(offsets(sink.received[0].committable), { "contract-topic/0": 1 });
  paused = false;
  step.poll();
  await step.join();
  assertEquals(sink.received.map((m) => m.payload), [1, 2]);
});
