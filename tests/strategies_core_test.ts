import { assertEquals } from "@std/assert";
import { CommitOffsets, FilterStep, Noop, RunTask } from "../mod.ts";
import { strategyContract } from "./contract.ts";

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
