/**
 * A MapStep writes its outputs over its chunk's array and hands that array on (no copy, no
 * second array): what the next steps see must be what a fresh array would have given —
 * every output once, in order, skips dropped, a hold in the middle of a chunk handing on
 * only what came before it, and arrays a step keeps never changed under it.
 */
import { assert, assertEquals } from "@std/assert";
import { MessageRejected } from "../../errors.ts";
import type { ProcessingStrategy } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { FilterStep } from "../../strategies/filter.ts";
import { RunTask } from "../../strategies/run_task.ts";
import type { Message } from "../../types.ts";
import { brokerMessage, CommitRecorder, P0, waitFor } from "../_support/helpers.ts";

/** A last step that keeps the arrays it is given by submitMany (as a step may). */
class KeepArrays<T> implements ProcessingStrategy<T> {
  readonly arrays: Message<T>[][] = [];
  readonly copies: T[][] = [];
  readonly received: T[] = [];
  get ready(): Promise<void> {
    return Promise.resolve();
  }
  submit = (m: Message<T>): void => {
    if (!m.filtered) this.received.push(m.payload);
  };
  submitMany = (ms: readonly Message<T>[], from: number): number => {
    this.arrays.push(ms as Message<T>[]);
    this.copies.push(ms.map((m) => m.payload));
    for (let i = from; i < ms.length; i++) if (!ms[i].filtered) this.received.push(ms[i].payload);
    return ms.length;
  };
  poll(): void {}
  close(): void {}
  join(): Promise<void> {
    return Promise.resolve();
  }
  terminate(): void {}
}

Deno.test("chain hand-over: skips, five steps, every output once and in order; kept arrays unchanged", async () => {
  const last = new KeepArrays<number>();
  let s: ProcessingStrategy<number> = last;
  for (let k = 0; k < 4; k++) s = new RunTask((m: Message<number>) => m.payload + 1, s);
  const head = new FilterStep((m: Message<number>) => m.payload % 3 !== 0, s);
  const n = 2000;
  const ms = Array.from({ length: n }, (_, i) => brokerMessage(i, i));
  let i = 0;
  while (i < n) {
    i = head.submitMany(ms, i);
    if (i < n) {
      head.poll();
      await head.ready;
    }
  }
  await head.join();
  // (FilterStep hands on a filtered marker carrying the offsets of what it dropped.)
  const expected = ms.map((m) => m.payload).filter((p) => p % 3 !== 0).map((p) => p + 4);
  assertEquals(last.received, expected);
  // An array handed on is never written to afterwards by the step that handed it on.
  for (let k = 0; k < last.arrays.length; k++) {
    assertEquals(last.arrays[k].map((m) => m.payload), last.copies[k]);
  }
});

Deno.test("chain hand-over: a hold in the middle of a chunk hands on what came before it, once", async () => {
  const commits = new CommitRecorder();
  const seen: number[] = [];
  let holds = 0;
  const tail = new RunTask((m: Message<number>) => {
    seen.push(m.payload);
  }, new CommitOffsets(commits.commit));
  const head = new RunTask(
    (m: Message<number>) => {
      if (m.payload === 100 && holds++ < 2) throw new MessageRejected();
      return m.payload;
    },
    tail,
    { maxBackoffMs: 10 },
  );
  const n = 300;
  const ms = Array.from({ length: n }, (_, i) => brokerMessage(i, i));
  let i = 0;
  while (i < n) {
    i = head.submitMany(ms, i);
    if (i < n) {
      head.poll();
      await head.ready;
    }
  }
  await waitFor(() => seen.length === n, "every message seen");
  await head.join();
  assertEquals(seen, ms.map((m) => m.payload));
  assertEquals(commits.latest.get(P0), n);
});

Deno.test("chain hand-over: a chunk a waiting next step starts at once and then holds counts against its high-water mark, and nothing overtakes it", async () => {
  const commits = new CommitRecorder();
  const seen: number[] = [];
  let open!: () => void;
  const gate = new Promise<void>((resolve) => open = resolve);
  const tail = new RunTask((m: Message<number>) => {
    seen.push(m.payload);
  }, new CommitOffsets(commits.commit));
  // The first message waits for the gate: the chunk it is in is taken at once (the queue
  // was empty), then goes on holding.
  const mid = new RunTask(
    (m: Message<number>) => m.payload === 0 ? gate.then(() => m.payload) : m.payload,
    tail,
    { highWaterMark: 300 },
  );
  const head = new RunTask((m: Message<number>) => m.payload, mid, { highWaterMark: 256 });
  const n = 3000;
  const ms = Array.from({ length: n }, (_, i) => brokerMessage(i, i));
  let i = head.submitMany(ms, 0);
  for (let turn = 0; turn < 20; turn++) {
    head.poll();
    await new Promise((r) => setTimeout(r, 1));
    i = head.submitMany(ms, i);
  }
  assertEquals(seen, [], "nothing passes the held message");
  assert(mid.desiredSize <= 0, `the held chunk fills the next step's queue (${mid.desiredSize})`);
  assert(i < n, "upstream is held back");
  open();
  while (i < n) {
    head.poll();
    await head.ready;
    i = head.submitMany(ms, i);
  }
  await head.join();
  assertEquals(seen, ms.map((m) => m.payload), "every message once, in order");
  assertEquals(commits.latest.get(P0), n);
});
