import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { MessageRejected } from "../../errors.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { Unfold } from "../../strategies/unfold.ts";
import { InvalidMessage, type Message, StepError } from "../../types.ts";
import { strategyContract } from "../_support/contract.ts";
import {
  brokerMessage,
  CommitRecorder,
  feed,
  filtered,
  Gate,
  offsets,
  P0,
  P1,
  pollError,
  Sink,
  tick,
  waitFor,
} from "../_support/helpers.ts";

strategyContract<number>({
  name: "Unfold",
  holds: 3,
  make: ({ next, highWaterMark, clock }) =>
    new Unfold((m: Message<number>) => [m.payload, m.payload + 0.5], next, {
      highWaterMark,
      clock,
    }),
  makeFailing: ({ next, highWaterMark, clock }) =>
    new Unfold(
      function* () {
        yield 1;
        throw new Error("generator boom");
      },
      next,
      { highWaterMark, clock, name: "failing" },
    ),
});

strategyContract<number>({
  name: "Unfold (empty output)",
  make: ({ next, highWaterMark, clock }) => new Unfold(() => [], next, { highWaterMark, clock }),
});

Deno.test("Unfold: only the last child carries the input's offsets; empty output still commits", async () => {
  const sink = new Sink<string>();
  const step = new Unfold(
    (m: Message<string>) => m.payload === "" ? [] : m.payload.split(","),
    sink,
    { clock: new ManualClock() },
  );
  await feed(step, [
    brokerMessage("a,b,c", 0),
    brokerMessage("", 1),
    filtered(2) as unknown as Message<string>,
    brokerMessage("d", 3, P1),
  ]);
  await step.join();
  const rows = sink.received.map((m) => [m.filtered ? "F" : m.payload, offsets(m.committable)]);
  assertEquals(rows, [
    ["a", {}],
    ["b", {}],
    ["c", { "contract-topic/0": 1 }],
    ["F", { "contract-topic/0": 2 }],
    ["F", { "contract-topic/0": 3 }],
    ["d", { "contract-topic/1": 4 }],
  ]);
  assertEquals(
    sink.received[0].timestamp,
    brokerMessage("", 0).timestamp,
    "children keep the timestamp",
  );
  assertEquals(step.children, 4);
});

Deno.test("Unfold: a rejection at any point changes nothing; fn runs once per message", async () => {
  const input = [3, 0, 2, 1, 4].map((n, i) => brokerMessage(n, i));
  input.splice(2, 0, filtered(99));
  async function run(rejectAt: number) {
    const sink = new Sink<string>((a) => a === rejectAt);
    let calls = 0;
    const step = new Unfold(
      function* (m: Message<number>) {
        calls++;
        for (let i = 0; i < m.payload; i++) yield `${m.payload}.${i}`;
      },
      sink,
      { clock: new ManualClock(), highWaterMark: 2, chunkSize: 1 },
    );
    await feed(step, input);
    await step.join(1000);
    return { sink, calls };
  }
  const base = await run(-1);
  const rows = (s: Sink<string>) =>
    s.received.map((m) =>
      `${m.filtered ? "F" : m.payload}|${JSON.stringify(offsets(m.committable))}`
    );
  for (let k = 0; k < base.sink.attempts; k++) {
    const r = await run(k);
    assertEquals(r.sink.rejections, 1);
    assertEquals(r.calls, 5, `fn ran once per message (reject at ${k})`);
    assertEquals(rows(r.sink), rows(base.sink), `same output in the same order (reject at ${k})`);
  }
});

Deno.test("Unfold: a large fan-out never blocks forever and is walked lazily under backpressure", async () => {
  const recorder = new CommitRecorder();
  const gate = new Gate<number>(true, new CommitOffsets(recorder.commit));
  let produced = 0;
  const step = new Unfold(
    function* () {
      for (let i = 0; i < 1000; i++) {
        produced++;
        yield i;
      }
    },
    gate,
    { clock: new ManualClock() },
  );
  const orig = gate.submit.bind(gate);
  gate.submit = (m) => {
    if (gate.received.length === 10) gate.setOpen(false);
    orig(m);
  };
  step.submit(brokerMessage(0, 0));
  await tick();
  assertEquals(gate.received.length, 10);
  assert(produced <= 12, `the generator ran ahead by at most one element (${produced})`);
  step.poll();
  assertEquals(recorder.latest.size, 0, "nothing committed before the last child");
  gate.submit = orig;
  gate.setOpen(true);
  await waitFor(() => gate.received.length === 1000, "all children");
  assertEquals(gate.received.map((m) => m.payload), Array.from({ length: 1000 }, (_, i) => i));
  await step.join();
  assertEquals(recorder.latest.get(P0), 1);
});

Deno.test("Unfold: errors surface in poll naming the step and the message", async () => {
  const step = new Unfold(
    (m: Message<number>) => {
      if (m.payload === 7) throw new Error("seven is not allowed");
      return [m.payload];
    },
    new Sink<number>(),
    { name: "explode", clock: new ManualClock() },
  );
  step.submit(brokerMessage(1, 0));
  step.submit(brokerMessage(7, 1));
  await tick();
  const e = assertThrows(() => step.poll(), StepError);
  assertStringIncludes(e.message, `step "explode" failed on message contract-topic/0@1`);
  assertStringIncludes(e.message, "seven is not allowed");

  const notIterable = new Unfold(() => 5 as unknown as number[], new Sink<number>());
  notIterable.submit(brokerMessage(1, 3));
  await tick();
  assertThrows(() => notIterable.poll(), StepError, "must return an iterable");
});

Deno.test("Unfold: MessageRejected before the first element holds; after it, it is an error", async () => {
  let paused = true;
  let calls = 0;
  const sink = new Sink<number>();
  const step = new Unfold(
    (m: Message<number>) => {
      calls++;
      if (paused) throw new MessageRejected();
      return [m.payload, m.payload];
    },
    sink,
    { clock: new ManualClock() },
  );
  step.submit(brokerMessage(5, 0));
  await tick();
  assertEquals(sink.received.length, 0);
  paused = false;
  step.poll();
  await waitFor(() => sink.received.length === 2, "the held message to be unfolded");
  assertEquals(calls, 2);

  const late = new Unfold(
    function* () {
      yield 1;
      yield 2;
      throw new MessageRejected();
    },
    new Sink<number>(),
    { name: "late" },
  );
  late.submit(brokerMessage(0, 0));
  await tick();
  assertThrows(() => late.poll(), StepError, "before yielding anything");
});

Deno.test("Unfold: InvalidMessage mid-way is reported; earlier children committed nothing", async () => {
  const sink = new Sink<number>();
  const step = new Unfold(
    function* (m: Message<number>) {
      yield 1;
      if (m.payload === 0) throw new InvalidMessage(P0, 0, "bad record");
      yield 2;
    },
    sink,
    { clock: new ManualClock() },
  );
  step.submit(brokerMessage(0, 0));
  step.submit(brokerMessage(1, 1));
  const error = await pollError(step, "the invalid message");
  assertInstanceOf(error, InvalidMessage);
  assertEquals(error.step, "unfold");
  await step.join(1000);
  const rows = sink.received.map((m) => [m.filtered ? "F" : m.payload, offsets(m.committable)]);
  assertEquals(rows, [
    [1, {}],
    ["F", { "contract-topic/0": 1 }],
    [1, {}],
    [2, { "contract-topic/0": 2 }],
  ]);
});
