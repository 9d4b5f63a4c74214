/**
 * RunTask: the strategy contract, chunked hand-off, and its own chunk loop (outputs written
 * over the chunk's array, index for index) falling back to MapStep's one-by-one path at the
 * first hold, invalid message or promise: what the next step sees must be what MapStep's
 * generic loop gave — every output once and in order, filtered markers passed through
 * untouched, the function run once per message (a held one again only after the hold), and a
 * subclass's own `transform` still used.
 */
import { assert, assertEquals, assertStrictEquals } from "@std/assert";
import { MessageRejected } from "../../errors.ts";
import type { ProcessingStrategy } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import type { TransformResult } from "../../strategies/map_step.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { FILTERED_PAYLOAD, InvalidMessage, type Message } from "../../types.ts";
import { strategyContract } from "../_support/contract.ts";
import { brokerMessage, CommitRecorder, feed, P0, waitFor } from "../_support/helpers.ts";

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

/** Submits `ms` to `head` as a processor does (whole arrays, polling while rejected). */
async function feedChunks<T>(
  head: ProcessingStrategy<T>,
  ms: readonly Message<T>[],
  invalid: InvalidMessage[],
): Promise<void> {
  let i = 0;
  while (i < ms.length) {
    i = head.submitMany!(ms, i);
    if (i < ms.length) {
      poll(head, invalid);
      await head.ready;
    }
  }
}

function poll<T>(head: ProcessingStrategy<T>, invalid: InvalidMessage[]): void {
  try {
    head.poll();
  } catch (e) {
    if (!(e instanceof InvalidMessage)) throw e;
    invalid.push(e);
  }
}

Deno.test("RunTask chunk loop: a hold, an invalid message and a promise mid-chunk; filtered markers pass; each result once, in order", async () => {
  const commits = new CommitRecorder();
  const seen: unknown[] = [];
  const markers: Message<unknown>[] = [];
  const tail = new RunTask((m: Message<number>) => {
    seen.push(m.payload);
    return m.payload;
  }, new CommitOffsets(commits.commit));
  const calls = new Map<number, number>();
  let holds = 0;
  const head = new RunTask(
    (m: Message<number>): number | Promise<number> => {
      calls.set(m.payload, (calls.get(m.payload) ?? 0) + 1);
      if (m.payload === 70 && holds++ < 2) throw new MessageRejected();
      if (m.payload === 130) throw InvalidMessage.fromValue(m.source as never, "bad");
      if (m.payload === 200) return Promise.resolve(m.payload * 10);
      return m.payload * 10;
    },
    tail,
    { maxBackoffMs: 10 },
  );
  const n = 600;
  const ms = Array.from({ length: n }, (_, i) => {
    const m = brokerMessage(i, i);
    if (i % 97 !== 5) return m;
    const marker = m.replacePayload(FILTERED_PAYLOAD as unknown as number);
    markers.push(marker);
    return marker;
  });
  const invalid: InvalidMessage[] = [];
  await feedChunks(head, ms, invalid);
  await waitFor(() => {
    poll(head, invalid);
    return commits.latest.get(P0) === n;
  }, "every offset committed");
  await head.join();
  const expected = ms.filter((m) => !m.filtered && m.payload !== 130).map((m) => m.payload * 10);
  assertEquals(seen, expected, "every output once, in order; the invalid one left out");
  assertEquals(invalid.map((e) => e.offset), [130]);
  for (const m of ms) {
    if (m.filtered) assert(!calls.has(m.payload), "the function never sees a filtered marker");
    else assertEquals(calls.get(m.payload), m.payload === 70 ? 3 : 1, `calls for ${m.payload}`);
  }
});

Deno.test("RunTask chunk loop: a filtered marker is handed on as the same object", () => {
  const got: Message<unknown>[] = [];
  const last = {
    ready: Promise.resolve(),
    submit: (m: Message<unknown>) => void got.push(m),
    poll() {},
    close() {},
    join: () => Promise.resolve(),
    terminate() {},
  };
  const step = new RunTask((m: Message<number>) => m.payload + 1, last);
  const marker = brokerMessage(0, 0).replacePayload(FILTERED_PAYLOAD as unknown as number);
  step.submitMany([brokerMessage(1, 1), marker, brokerMessage(2, 2)], 0);
  return waitFor(() => got.length === 3, "three outputs").then(() => {
    assertEquals(got.map((m) => m.filtered ? "marker" : m.payload), [2, "marker", 3]);
    assertStrictEquals(got[1], marker);
  });
});

Deno.test("RunTask chunk loop: the function is called with the step as `this`, as a method", async () => {
  const receivers = new Set<unknown>();
  const step = new RunTask(function (this: unknown, m: Message<number>) {
    receivers.add(this);
    return m.payload;
  }, new CommitOffsets(() => {}));
  await feedChunks(step, [brokerMessage(1, 0), brokerMessage(2, 1)], []);
  await step.join();
  assertEquals([...receivers], [step]);
});

Deno.test("RunTask chunk loop: a subclass that overrides transform gets its own transform", async () => {
  class Tenfold extends RunTask<number, number> {
    protected override transform(m: Message<number>): TransformResult<number> {
      return m.replacePayload(m.payload * 10);
    }
  }
  const seen: number[] = [];
  const step = new Tenfold(
    (m) => m.payload,
    new RunTask((m: Message<number>) => void seen.push(m.payload), new CommitOffsets(() => {})),
  );
  await feedChunks(step, [1, 2, 3].map((p, i) => brokerMessage(p, i)), []);
  await step.join();
  assertEquals(seen, [10, 20, 30]);
});
