import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertLessOrEqual,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { ConfigurationError, MessageRejected } from "../../errors.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { TransformStep } from "../../strategies/transform.ts";
import { type Message, StepError } from "../../types.ts";
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

const double = () =>
  new TransformStream<number, number>({
    transform(n, c) {
      c.enqueue(n * 2);
    },
  });

strategyContract<number>({
  name: "TransformStep",
  holds: 4,
  make: ({ next, highWaterMark, clock }) =>
    new TransformStep(double(), next, { highWaterMark, clock }),
  makeFailing: ({ next, highWaterMark, clock }) =>
    new TransformStep(
      new TransformStream<number, number>({
        transform() {
          throw new Error("transform boom");
        },
      }),
      next,
      { highWaterMark, clock, name: "failing" },
    ),
});

Deno.test("TransformStep: outputs keep their message's offsets and timestamp; filtered ones keep their place", async () => {
  // An asynchronous transform: outputs arrive later than the filtered messages behind them.
  const slow = new TransformStream<string, string>({
    async transform(s, c) {
      await tick();
      c.enqueue(s.toUpperCase());
    },
  });
  const sink = new Sink<string>();
  const step = new TransformStep(slow, sink, { clock: new ManualClock() });
  await feed(step, [
    brokerMessage("a", 0),
    filtered<string>(1),
    brokerMessage("b", 2, P1),
    filtered<string>(3),
    filtered<string>(4),
    brokerMessage("c", 5),
  ]);
  await step.join();
  const rows = sink.received.map((m) => [m.filtered ? "F" : m.payload, offsets(m.committable)]);
  assertEquals(rows, [
    ["A", { "contract-topic/0": 1 }],
    ["F", { "contract-topic/0": 2 }],
    ["B", { "contract-topic/1": 3 }],
    ["F", { "contract-topic/0": 4 }],
    ["F", { "contract-topic/0": 5 }],
    ["C", { "contract-topic/0": 6 }],
  ]);
  assertEquals(sink.received[0].timestamp, brokerMessage("", 0).timestamp);
  assertEquals(sink.received[0].toString(), "contract-topic/0@0");
});

Deno.test("TransformStep: a TextDecoderStream over byte payloads", async () => {
  const enc = new TextEncoder();
  const recorder = new CommitRecorder();
  const gate = new Gate<string>(true, new CommitOffsets(recorder.commit));
  const step = new TransformStep(new TextDecoderStream(), gate, { name: "decode" });
  await feed(step, ["héllo", "wörld", "!"].map((s, i) => brokerMessage(enc.encode(s), i)));
  await step.join();
  assertEquals(gate.received.map((m) => m.payload), ["héllo", "wörld", "!"]);
  assertEquals(recorder.latest.get(P0), 3);
});

Deno.test("TransformStep: backpressure flows through; at most maxInFlight messages enter the transform", async () => {
  let written = 0;
  const counting = new TransformStream<number, number>({
    transform(n, c) {
      written++;
      c.enqueue(n);
    },
  });
  const recorder = new CommitRecorder();
  const gate = new Gate<number>(false, new CommitOffsets(recorder.commit));
  const step = new TransformStep(counting, gate, {
    highWaterMark: 8,
    maxInFlight: 5,
    chunkSize: 1,
    clock: new ManualClock(),
  });
  let accepted = 0;
  for (let attempt = 0; attempt < 40; attempt++) {
    try {
      step.submit(brokerMessage(accepted, accepted));
      accepted++;
    } catch (e) {
      assertInstanceOf(e, MessageRejected);
      await tick();
      step.poll();
    }
  }
  assertLessOrEqual(written, 5, "no more than maxInFlight payloads entered the transform");
  assertLessOrEqual(
    accepted,
    8 + 5 + 1,
    "upstream was rejected once queue and transform were full",
  );
  assertEquals(step.inFlight, 5);
  assertEquals(recorder.latest.size, 0, "nothing committed while the next step rejects");
  gate.setOpen(true);
  // `ready` of the next step releases the held output: no poll needed.
  await waitFor(() => gate.received.length >= 5, "outputs to flow once the next step has room");
  await feed(step, [brokerMessage(accepted, accepted)]);
  await step.join();
  assertEquals(
    gate.received.map((m) => m.payload),
    Array.from({ length: accepted + 1 }, (_, i) => i),
  );
  assertEquals(recorder.latest.get(P0), accepted + 1);
});

Deno.test("TransformStep: a rejection at any point changes nothing but timing", async () => {
  const input: Message<number>[] = [];
  for (let i = 0; i < 15; i++) input.push(i % 4 === 3 ? filtered<number>(i) : brokerMessage(i, i));
  async function run(rejectAt: number) {
    const sink = new Sink<number>((a) => a === rejectAt);
    const step = new TransformStep(double(), sink, {
      highWaterMark: 2,
      maxInFlight: 3,
      chunkSize: 1,
      clock: new ManualClock(),
    });
    await feed(step, input);
    await step.join(1000);
    return sink;
  }
  const rows = (s: Sink<number>) =>
    s.received.map((m) =>
      `${m.filtered ? "F" : m.payload}|${JSON.stringify(offsets(m.committable))}`
    );
  const base = await run(-1);
  assertEquals(base.received.length, 15);
  for (let k = 0; k < base.attempts; k++) {
    const r = await run(k);
    assertEquals(r.rejections, 1);
    assertEquals(rows(r), rows(base), `same output in the same order (reject at ${k})`);
  }
});

Deno.test("TransformStep: an error from the transform surfaces in poll naming the step and the message", async () => {
  const picky = new TransformStream<number, number>({
    transform(n, c) {
      if (n === 3) throw new Error("three is odd");
      c.enqueue(n);
    },
  });
  const sink = new Sink<number>();
  const step = new TransformStep(picky, sink, { name: "picky", clock: new ManualClock() });
  await feed(step, [1, 2, 3, 4].map((n, i) => brokerMessage(n, i)));
  const error = await pollError(step, "poll to throw");
  assertInstanceOf(error, StepError);
  assertStringIncludes(error.message, `step "picky" failed on message contract-topic/0@2`);
  assertStringIncludes(error.message, "three is odd");
  assertEquals(sink.received.map((m) => m.payload), [1, 2]);
  await assertRejects(() => step.join(100), StepError);
});

Deno.test("TransformStep: a transform that is not one-to-one fails instead of mispairing offsets", async () => {
  const twice = new TransformStream<number, number>({
    transform(n, c) {
      c.enqueue(n);
      c.enqueue(n);
    },
  });
  const a = new TransformStep(twice, new Sink<number>(), { clock: new ManualClock() });
  a.submit(brokerMessage(1, 0));
  await waitFor(() => {
    try {
      a.poll();
      return false;
    } catch (e) {
      assertStringIncludes(String(e), "more than one output");
      return true;
    }
  }, "the extra output to be detected");

  const swallow = new TransformStream<number, number>({ transform() {} });
  const b = new TransformStep(swallow, new Sink<number>(), { clock: new ManualClock() });
  b.submit(brokerMessage(1, 0));
  await tick();
  await assertRejects(() => b.join(1000), StepError, "yielded no output");
});

Deno.test("TransformStep: terminate cancels the transform and commits nothing", async () => {
  const recorder = new CommitRecorder();
  let cancelled = false;
  const t = new TransformStream<number, number>(
    {
      transform(n, c) {
        c.enqueue(n);
      },
    },
  );
  const readable = t.readable.pipeThrough(
    new TransformStream<number, number>({
      transform(n, c) {
        c.enqueue(n);
      },
    }),
  );
  const wrapped = new ReadableStream<number>({
    async pull(c) {
      const r = await reader.read();
      if (r.done) c.close();
      else c.enqueue(r.value);
    },
    cancel() {
      cancelled = true;
    },
  });
  const reader = readable.getReader();
  const gate = new Gate<number>(false, new CommitOffsets(recorder.commit));
  const step = new TransformStep({ writable: t.writable, readable: wrapped }, gate);
  step.submit(brokerMessage(1, 0));
  await tick();
  step.terminate();
  gate.setOpen(true);
  await tick();
  assert(cancelled, "the readable side was cancelled");
  assertEquals(recorder.latest.size, 0);
});

Deno.test("TransformStep: bad input is a configuration error", () => {
  const sink = new Sink<number>();
  assertThrows(
    () => new TransformStep({} as TransformStream<number, number>, sink),
    ConfigurationError,
    "must be a TransformStream",
  );
  const t = double();
  new TransformStep(t, sink);
  assertThrows(() => new TransformStep(t, sink), ConfigurationError, "already in use");
  assertThrows(
    () => new TransformStep(double(), sink, { maxInFlight: 0 }),
    ConfigurationError,
    "maxInFlight",
  );
});

/** Feeds `count` messages (payload = 10 × offset) and polls until the step fails. */
async function pairingFailure(
  transform: () => TransformStream<number, number>,
  maxInFlight: number | undefined,
  count = 6,
) {
  const recorder = new CommitRecorder();
  const gate = new Gate<number>(true, new CommitOffsets(recorder.commit));
  const step = new TransformStep(transform(), gate, {
    maxInFlight,
    chunkSize: maxInFlight === 1 ? 1 : undefined,
    clock: new ManualClock(),
  });
  const input = Array.from({ length: count }, (_, i) => brokerMessage(i * 10, i));
  let error: unknown;
  try {
    await feed(step, input);
  } catch (e) {
    error = e;
  }
  error ??= await pollError(step, "the step to fail");
  // Nothing handed on is mispaired: each output is its own message's first output.
  for (const m of gate.received) {
    const source = m.source as unknown as { offset: number };
    assertEquals(m.payload, source.offset * 10, `output ${m.payload} handed on with ${m}`);
  }
  return { error, recorder, gate };
}

for (const maxInFlight of [1, 2, 3, 16, undefined]) {
  Deno.test(`TransformStep: two outputs for one input fail the step before anything mispaired is handed on (maxInFlight ${maxInFlight ?? "default"})`, async () => {
    const twice = () =>
      new TransformStream<number, number>({
        transform(n, c) {
          c.enqueue(n);
          c.enqueue(n + 1);
        },
      });
    const { error, recorder, gate } = await pairingFailure(twice, maxInFlight);
    assertInstanceOf(error, StepError);
    assertEquals([error.partition, error.offset], [P0, 0], "names the first message involved");
    assertStringIncludes(error.message, "contract-topic/0@0");
    assertEquals(gate.received.length, 0, "nothing handed on");
    assertEquals(recorder.latest.size, 0, "nothing committed");
  });

  Deno.test(`TransformStep: a TransformStream that yields nothing for one input and two for the next fails at the first (maxInFlight ${maxInFlight ?? "default"})`, async () => {
    // Output counts 1, 1, 0, 2, 1, 1: as many outputs as inputs in all, mispaired from offset 2.
    let k = 0;
    const uneven = () =>
      new TransformStream<number, number>({
        transform(n, c) {
          const i = k++;
          if (i === 2) return;
          c.enqueue(n);
          if (i === 3) c.enqueue(n + 1);
        },
      });
    k = 0;
    const { error, recorder, gate } = await pairingFailure(uneven, maxInFlight);
    assertInstanceOf(error, StepError);
    assertEquals([error.partition, error.offset], [P0, 2], "names the message left without output");
    assertEquals(gate.received.map((m) => m.payload), [0, 10], "the correctly paired ones only");
    assertLessOrEqual(recorder.latest.get(P0) ?? 0, 2, "nothing committed past offset 1");
  });
}
