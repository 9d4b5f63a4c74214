import { assert, assertEquals, assertLessOrEqual, assertThrows } from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { ConfigurationError, MessageRejected } from "../../errors.ts";
import { AdaptiveBatch } from "../../strategies/adaptive_batch.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { Noop } from "../../strategies/noop.ts";
import { FILTERED_PAYLOAD, type Message } from "../../types.ts";
import { strategyContract } from "../_support/contract.ts";
import { brokerMessage, CommitRecorder, Gate, P0, tick } from "../_support/helpers.ts";

strategyContract<number>({
  name: "AdaptiveBatch",
  holds: 2,
  batch: 2,
  make: ({ next, highWaterMark, clock }) =>
    new AdaptiveBatch((payloads: number[]) => payloads.length, next, {
      targetMs: 100,
      initialSize: 2,
      maxSize: 2,
      highWaterMark,
      clock,
    }),
  makeFailing: ({ next, highWaterMark, clock }) =>
    new AdaptiveBatch(
      () => Promise.reject(new Error("bulk insert failed")),
      next,
      { targetMs: 100, initialSize: 1, highWaterMark, clock },
    ),
});

Deno.test("AdaptiveBatch: rejects bad options with a ConfigurationError", () => {
  const fn = (p: number[]) => p.length;
  assertThrows(
    () => new AdaptiveBatch(fn, new Noop(), { targetMs: 0 }),
    ConfigurationError,
    "targetMs",
  );
  assertThrows(
    () => new AdaptiveBatch(fn, new Noop(), { targetMs: 10, minSize: 10, maxSize: 5 }),
    ConfigurationError,
    "maxSize",
  );
  assertThrows(
    () => new AdaptiveBatch(fn, new Noop(), { targetMs: 10, initialSize: 50, maxSize: 20 }),
    ConfigurationError,
    "initialSize",
  );
});

/**
 * Drives a sink whose time per batch is `fixed + perItem * n` ms on a manual clock, with
 * an endless supply of messages, and returns the sizes of the batches it saw.
 */
async function converge(
  { fixed, perItem, targetMs, initialSize, batches }: {
    fixed: number;
    perItem: number;
    targetMs: number;
    initialSize: number;
    batches: number;
  },
) {
  const clock = new ManualClock(0);
  const recorder = new CommitRecorder();
  const seen: number[] = [];
  const step = new AdaptiveBatch(
    async (payloads: number[]) => {
      seen.push(payloads.length);
      await clock.sleep(fixed + perItem * payloads.length);
      return payloads.length;
    },
    new CommitOffsets(recorder.commit),
    { targetMs, initialSize, minSize: 1, maxSize: 5000, highWaterMark: 6000, clock },
  );
  await tick();
  let offset = 0;
  while (step.batches < batches) {
    for (;;) {
      try {
        step.submit(brokerMessage(offset, offset));
        offset++;
      } catch (e) {
        assert(e instanceof MessageRejected);
        break;
      }
    }
    await clock.advance(5);
    step.poll();
  }
  step.terminate();
  return { step, seen, recorder };
}

Deno.test("AdaptiveBatch: converges on the size that fits the target time (linear sink, best size 200)", async () => {
  // time(n) = 20 + 0.5 n ms; target 120 ms → best size (120 - 20) / 0.5 = 200.
  const { step, seen } = await converge({
    fixed: 20,
    perItem: 0.5,
    targetMs: 120,
    initialSize: 10,
    batches: 40,
  });
  const last = seen.slice(-10);
  for (const n of last) {
    assert(n >= 176 && n <= 224, `batch of ${n} is within ±12% of 200 (sizes: ${seen.join(",")})`);
  }
  assertEquals(new Set(last).size, 1, "the size has settled (no oscillation)");
  assert(step.history.every((h) => h.nextSize >= 1 && h.nextSize <= 5000), "within bounds");
  // It got there quickly: the growth is geometric, not one message at a time.
  const firstGood = seen.findIndex((n) => n >= 176);
  assertLessOrEqual(firstGood, 10, `reached the neighbourhood of 200 in ${firstGood} batches`);
});

Deno.test("AdaptiveBatch: shrinks when batches run late (starting far too big)", async () => {
  // time(n) = 5 + 2 n ms; target 100 ms → best size 47.5.
  const { seen } = await converge({
    fixed: 5,
    perItem: 2,
    targetMs: 100,
    initialSize: 4000,
    batches: 30,
  });
  assertEquals(seen[0], 4000);
  const last = seen.slice(-5);
  for (const n of last) {
    assert(n >= 42 && n <= 52, `batch of ${n} near 47 (sizes: ${seen.join(",")})`);
  }
});

Deno.test("AdaptiveBatch: a partial batch is processed after maxWaitMs and does not grow the size", async () => {
  const clock = new ManualClock(0);
  const gate = new Gate<number>(true);
  const step = new AdaptiveBatch((p: number[]) => p.length, gate, {
    targetMs: 100,
    initialSize: 10,
    maxWaitMs: 500,
    clock,
  });
  await tick();
  for (let i = 0; i < 3; i++) step.submit(brokerMessage(i, i));
  await tick();
  step.poll();
  assertEquals(gate.received.length, 0);
  await clock.advance(500);
  step.poll();
  assertEquals(gate.received.map((m) => m.payload), [3]);
  assertEquals(gate.received[0].committable.get(P0), 3);
  assertEquals(step.batchSize, 10, "a partial batch that finished early is no reason to grow");
});

Deno.test("AdaptiveBatch: filtered messages' offsets ride with the batch, never ahead of it", async () => {
  const clock = new ManualClock(0);
  const gate = new Gate<number>(true);
  const step = new AdaptiveBatch((p: number[]) => p.reduce((a, b) => a + b, 0), gate, {
    targetMs: 100,
    initialSize: 3,
    clock,
  });
  await tick();
  step.submit(brokerMessage(1, 0));
  step.submit(brokerMessage(FILTERED_PAYLOAD as unknown as number, 1));
  step.submit(brokerMessage(2, 2));
  await tick();
  assertEquals(gate.received.length, 0, "the filtered offset waits for the batch");
  step.submit(brokerMessage(3, 3));
  await tick();
  assertEquals(gate.received.length, 1);
  assertEquals(gate.received[0].payload, 6, "fn saw only the real payloads");
  assertEquals(gate.received[0].committable.get(P0), 4);
  // A batch of only filtered offsets is forwarded as a marker at the end.
  step.submit(brokerMessage(FILTERED_PAYLOAD as unknown as number, 4));
  step.close();
  await step.join(1000);
  const last = gate.received.at(-1) as Message<unknown>;
  assert(last.filtered);
  assertEquals(last.committable.get(P0), 5);
});
