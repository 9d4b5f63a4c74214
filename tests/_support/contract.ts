/**
 * The strategy contract suite. Every built-in strategy registers itself with
 * {@link strategyContract}; the suite proves the behaviour the processor relies on.
 */
import {
  assert,
  assertEquals,
  assertGreaterOrEqual,
  assertInstanceOf,
  assertLessOrEqual,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { type Clock, ManualClock } from "../../clock.ts";
import { ClosedError, MessageRejected } from "../../errors.ts";
import type { ProcessingStrategy } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import type { Message } from "../../types.ts";
import {
  brokerMessage,
  CommitRecorder,
  Gate,
  P0,
  pollError,
  settlesWithin,
  tick,
} from "./helpers.ts";

/** What the suite hands a case's `make`. */
export interface ContractContext {
  /** The next step (a gate in front of a committing step); ignore it for terminal steps. */
  // deno-lint-ignore no-explicit-any
  next: ProcessingStrategy<any>;
  /** High-water mark to configure (in messages). */
  highWaterMark: number;
  /** Clock to configure. */
  clock: Clock;
  /** Commit callback, for terminal steps that commit themselves. */
  commit: CommitRecorder["commit"];
}

/** One strategy under the contract. */
export interface ContractCase<T> {
  /** Test-name prefix. */
  name: string;
  /** Builds the step. */
  make(ctx: ContractContext): ProcessingStrategy<T>;
  /** The i-th input message (offset i on one partition). Default: payload i. */
  message?(i: number): Message<T>;
  /** True for steps with no next step (CommitOffsets, Noop). */
  terminal?: boolean;
  /** False for steps that never commit (Noop). Default true. */
  commits?: boolean;
  /**
   * Messages the step may hold internally beyond its queue before the queue fills
   * (a batch being built, workers' in-flight items...). Default 0.
   */
  holds?: number;
  /**
   * Input messages needed before anything reaches the next step (e.g. a batch size);
   * the suite submits at least this many in the commit test. Default 1.
   */
  batch?: number;
  /** A variant that fails asynchronously on the first message, if the step can fail. */
  makeFailing?(ctx: ContractContext): ProcessingStrategy<T>;
}

const HWM = 4;

function setup(open: boolean) {
  const recorder = new CommitRecorder();
  const commitStep = new CommitOffsets(recorder.commit, { name: "contract-commit" });
  const gate = new Gate<unknown>(open, commitStep);
  return { recorder, gate };
}

/** Submits until the first rejection (at most `limit` messages); returns how many were accepted. */
function fill<T>(step: ProcessingStrategy<T>, make: (i: number) => Message<T>, limit: number) {
  for (let i = 0; i < limit; i++) {
    try {
      step.submit(make(i));
    } catch (e) {
      assertInstanceOf(e, MessageRejected);
      return i;
    }
  }
  return limit;
}

/** A step of case `c` in front of a gate (open or not) and a committing step, started. */
async function started<T>(c: ContractCase<T>, open: boolean) {
  const { recorder, gate } = setup(open);
  const step = c.make({
    next: gate,
    highWaterMark: HWM,
    clock: new ManualClock(),
    commit: recorder.commit,
  });
  await tick(); // let the stream start
  return { recorder, gate, step };
}

/** Registers the contract tests for one strategy. */
export function strategyContract<T>(c: ContractCase<T>): void {
  const msg = c.message ?? ((i: number) => brokerMessage(i as unknown as T, i));
  const holds = c.holds ?? 0;
  const commits = c.commits ?? true;
  const batch = c.batch ?? 1;

  Deno.test(`${c.name}: accepts until full, then rejects; ready resolves when room returns`, async () => {
    const { gate } = setup(false);
    const clock = new ManualClock();
    const step = c.make({ next: gate, highWaterMark: HWM, clock, commit: () => {} });
    await tick(); // let the stream start
    const limit = HWM + holds + 10;
    const accepted = fill(step, msg, limit);
    if (c.terminal) {
      // Nothing downstream can block a terminal step: it must still bound what one
      // turn may queue (the high-water mark) and free room right after.
      assertEquals(accepted, HWM, "a terminal step accepts exactly highWaterMark in one turn");
    } else {
      assertGreaterOrEqual(accepted, 1, "accepts at least one message");
      assertLessOrEqual(accepted, HWM + holds, "rejects once the queue is full");
    }
    gate.setOpen(true);
    assertEquals(
      await settlesWithin(step.ready, 2000),
      "resolved",
      "ready resolves when room returns",
    );
    step.submit(msg(accepted));
  });

  Deno.test(`${c.name}: submitMany takes what submit would take, in order, and all of it commits`, async () => {
    // Against a blocked next step: the same number accepted as one submit at a time.
    const one = c.make({
      next: setup(false).gate,
      highWaterMark: HWM,
      clock: new ManualClock(),
      commit: () => {},
    });
    const many = c.make({
      next: setup(false).gate,
      highWaterMark: HWM,
      clock: new ManualClock(),
      commit: () => {},
    });
    await tick();
    const limit = HWM + holds + 10;
    const messages = Array.from({ length: limit }, (_, i) => msg(i));
    const accepted = fill(one, msg, limit);
    if (many.submitMany === undefined) return;
    assertEquals(many.submitMany(messages, 0), accepted, "same count as submit one by one");
    assertEquals(many.submitMany(messages, accepted), accepted, "a full step takes nothing more");
    one.terminate();
    many.terminate();
    assertThrows(() => many.submitMany!(messages, 0), ClosedError);

    // Against an open next step: everything goes through, from any starting index.
    const { recorder, step } = await started(c, true);
    const n = Math.max(3 * HWM + 1, batch);
    const all = Array.from({ length: n }, (_, i) => msg(i));
    let i = 0;
    while (i < n) {
      const next = step.submitMany!(all, i);
      assert(next >= i && next <= n, `submitMany returned ${next} from ${i}`);
      i = next;
      if (i < n) {
        step.poll();
        await step.ready;
      }
    }
    step.close();
    await step.join(5000);
    if (commits) assertEquals(recorder.latest.get(P0), n, "every message is committed after join");
  });

  if (c.makeFailing) {
    const makeFailing = c.makeFailing;
    Deno.test(`${c.name}: poll surfaces an asynchronous failure naming the step`, async () => {
      const { gate } = setup(true);
      const step = makeFailing({
        next: gate,
        highWaterMark: HWM,
        clock: new ManualClock(),
        commit: () => {},
      });
      await tick();
      step.submit(msg(0));
      const error = await pollError(step, "poll() to throw");
      assertInstanceOf(error, Error);
      assert(!(error instanceof MessageRejected), "a failure is not a rejection");
    });
  }

  Deno.test(`${c.name}: close + join finishes submitted work and commits it`, async () => {
    const { recorder, step } = await started(c, true);
    const n = Math.max(10, batch);
    for (let i = 0; i < n; i++) {
      for (;;) {
        try {
          step.submit(msg(i));
          break;
        } catch (e) {
          assertInstanceOf(e, MessageRejected);
          step.poll();
          await step.ready;
        }
      }
    }
    step.close();
    await step.join(5000);
    if (commits) {
      assertEquals(recorder.latest.get(P0), n, "every submitted message is committed after join");
    } else {
      assertEquals(recorder.latest.size, 0, "nothing is committed");
    }
    assertThrows(() => step.submit(msg(n)), ClosedError, "closed");
  });

  Deno.test(`${c.name}: terminate abandons queued work`, async () => {
    const { recorder, gate } = setup(false);
    const step = c.make({
      next: gate,
      highWaterMark: HWM,
      clock: new ManualClock(),
      commit: recorder.commit,
    });
    await tick();
    const accepted = fill(step, msg, HWM);
    step.terminate();
    gate.setOpen(true);
    await tick();
    try {
      step.poll();
    } catch { /* a terminated step may report nothing or its state */ }
    await tick();
    if (!c.terminal) {
      assertEquals(recorder.latest.size, 0, `none of ${accepted} abandoned messages is committed`);
    }
    const e = assertThrows(() => step.submit(msg(99)), ClosedError);
    assertStringIncludes(e.message, "closed");
  });

  if (!c.terminal) {
    Deno.test(`${c.name}: join honours its timeout on the injected clock`, async () => {
      const { recorder, gate } = setup(false);
      const clock = new ManualClock();
      const step = c.make({ next: gate, highWaterMark: HWM, clock, commit: recorder.commit });
      await tick();
      fill(step, msg, Math.max(1, batch));
      step.close();
      let done = false;
      const joined = step.join(100).then(() => done = true);
      await clock.advance(50);
      assertEquals(done, false, "join still waits before the timeout");
      await clock.advance(60);
      assertEquals(await settlesWithin(joined, 2000), "resolved", "join returns at the timeout");
      assertEquals(recorder.latest.size, 0, "abandoned work is not committed");
    });
  }
}

/** The partition the suite's messages use. */
export { P0 };
