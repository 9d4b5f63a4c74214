import { assertEquals } from "@std/assert";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import type { Message } from "../../types.ts";
import { strategyContract } from "../_support/contract.ts";
import { brokerMessage, CommitRecorder, feed, P0 } from "../_support/helpers.ts";

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
