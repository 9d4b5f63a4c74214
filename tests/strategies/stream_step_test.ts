import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertLessOrEqual,
  assertThrows,
} from "@std/assert";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { Noop } from "../../strategies/noop.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { byteLength } from "../../strategies/size.ts";
import { StreamStep } from "../../strategies/stream_step.ts";
import { type Message, StepError } from "../../types.ts";
import { ManualClock } from "../../clock.ts";
import { MessageRejected } from "../../errors.ts";
import { brokerMessage, CommitRecorder, Gate, P0, tick } from "../_support/helpers.ts";

/** A source of `count` messages (payload = offset) that counts how often it is pulled. */
function countingSource(count: number) {
  const state = { pulls: 0, cancelled: false };
  let next = 0;
  const readable = new ReadableStream<Message<number>>({
    pull(controller) {
      state.pulls++;
      if (next >= count) controller.close();
      else controller.enqueue(brokerMessage(next, next++));
    },
    cancel() {
      state.cancelled = true;
    },
  });
  return { readable, state };
}

/** Runs macrotasks until `value()` has not changed for `quiet` of them in a row. */
async function settle(value: () => number, quiet = 30): Promise<number> {
  let last = value();
  for (let same = 0; same < quiet;) {
    await tick();
    const now = value();
    if (now === last) same++;
    else [last, same] = [now, 0];
  }
  return last;
}

Deno.test("step.writable: pipeTo from a ReadableStream; backpressure reaches the source; only processed messages commit", async () => {
  const recorder = new CommitRecorder();
  let processed = 0;
  const commits: Array<{ committed: number; processed: number }> = [];
  const commit: typeof recorder.commit = (offsets, force) => {
    recorder.commit(offsets, force);
    commits.push({ committed: recorder.latest.get(P0) ?? 0, processed });
  };
  const gate = new Gate<number>(false, new CommitOffsets(commit));
  const step = new RunTask(
    (m: Message<number>) => {
      processed++;
      return m.payload;
    },
    gate,
    { highWaterMark: 4 },
  );
  const { readable, state } = countingSource(100);
  const piped = readable.pipeTo(step.writable);

  // The next step rejects: the chain fills, then the source is no longer pulled.
  const pulls = await settle(() => state.pulls);
  assertLessOrEqual(pulls, 8, "pulled no more than the chain holds: 4 queued, a few in hand");
  for (let i = 0; i < 50; i++) await tick();
  assertEquals(state.pulls, pulls, "not pulled while the chain is full");
  assertEquals(recorder.latest.size, 0, "nothing committed: nothing got past the gate");

  gate.setOpen(true);
  await piped; // the source ended: the step was closed and joined, its work committed
  assertEquals(gate.received.map((m) => m.payload), Array.from({ length: 100 }, (_, i) => i));
  assertEquals(recorder.latest.get(P0), 100);
  for (const c of commits) {
    assertLessOrEqual(c.committed, c.processed, "a commit never passes a message not processed");
  }
  assert(!state.cancelled);
});

Deno.test("step.writable: a step failure rejects the pipe and cancels the source; nothing past it commits", async () => {
  const recorder = new CommitRecorder();
  const step = new RunTask(
    (m: Message<number>) => {
      if (m.payload === 7) throw new Error("seven");
      return m.payload;
    },
    new CommitOffsets(recorder.commit),
    { highWaterMark: 4, chunkSize: 1 },
  );
  const { readable, state } = countingSource(100);
  let error: unknown;
  await readable.pipeTo(step.writable).catch((e) => error = e);
  assertInstanceOf(error, StepError);
  assertEquals(error.offset, 7);
  assert(state.cancelled, "the source was cancelled");
  assertLessOrEqual(recorder.latest.get(P0) ?? 0, 7, "nothing committed past the failed message");
});

Deno.test("step.writable: a writer can write to it while submit is not used; closing joins the chain", async () => {
  const recorder = new CommitRecorder();
  const step = new RunTask(
    (m: Message<number>) => m.payload * 2,
    new CommitOffsets(recorder.commit),
    {
      highWaterMark: 2,
    },
  );
  const writer = step.writable.getWriter();
  for (let i = 0; i < 10; i++) {
    await writer.ready;
    writer.write(brokerMessage(i, i));
  }
  await writer.close();
  assertEquals(recorder.latest.get(P0), 10);
});

/** Holds every chunk until `release()`; shows its `signal`. */
class Holding extends StreamStep<number> {
  #release: (() => void) | undefined;
  constructor(next: CommitOffsets<number>) {
    super("holding", next);
  }
  get abortSignal(): AbortSignal {
    return this.signal;
  }
  failWith(error: unknown): void {
    this.fail(error);
  }
  release(): void {
    this.#release?.();
  }
  protected process(): Promise<void> {
    return new Promise((resolve) => this.#release = resolve);
  }
}

Deno.test("StreamStep.signal: aborts on terminate", () => {
  const step = new Holding(new CommitOffsets(new CommitRecorder().commit));
  step.submit(brokerMessage(1, 0));
  assert(!step.abortSignal.aborted);
  step.terminate();
  assert(step.abortSignal.aborted);
});

Deno.test("StreamStep.signal: aborts when join runs out of time with work left, not when it finishes", async () => {
  const held = new Holding(new CommitOffsets(new CommitRecorder().commit));
  held.submit(brokerMessage(1, 0));
  await held.join(20);
  assert(held.abortSignal.aborted, "the held chunk was abandoned");

  const done = new Holding(new CommitOffsets(new CommitRecorder().commit));
  done.submit(brokerMessage(1, 0));
  await tick();
  const joined = done.join(10_000);
  done.release();
  await joined;
  assert(!done.abortSignal.aborted, "nothing was abandoned");
});

Deno.test("StreamStep.signal: aborts when the step fails", () => {
  const step = new Holding(new CommitOffsets(new CommitRecorder().commit));
  step.failWith(new Error("broken"));
  assert(step.abortSignal.aborted);
  assertEquals(step.abortSignal.reason instanceof DOMException, true);
});

Deno.test("join after terminate returns at once without draining anything", async () => {
  const recorder: number[] = [];
  const step = new RunTask(
    (m: { payload: number }) => m.payload,
    new CommitOffsets(() => recorder.push(1)),
  );
  step.terminate();
  await step.join(100);
  assertEquals(recorder.length, 0);
});

Deno.test("submitMany writes whole chunks from the caller's array: order, counts and commits hold", async () => {
  for (const chunkSize of [1, 3, 4, 7]) {
    const seen: number[] = [];
    const recorder = new CommitRecorder();
    const step = new RunTask(
      (m: Message<number>) => seen.push(m.payload),
      new CommitOffsets(recorder.commit),
      { highWaterMark: 10, chunkSize },
    );
    const n = 103;
    const all = Array.from({ length: n }, (_, i) => brokerMessage(i, i));
    let i = 0;
    let rejections = 0;
    while (i < n) {
      const next = step.submitMany(all, i);
      assert(next - i <= 10, "never more than the high-water mark in one turn");
      i = next;
      if (i < n) {
        rejections++;
        step.poll();
        await step.ready;
      }
    }
    step.close();
    await step.join(5000);
    assertEquals(seen, Array.from({ length: n }, (_, k) => k), `chunkSize ${chunkSize}: in order`);
    assertEquals(recorder.latest.get(P0), n, `chunkSize ${chunkSize}: all committed`);
    assert(rejections > 0, "the queue filled up on the way");
  }
});

Deno.test("submitMany on a byte-bounded step counts bytes, as submit does", async () => {
  const step = new RunTask((m: Message<Uint8Array>) => m.payload, new Noop(), {
    highWaterMark: 100,
    size: byteLength,
  });
  const all = Array.from({ length: 10 }, (_, i) => brokerMessage(new Uint8Array(30), i));
  assertEquals(step.submitMany(all, 0), 4, "30 + 30 + 30 + 30 bytes: the fourth fills the bound");
  await step.ready;
  step.terminate();
});

Deno.test("a size function that throws leaves its message out of the queue: nothing is taken twice", async () => {
  const bad = (m: Message<number>) => {
    if (m.payload === 2) throw new TypeError("cannot size payload 2");
    return 1;
  };
  for (const many of [false, true]) {
    const seen: number[] = [];
    const step = new RunTask((m: Message<number>) => seen.push(m.payload), new Noop(), {
      highWaterMark: 10,
      size: bad,
    });
    const all = Array.from({ length: 5 }, (_, i) => brokerMessage(i, i));
    if (many) {
      assertEquals(step.submitMany(all, 0), 2, "takes the messages before the bad one");
      assertThrows(() => step.submitMany(all, 2), TypeError, "cannot size payload 2");
    } else {
      step.submit(all[0]);
      step.submit(all[1]);
      assertThrows(() => step.submit(all[2]), TypeError, "cannot size payload 2");
    }
    step.close();
    await step.join(1000);
    assertEquals(seen, [0, 1], `${many ? "submitMany" : "submit"}: the bad message was not queued`);
  }
});

Deno.test("submitMany takes nothing more once a chunk it wrote has failed the step", async () => {
  const step = new RunTask(
    (m: Message<number>) => {
      if (m.payload === 0) throw new Error("boom on 0");
      return m.payload;
    },
    new Noop(),
    { highWaterMark: 100, chunkSize: 2 },
  );
  await tick(); // the stream has started: a written chunk is processed at once
  const all = Array.from({ length: 10 }, (_, i) => brokerMessage(i, i));
  const taken = step.submitMany(all, 0);
  assert(taken < all.length, `stopped after the failure (took ${taken})`);
  assertThrows(() => step.submitMany(all, taken), StepError, "boom on 0");
  step.terminate();
});

Deno.test("StreamStep: a held message is retried at a rare poll (a paused processor's wake) from a quarter of its wait on, else on its timer", async () => {
  const clock = new ManualClock();
  let calls = 0;
  const step = new RunTask<number, number>(
    () => {
      calls++;
      throw new MessageRejected();
    },
    new Noop(),
    { clock, maxBackoffMs: 1000 },
  );
  step.submit(brokerMessage(1, 0));
  await tick();
  // Ramp the wait up to its bound on the timer alone: 10, 20, ... 640, then 1000 ms.
  for (let i = 0; i < 8; i++) await clock.advance(1000);
  // Up to the next retry on the timer: a 1 s wait starts now.
  const ramped = calls;
  while (calls === ramped) await clock.advance(1);
  const before = calls;
  // 300 ms into a 1 s wait, the first poll of the wait retries at once: no timer of its own.
  await clock.advance(300);
  step.poll();
  await tick();
  assertEquals(calls, before + 1, "retried at the poll");
  // The next wait starts there: a poll 100 ms in (too early) leaves it to the timer.
  await clock.advance(100);
  step.poll();
  await tick();
  assertEquals(calls, before + 1, "too early: not retried");
  await clock.advance(899);
  assertEquals(calls, before + 1);
  await clock.advance(1);
  assertEquals(calls, before + 2, "its timer, 1 s after the retry at the poll");
  step.terminate();
});
