import { assertEquals, assertStringIncludes, assertThrows } from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { BatchStep, UnbatchStep } from "../../strategies/batching.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { FILTERED_PAYLOAD, Message, StepError } from "../../types.ts";
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
  Sink,
  tick,
  waitFor,
} from "../_support/helpers.ts";

// ---- contract -------------------------------------------------------------------------

strategyContract<number>({
  name: "BatchStep",
  holds: 5,
  batch: 5,
  make: ({ next, highWaterMark, clock }) =>
    new BatchStep<number>(next, { maxBatchSize: 5, highWaterMark, clock }),
  makeFailing: ({ next, highWaterMark, clock }) =>
    new BatchStep<number>(next, {
      maxBatchSize: 5,
      computeBatchSize: () => {
        throw new Error("size boom");
      },
      highWaterMark,
      clock,
    }),
});

/** BatchStep in front, so the unbatch step sees real batches (of 2) of the contract's messages. */
strategyContract<number>({
  name: "BatchStep+UnbatchStep",
  holds: 2 + 4 + 1,
  batch: 2,
  make: ({ next, highWaterMark, clock }) =>
    new BatchStep<number>(new UnbatchStep<number>(next, { highWaterMark, clock }), {
      maxBatchSize: 2,
      highWaterMark,
      clock,
    }),
});

strategyContract<Message<number>[]>({
  name: "UnbatchStep",
  holds: 3,
  message: (i) =>
    new Message(
      brokerMessage([brokerMessage(i, i)], i).value.replace([brokerMessage(i, i)]),
    ),
  make: ({ next, highWaterMark, clock }) => new UnbatchStep<number>(next, { highWaterMark, clock }),
});

// ---- harness ----------------------------------------------------------------------------

// ---- BatchStep -----------------------------------------------------------------

Deno.test("BatchStep: batches keep the original messages; filtered ones only add offsets", async () => {
  const sink = new Sink<Message<string>[]>();
  const step = new BatchStep<string>(sink, { maxBatchSize: 2, clock: new ManualClock() });
  await feed(step, [
    brokerMessage("a", 0),
    brokerMessage(FILTERED_PAYLOAD as unknown as string, 1),
    brokerMessage("b", 2),
    brokerMessage("c", 3, P1),
  ]);
  await step.join();
  assertEquals(sink.received.map((m) => m.payload.map((x) => x.payload)), [["a", "b"], ["c"]]);
  assertEquals(sink.received[0].payload[1].toString(), "contract-topic/0@2");
  assertEquals(offsets(sink.received[0].committable), { "contract-topic/0": 3 });
  assertEquals(offsets(sink.received[1].committable), { "contract-topic/1": 4 });
});

// ---- UnbatchStep ------------------------------------------------------------------------

Deno.test("UnbatchStep: each element commits its own offset; batch-level offsets follow the last", async () => {
  const sink = new Sink<string>();
  const batch = new BatchStep<string>(new UnbatchStep<string>(sink), {
    maxBatchSize: 2,
    clock: new ManualClock(),
  });
  await feed(batch, [
    brokerMessage("a", 0),
    brokerMessage("b", 1),
    brokerMessage("c", 2, P1),
    filtered(3) as unknown as Message<string>,
    brokerMessage("d", 4),
    brokerMessage("e", 5),
    filtered(6) as unknown as Message<string>,
  ]);
  await batch.join();
  const rows = sink.received.map((m) => [m.filtered ? "F" : m.payload, offsets(m.committable)]);
  assertEquals(rows, [
    ["a", { "contract-topic/0": 1 }],
    ["b", { "contract-topic/0": 2 }],
    ["c", { "contract-topic/1": 3 }],
    ["d", { "contract-topic/0": 5 }],
    ["e", { "contract-topic/0": 6 }],
    ["F", { "contract-topic/0": 7 }],
  ]);
});

Deno.test("UnbatchStep: under backpressure it keeps the remaining elements and resumes on room", async () => {
  const recorder = new CommitRecorder();
  const gate = new Gate<number>(true, new CommitOffsets(recorder.commit));
  const step = new UnbatchStep<number>(gate, { clock: new ManualClock() });
  const elements = [0, 1, 2, 3, 4, 5].map((i) => brokerMessage(i, i));
  const batchMsg = new Message(brokerMessage(0, 5).value.replace(elements));
  const orig = gate.submit.bind(gate);
  let n = 0;
  gate.submit = (m) => {
    if (n++ === 2) gate.setOpen(false); // close after two elements
    orig(m);
  };
  step.submit(batchMsg);
  await tick();
  gate.poll();
  assertEquals(gate.received.map((m) => m.payload), [0, 1]);
  assertEquals(recorder.latest.get(P0), 2, "only the elements handed on are committed");
  gate.setOpen(true); // ready resolves: no poll needed
  await waitFor(() => gate.received.length === 6, "the rest of the elements");
  assertEquals(gate.received.map((m) => m.payload), [0, 1, 2, 3, 4, 5]);
  await step.join();
  assertEquals(recorder.latest.get(P0), 6);
});

Deno.test("UnbatchStep: a payload that is not an array of messages fails naming the message", async () => {
  const step = new UnbatchStep<number>(new Sink<number>(), { name: "split" });
  step.submit(
    new Message(brokerMessage(0, 7).value.replace([1, 2] as unknown as Message<number>[])),
  );
  await tick();
  const e = assertThrows(() => step.poll(), StepError);
  assertStringIncludes(e.message, `step "split" failed on message contract-topic/0@7`);
  assertStringIncludes(e.message, "array of messages");
});

// ---- BatchStep + UnbatchStep -------------------------------------------------------------

Deno.test("BatchStep + UnbatchStep: a rejection at any point changes nothing; each message comes out once, in order", async () => {
  const input: Message<number>[] = [];
  for (let i = 0; i < 17; i++) {
    const p = i % 2 === 0 ? P0 : P1;
    input.push(i % 6 === 5 ? filtered(i, p) : brokerMessage(i, i, p));
  }
  async function run(rejectAt: number) {
    const clock = new ManualClock(0);
    const sink = new Sink<number>((a) => a === rejectAt);
    const step = new BatchStep<number>(
      new UnbatchStep<number>(sink, { clock, highWaterMark: 2, chunkSize: 1 }),
      { maxBatchSize: 3, clock, highWaterMark: 2, chunkSize: 1 },
    );
    await feed(step, input);
    await step.join(1000);
    return sink;
  }
  const rows = (s: Sink<number>) =>
    s.received.map((m) =>
      `${m.filtered ? "F" : m.payload}|${JSON.stringify(offsets(m.committable))}`
    );
  const base = await run(-1);
  assertEquals(
    base.received.filter((m) => !m.filtered).map((m) => m.payload),
    input.filter((m) => !m.filtered).map((m) => m.payload),
  );
  assertEquals(base.committed(), new Map([[P0, 17], [P1, 16]]));
  for (let k = 0; k < base.attempts; k++) {
    const r = await run(k);
    assertEquals(r.rejections, 1);
    assertEquals(rows(r), rows(base), `same output in the same order (reject at ${k})`);
  }
});
