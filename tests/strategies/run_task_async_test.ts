import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertLessOrEqual,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { MessageRejected } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import type { ProcessingStrategy } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTaskAsync } from "../../strategies/run_task_async.ts";
import { FILTERED_PAYLOAD, InvalidMessage, type Message, StepError } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { strategyContract } from "../_support/contract.ts";
import {
  brokerMessage,
  CommitRecorder,
  Flaky,
  Gate,
  P0,
  pollError,
  tick,
  waitFor,
} from "../_support/helpers.ts";

strategyContract<number>({
  name: "RunTaskAsync",
  holds: 3,
  make: ({ next, highWaterMark, clock }) =>
    new RunTaskAsync(
      async (m) => {
        await tick();
        return m.payload * 2;
      },
      next,
      { highWaterMark, clock, concurrency: 2, maxPending: 3 },
    ),
  makeFailing: ({ next, highWaterMark, clock }) =>
    new RunTaskAsync(() => Promise.reject(new Error("boom")), next, {
      highWaterMark,
      clock,
      name: "failing",
    }),
});

interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}

function deferred<T>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A deterministic pseudo-random sequence (mulberry32). */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Submits `messages` in order, polling and awaiting `ready` on rejection. */
async function submitAll<T>(step: ProcessingStrategy<T>, messages: Message<T>[]): Promise<void> {
  for (const m of messages) {
    for (;;) {
      try {
        step.submit(m);
        break;
      } catch (e) {
        assertInstanceOf(e, MessageRejected);
        step.poll();
        await Promise.race([step.ready, tick()]);
      }
    }
  }
}

function pipeline(gateOpen = true) {
  const recorder = new CommitRecorder();
  const gate = new Gate<number>(gateOpen, new CommitOffsets(recorder.commit));
  return { recorder, gate };
}

Deno.test("RunTaskAsync: results are handed on in input order whatever the completion order", async () => {
  const { recorder, gate } = pipeline();
  const calls = new Map<number, number>();
  const waiting: Array<{ n: number; d: Deferred<number> }> = [];
  let running = 0;
  let maxRunning = 0;
  const step = new RunTaskAsync<number, number>(
    async (m) => {
      calls.set(m.payload, (calls.get(m.payload) ?? 0) + 1);
      running++;
      maxRunning = Math.max(maxRunning, running);
      const d = deferred<number>();
      waiting.push({ n: m.payload, d });
      try {
        return await d.promise;
      } finally {
        running--;
      }
    },
    gate,
    { concurrency: 4, maxPending: 8, highWaterMark: 4 },
  );
  const rnd = random(42);
  const n = 60;
  const submitting = submitAll(step, Array.from({ length: n }, (_, i) => brokerMessage(i, i)));
  // Complete whatever is in flight in a random order until everything is through.
  await waitFor(() => {
    if (waiting.length > 0) {
      const i = Math.floor(rnd() * waiting.length);
      const [w] = waiting.splice(i, 1);
      w.d.resolve(w.n * 10);
    }
    step.poll();
    return gate.received.length === n;
  }, "all results to be handed on");
  await submitting;
  assertEquals(gate.received.map((m) => m.payload), Array.from({ length: n }, (_, i) => i * 10));
  assertEquals([...calls.values()].every((c) => c === 1), true, "fn ran once per message");
  assertLessOrEqual(maxRunning, 4, "never more than `concurrency` calls at once");
  await step.join(1000);
  assertEquals(recorder.latest.get(P0), n);
});

Deno.test("RunTaskAsync: a slow head holds back later results and their commits", async () => {
  const { recorder, gate } = pipeline();
  const slow = deferred<number>();
  const step = new RunTaskAsync<number, number>(
    (m) => m.payload === 0 ? slow.promise : Promise.resolve(m.payload),
    gate,
    { concurrency: 4, maxPending: 4 },
  );
  for (let i = 0; i < 4; i++) step.submit(brokerMessage(i, i));
  await waitFor(() => step.pending === 4 && step.inFlight === 1, "three results finished");
  step.poll();
  assertEquals(gate.received.length, 0, "nothing passes the unfinished head");
  assertEquals(recorder.latest.size, 0, "nothing committed past unfinished work");
  // The pending bound is reached: the next message stays in the queue.
  step.submit(brokerMessage(4, 4));
  await tick();
  assertEquals(step.pending, 4);
  slow.resolve(0);
  await waitFor(() => gate.received.length === 5, "everything handed on");
  assertEquals(gate.received.map((m) => m.payload), [0, 1, 2, 3, 4]);
  await step.join(1000);
  assertEquals(recorder.latest.get(P0), 5);
});

Deno.test("RunTaskAsync: a result rejected by the next step is held, never recomputed, never thrown", async () => {
  const { recorder, gate } = pipeline(false);
  let calls = 0;
  const step = new RunTaskAsync<number, number>(
    (m) => {
      calls++;
      return Promise.resolve(m.payload + 100);
    },
    gate,
    { concurrency: 2, maxPending: 3, highWaterMark: 2 },
  );
  const accepted: number[] = [];
  for (let i = 0; i < 10; i++) {
    try {
      step.submit(brokerMessage(i, i));
      accepted.push(i);
    } catch (e) {
      assertInstanceOf(e, MessageRejected);
      break;
    }
    await tick();
  }
  for (let i = 0; i < 5; i++) {
    step.poll(); // never throws MessageRejected out of poll
    await tick();
  }
  assertEquals(calls, 3, "maxPending results computed, then the step waits");
  assertEquals(recorder.latest.size, 0);
  gate.setOpen(true);
  await waitFor(() => gate.received.length === accepted.length, "held results to be handed on");
  await submitAll(step, [brokerMessage(accepted.length, accepted.length)]);
  await step.join(1000);
  assertEquals(
    gate.received.map((m) => m.payload),
    [...accepted, accepted.length].map((i) => i + 100),
  );
  assertEquals(calls, accepted.length + 1, "fn ran exactly once per message");
});

Deno.test("RunTaskAsync: a next step that rejects at random points still gets every result once, in order", async () => {
  const recorder = new CommitRecorder();
  const inner = new CommitOffsets<number>(recorder.commit);
  const rnd = random(7);
  const received: number[] = [];
  const flaky = new Flaky(inner, () => rnd() < 0.5, (m) => received.push(m.payload));
  let calls = 0;
  const step = new RunTaskAsync<number, number>(
    async (m) => {
      calls++;
      if (rnd() < 0.5) await tick();
      return m.payload;
    },
    flaky,
    { concurrency: 3, maxPending: 5, highWaterMark: 3 },
  );
  const n = 50;
  await submitAll(step, Array.from({ length: n }, (_, i) => brokerMessage(i, i)));
  await step.join(5000);
  assertEquals(received, Array.from({ length: n }, (_, i) => i));
  assertEquals(calls, n);
  assertEquals(recorder.latest.get(P0), n);
});

Deno.test("RunTaskAsync: a function error surfaces in poll naming the step and the message; nothing past it is committed", async () => {
  const { recorder, gate } = pipeline();
  const step = new RunTaskAsync<number, number>(
    async (m) => {
      if (m.payload === 3) throw new Error("backend said no");
      await tick();
      return m.payload;
    },
    gate,
    { name: "enrich", concurrency: 8 },
  );
  for (let i = 0; i < 8; i++) step.submit(brokerMessage(i, i));
  const error = await pollError(step, "poll to throw");
  assertInstanceOf(error, StepError);
  assertEquals(error.step, "enrich");
  assertEquals(error.messageRef, `${P0}@3`);
  assertStringIncludes(error.message, "backend said no");
  assertLessOrEqual(recorder.latest.get(P0) ?? 0, 3, "nothing at or past the failed message");
  assert(gate.received.every((m) => m.payload < 3));
  assertThrows(() => step.submit(brokerMessage(9, 9)), StepError);
  await step.join(100).catch(() => {});
});

Deno.test("RunTaskAsync: InvalidMessage from the function is reported through poll, then its offset carried on", async () => {
  const { gate } = pipeline();
  const step = new RunTaskAsync<number, number>(
    (m) => {
      if (m.payload === 1) {
        return Promise.reject(new InvalidMessage(P0, 1, "not a number"));
      }
      return Promise.resolve(m.payload);
    },
    gate,
    { name: "parse" },
  );
  for (let i = 0; i < 3; i++) step.submit(brokerMessage(i, i));
  const error = await pollError(step, "poll to report the invalid message");
  assertInstanceOf(error, InvalidMessage);
  assertEquals(error.offset, 1);
  assertEquals(error.step, "parse");
  await waitFor(() => gate.received.length === 3, "the rest to be handed on");
  assertEquals(gate.received[1].payload as unknown, FILTERED_PAYLOAD);
  assertEquals(gate.received.map((m) => m.committable.get(P0)), [1, 2, 3]);
  await step.join(1000);
});

Deno.test("RunTaskAsync: MessageRejected from the function retries that message on poll, in place", async () => {
  const { gate } = pipeline();
  let blocked = true;
  const attempts = new Map<number, number>();
  const step = new RunTaskAsync<number, number>(
    (m) => {
      attempts.set(m.payload, (attempts.get(m.payload) ?? 0) + 1);
      if (m.payload === 1 && blocked) return Promise.reject(new MessageRejected());
      return Promise.resolve(m.payload);
    },
    gate,
    { concurrency: 2, maxPending: 4 },
  );
  for (let i = 0; i < 4; i++) step.submit(brokerMessage(i, i));
  await waitFor(() => attempts.get(1) === 1, "first attempt");
  await tick();
  await tick();
  assertEquals(gate.received.map((m) => m.payload), [0], "later results wait behind the held one");
  step.poll();
  await waitFor(() => attempts.get(1) === 2, "a retry after poll");
  assertEquals(attempts.get(0), 1, "nothing re-runs another message");
  assertEquals(attempts.has(2), false, "no new message starts while one is held back");
  blocked = false;
  step.poll();
  await waitFor(() => gate.received.length === 4, "everything handed on");
  assertEquals(gate.received.map((m) => m.payload), [0, 1, 2, 3]);
  assertEquals(attempts.get(0), 1);
  assertEquals(attempts.get(3), 1);
  await step.join(1000);
});

Deno.test("RunTaskAsync: join waits for work in flight and flushes it", async () => {
  const { recorder, gate } = pipeline();
  const ds: Deferred<number>[] = [];
  const step = new RunTaskAsync<number, number>(
    (m) => {
      const d = deferred<number>();
      ds.push(d);
      return d.promise.then(() => m.payload);
    },
    gate,
    { concurrency: 4 },
  );
  for (let i = 0; i < 3; i++) step.submit(brokerMessage(i, i));
  await waitFor(() => ds.length === 3, "three calls started");
  step.close();
  let joined = false;
  const joining = step.join(5000).then(() => joined = true);
  await tick();
  assertEquals(joined, false, "join waits for work in flight");
  for (const d of ds.reverse()) d.resolve(0);
  await joining;
  assertEquals(gate.received.length, 3);
  assertEquals(recorder.latest.get(P0), 3);
  assert(gate.joined, "the next step is joined");
});

Deno.test("RunTaskAsync: a join timeout abandons unfinished work and aborts its signal", async () => {
  const { recorder, gate } = pipeline();
  const clock = new ManualClock();
  let signal: AbortSignal | undefined;
  const never = deferred<number>();
  const step = new RunTaskAsync<number, number>(
    (m, s) => {
      signal = s;
      return m.payload === 0 ? Promise.resolve(0) : never.promise;
    },
    gate,
    { clock },
  );
  step.submit(brokerMessage(0, 0));
  step.submit(brokerMessage(1, 1));
  await waitFor(() => signal !== undefined && step.pending === 1, "head done, second running");
  const joining = step.join(100);
  await clock.advance(150);
  await joining;
  assertEquals(signal!.aborted, true);
  assertEquals(recorder.latest.get(P0), 1, "only the finished message is committed");
  never.resolve(1);
  await tick();
  assertEquals(gate.received.length, 1, "a late result is dropped");
});

Deno.test("RunTaskAsync: terminate abandons in-flight work", async () => {
  const { recorder, gate } = pipeline();
  const d = deferred<number>();
  const step = new RunTaskAsync<number, number>(() => d.promise, gate);
  step.submit(brokerMessage(0, 0));
  await tick();
  step.terminate();
  d.resolve(1);
  await tick();
  assertEquals(gate.received.length, 0);
  assertEquals(recorder.latest.size, 0);
  assert(gate.terminated);
});

Deno.test("RunTaskAsync: filtered messages pass through in place without calling the function", async () => {
  const { gate } = pipeline();
  let calls = 0;
  const step = new RunTaskAsync<number, number>(async (m) => {
    calls++;
    await tick();
    return m.payload;
  }, gate);
  step.submit(brokerMessage(0, 0));
  step.submit(brokerMessage(FILTERED_PAYLOAD as unknown as number, 1));
  step.submit(brokerMessage(2, 2));
  await step.join(1000);
  assertEquals(calls, 2);
  assertEquals(gate.received.map((m) => m.committable.get(P0)), [1, 2, 3]);
});

Deno.test("RunTaskAsync: bad options are configuration errors", () => {
  const next = new Gate<number>();
  assertThrows(
    () => new RunTaskAsync<number, number>((m) => m.payload, next, { concurrency: 0 }),
    Error,
    "concurrency",
  );
  assertThrows(
    () =>
      new RunTaskAsync<number, number>((m) => m.payload, next, { concurrency: 4, maxPending: 2 }),
    Error,
    "maxPending (2) must be >= concurrency (4)",
  );
});

Deno.test("RunTaskAsync: under the StreamProcessor every message is processed once and committed", async () => {
  const broker = new LocalBroker<number>();
  const topic = broker.createTopic("async-e2e", 3);
  const n = 300;
  for (let i = 0; i < n; i++) broker.produce(topic, i);
  const rnd = random(3);
  const calls = new Map<number, number>();
  const processor = new StreamProcessor<number>({
    consumer: broker.getConsumer("async-e2e"),
    topics: [topic],
    commitPolicy: new CommitPolicy({ intervalMs: 10 }),
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        new RunTaskAsync<number, number>(
          async (m) => {
            calls.set(m.payload, (calls.get(m.payload) ?? 0) + 1);
            if (rnd() < 0.3) await tick();
            return m.payload;
          },
          new CommitOffsets(commit),
          { concurrency: 8, maxPending: 16, highWaterMark: 8 },
        ),
    },
  });
  const running = processor.run();
  await waitFor(
    () =>
      broker.partitions(topic).every((p) =>
        broker.committed("async-e2e").get(p) === broker.endOffset(p)
      ),
    "everything committed",
    10_000,
  );
  processor.signalShutdown();
  await running;
  assertEquals(calls.size, n);
  assert([...calls.values()].every((c) => c === 1), "each message processed exactly once");
});

Deno.test("RunTaskAsync: an invalid message reported during join leaves the rest running for the next join", async () => {
  const { recorder, gate } = pipeline();
  const clock = new ManualClock();
  const later = deferred<void>();
  const step = new RunTaskAsync<number, number>(
    async (m) => {
      if (m.payload === 1) throw new InvalidMessage(P0, 1, "bad");
      if (m.payload === 2) await later.promise;
      return m.payload;
    },
    gate,
    { clock },
  );
  for (let i = 0; i < 3; i++) step.submit(brokerMessage(i, i));
  step.close();
  const first = step.join(1000).then(() => undefined, (e) => e);
  await clock.advance(10); // join's periodic re-check reports the invalid message
  const error = await first;
  assertInstanceOf(error, InvalidMessage);
  const second = step.join(1000);
  later.resolve();
  await waitFor(() => gate.received.length === 3, "the rest handed on");
  await clock.advance(10);
  await second;
  assertEquals(recorder.latest.get(P0), 3);
  assertEquals(gate.received[1].payload as unknown, FILTERED_PAYLOAD);
});
