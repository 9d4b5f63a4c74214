import { assert, assertEquals } from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { type BufferProtocol, BufferStep } from "../../strategies/buffer.ts";
import type { Message } from "../../types.ts";
import { strategyContract } from "../_support/contract.ts";
import {
  brokerMessage,
  feed,
  filtered,
  Gate,
  offsets,
  P0,
  Sink,
  tick,
} from "../_support/helpers.ts";

// ---- contract -------------------------------------------------------------------------

/** A buffer of payloads, ready at `limit` payloads. */
class Collect implements BufferProtocol<number, number[]> {
  items: number[] = [];
  appended = 0;
  constructor(readonly limit: number) {}
  append(m: Message<number>): void {
    this.appended++;
    this.items.push(m.payload);
  }
  isReady(): boolean {
    return this.items.length >= this.limit;
  }
  flush(): number[] {
    const out = this.items;
    this.items = [];
    return out;
  }
}

strategyContract<number>({
  name: "BufferStep",
  holds: 4,
  batch: 4,
  make: ({ next, highWaterMark, clock }) =>
    new BufferStep(new Collect(4), next, { highWaterMark, clock, maxBufferTimeMs: 50 }),
  makeFailing: ({ next, highWaterMark, clock }) =>
    new BufferStep<number, number>(
      {
        append() {},
        isReady: () => true,
        flush() {
          throw new Error("flush boom");
        },
      },
      next,
      { highWaterMark, clock },
    ),
});

// ---- harness ----------------------------------------------------------------------------

// ---- BufferStep -----------------------------------------------------------------------

Deno.test("BufferStep: flushes on readiness, on time and on join; isEmpty is honoured", async () => {
  const clock = new ManualClock(0);
  const sink = new Sink<number[]>();
  const collect = new Collect(3);
  const step = new BufferStep(collect, sink, { maxBufferTimeMs: 100, clock });
  await feed(step, [1, 2, 3, 4].map((i) => brokerMessage(i, i)));
  await tick();
  assertEquals(sink.received.map((m) => m.payload), [[1, 2, 3]]);
  await clock.advance(100);
  step.poll();
  assertEquals(sink.received.map((m) => m.payload), [[1, 2, 3], [4]]);
  await feed(step, [brokerMessage(5, 5)]);
  await step.join();
  assertEquals(sink.received.map((m) => m.payload), [[1, 2, 3], [4], [5]]);
  assertEquals(collect.appended, 5);
  assertEquals(step.flushes, 3);

  // A protocol that absorbs messages into nothing still commits their offsets.
  const sink2 = new Sink<number>();
  const dropAll = new BufferStep<number, number>(
    {
      append() {},
      isReady: () => false,
      flush: () => 0,
      isEmpty: () => true,
    },
    sink2,
    { clock },
  );
  await feed(dropAll, [brokerMessage(1, 0), brokerMessage(2, 1)]);
  await tick();
  assertEquals(sink2.received.length, 1);
  assert(sink2.received[0].filtered);
  assertEquals(sink2.committed().get(P0), 2);
});

Deno.test("BufferStep: a time flush rejected in poll is retried before anything that follows", async () => {
  const clock = new ManualClock(0);
  const gate = new Gate<number[]>(true);
  const step = new BufferStep(new Collect(100), gate, { maxBufferTimeMs: 10, clock });
  await feed(step, [brokerMessage(1, 0)]);
  await tick();
  gate.setOpen(false);
  await clock.advance(10);
  step.poll(); // due, rejected: held
  await feed(step, [brokerMessage(2, 1), filtered(2)]);
  await tick();
  step.poll();
  assertEquals(gate.received.length, 0);
  gate.setOpen(true);
  step.poll();
  await step.join();
  assertEquals(gate.received.map((m) => m.payload), [[1], [2]]);
  assertEquals(offsets(gate.received[1].committable), { "contract-topic/0": 3 });
});
