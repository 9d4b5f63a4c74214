import { assert, assertEquals, assertThrows } from "@std/assert";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { FilterStep } from "../../strategies/filter.ts";
import { Noop } from "../../strategies/noop.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { byteLength } from "../../strategies/size.ts";
import { type Message, StepError } from "../../types.ts";
import { strategyContract } from "../_support/contract.ts";
import { brokerMessage, CommitRecorder, feed, P0, tick } from "../_support/helpers.ts";

strategyContract<number>({
  name: "RunTask",
  make: ({ next, highWaterMark, clock }) =>
    new RunTask((m) => m.payload * 2, next, { highWaterMark, clock }),
  makeFailing: ({ next, highWaterMark, clock }) =>
    new RunTask(
      () => {
        throw new Error("boom");
      },
      next,
      { highWaterMark, clock, name: "failing" },
    ),
});

strategyContract<number>({
  name: "FilterStep",
  make: ({ next, highWaterMark, clock }) =>
    new FilterStep((m) => m.payload % 2 === 0, next, { highWaterMark, clock }),
  makeFailing: ({ next, highWaterMark, clock }) =>
    new FilterStep(
      () => {
        throw new Error("boom");
      },
      next,
      { highWaterMark, clock },
    ),
});

strategyContract<number>({
  name: "CommitOffsets",
  terminal: true,
  make: ({ commit, highWaterMark, clock }) => new CommitOffsets(commit, { highWaterMark, clock }),
  makeFailing: ({ highWaterMark, clock }) =>
    new CommitOffsets(() => {
      throw new Error("commit failed");
    }, { highWaterMark, clock }),
});

strategyContract<number>({
  name: "Noop",
  terminal: true,
  commits: false,
  make: ({ highWaterMark, clock }) => new Noop({ highWaterMark, clock }),
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

Deno.test("RunTask hands results on in chunks: a small next queue rejects mid-chunk, nothing is re-run, lost or reordered", async () => {
  const calls = new Map<number, number>();
  const seen: number[] = [];
  const recorder = new CommitRecorder();
  const small = new RunTask(
    (m: Message<number>) => {
      seen.push(m.payload);
      return m.payload;
    },
    new CommitOffsets(recorder.commit),
    { highWaterMark: 3 },
  );
  const step = new RunTask(
    (m: Message<number>) => {
      calls.set(m.payload, (calls.get(m.payload) ?? 0) + 1);
      return m.payload * 10;
    },
    small,
    { highWaterMark: 64 },
  );
  const n = 500;
  await feed(step, Array.from({ length: n }, (_, i) => brokerMessage(i, i)));
  step.close();
  await step.join(5000);
  assertEquals(seen, Array.from({ length: n }, (_, i) => i * 10), "every result, in order");
  assertEquals([...calls.values()].filter((c) => c !== 1), [], "the function ran once per message");
  assertEquals(calls.size, n);
  assertEquals(recorder.latest.get(P0), n, "all committed");
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
