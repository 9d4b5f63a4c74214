import {
  assert,
  assertEquals,
  assertInstanceOf,
  assertLess,
  assertLessOrEqual,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "@std/assert";
import { ManualClock } from "../../../clock.ts";
import { ConfigurationError, MessageRejected } from "../../../errors.ts";
import { CommitPolicy } from "../../../processing/commit_policy.ts";
import { StreamProcessor } from "../../../processing/processor.ts";
import type { ProcessingStrategy } from "../../../strategies/abstract.ts";
import { CommitOffsets } from "../../../strategies/commit_offsets.ts";
import { RunTask } from "../../../strategies/run_task.ts";
import {
  RunTaskInWorkers,
  type RunTaskInWorkersOptions,
} from "../../../strategies/workers/run_task_in_workers.ts";
import {
  FILTERED_PAYLOAD,
  InvalidMessage,
  type Message,
  Partition,
  StepError,
  type Topic,
} from "../../../types.ts";
import { Buffer } from "node:buffer";
import { LocalBroker } from "../../../backends/local/mod.ts";
import { consumedPayloads } from "../../fixtures/kafka_records.ts";
import { strategyContract } from "../../_support/contract.ts";
import {
  brokerMessage,
  CommitRecorder,
  Flaky,
  Gate,
  P0,
  tick,
  waitFor,
} from "../../_support/helpers.ts";

const FNS = new URL("../../fixtures/workers_fns.ts", import.meta.url);

strategyContract<number>({
  name: "RunTaskInWorkers",
  holds: 4, // one open batch of 2 + one batch in flight (1 worker × prefetch 1)
  batch: 2,
  make: ({ next, highWaterMark, clock }) =>
    new RunTaskInWorkers<number, number>(FNS, next, {
      exportName: "double",
      workers: 1,
      prefetch: 1,
      maxBatchSize: 2,
      highWaterMark,
      clock,
    }),
  makeFailing: ({ next, highWaterMark, clock }) =>
    new RunTaskInWorkers<number, number>(FNS, next, {
      exportName: "alwaysFail",
      workers: 1,
      maxBatchSize: 1,
      highWaterMark,
      clock,
      name: "failing",
    }),
});

function pipeline<T = number>(gateOpen = true) {
  const recorder = new CommitRecorder();
  const gate = new Gate<T>(gateOpen, new CommitOffsets(recorder.commit));
  return { recorder, gate };
}

function make(
  exportName: string,
  next: ProcessingStrategy<number>,
  options: RunTaskInWorkersOptions = {},
): RunTaskInWorkers<number, number> {
  return new RunTaskInWorkers<number, number>(FNS, next, {
    exportName,
    workers: 2,
    maxBatchSize: 4,
    ...options,
  });
}

async function submitAll<T>(step: ProcessingStrategy<T>, messages: Message<T>[]): Promise<void> {
  for (const m of messages) {
    for (;;) {
      try {
        step.submit(m);
        break;
      } catch (e) {
        assertInstanceOf(e, MessageRejected);
        step.poll();
        await Promise.race([step.ready, tick()]);
      }
    }
  }
}

/** Runs `processor` until `group` has committed all of `topic`, then shuts it down. */
async function runUntilAllCommitted<T>(
  processor: StreamProcessor<T>,
  broker: LocalBroker<T>,
  topic: Topic,
  group: string,
): Promise<void> {
  const running = processor.run();
  await waitFor(
    () =>
      broker.partitions(topic).every((p) => broker.committed(group).get(p) === broker.endOffset(p)),
    "everything committed",
    20_000,
  );
  processor.signalShutdown();
  await running;
}

/** Polls until poll() throws; returns the error. */
async function pollError(step: ProcessingStrategy<never>, what: string): Promise<unknown> {
  let error: unknown;
  await waitFor(
    () => {
      try {
        step.poll();
        return false;
      } catch (e) {
        error = e;
        return true;
      }
    },
    what,
    10_000,
  );
  return error;
}

Deno.test("RunTaskInWorkers: results come back in input order across workers, each once", async () => {
  const { recorder, gate } = pipeline();
  const step = make("slowDouble", gate, { workers: 3, maxBatchSize: 3, prefetch: 2 });
  const n = 100;
  await submitAll(step, Array.from({ length: n }, (_, i) => brokerMessage(i, i)));
  await step.join(10_000);
  assertEquals(gate.received.map((m) => m.payload), Array.from({ length: n }, (_, i) => i * 2));
  assertEquals(recorder.latest.get(P0), n);
  assertEquals(step.running, false, "workers stopped by join");
});

Deno.test("RunTaskInWorkers: bounded: batches in flight never exceed workers × prefetch", async () => {
  const { gate } = pipeline(false);
  const step = make("double", gate, { workers: 2, prefetch: 1, maxBatchSize: 2, highWaterMark: 2 });
  let accepted = 0;
  let maxInFlight = 0;
  // Feed until the step rejects for good: the next step never takes anything.
  for (let round = 0; round < 50; round++) {
    try {
      step.submit(brokerMessage(accepted, accepted));
      accepted++;
    } catch (e) {
      assertInstanceOf(e, MessageRejected);
      await tick();
    }
    maxInFlight = Math.max(maxInFlight, step.batchesInFlight);
  }
  assertLessOrEqual(maxInFlight, 2);
  // queue (2) + open batch (2) + in flight (2 × 2) is all the step may hold.
  assertLessOrEqual(accepted, 2 + 2 + 4);
  gate.setOpen(true);
  await submitAll(step, [brokerMessage(accepted, accepted)]);
  await step.join(10_000);
  assertEquals(gate.received.length, accepted + 1);
});

Deno.test("RunTaskInWorkers: a partial batch is sent after maxBatchTimeMs, on poll", async () => {
  const { gate } = pipeline();
  const clock = new ManualClock();
  const step = make("double", gate, { maxBatchSize: 10, maxBatchTimeMs: 100, clock });
  step.submit(brokerMessage(1, 0));
  step.submit(brokerMessage(2, 1));
  await tick();
  step.poll();
  assertEquals(step.openBatchSize, 2, "not sent before its time");
  await clock.advance(100);
  step.poll();
  assertEquals(step.openBatchSize, 0, "sent once due");
  await waitFor(() => gate.received.length === 2, "results", 10_000);
  assertEquals(gate.received.map((m) => m.payload), [2, 4]);
  await step.join(10_000);
});

Deno.test("RunTaskInWorkers: results rejected by the next step wait and are not recomputed", async () => {
  const { recorder, gate } = pipeline(false);
  const step = make("double", gate, { workers: 1, maxBatchSize: 3 });
  for (let i = 0; i < 6; i++) step.submit(brokerMessage(i, i));
  await waitFor(() => step.batchesInFlight === 2 && step.openBatchSize === 0, "batches sent");
  for (let i = 0; i < 5; i++) {
    step.poll(); // the rejection never escapes poll
    await tick();
  }
  assertEquals(recorder.latest.size, 0);
  gate.setOpen(true);
  await step.join(10_000);
  assertEquals(gate.received.map((m) => m.payload), [0, 2, 4, 6, 8, 10]);
  assertEquals(recorder.latest.get(P0), 6);
});

Deno.test("RunTaskInWorkers: filtered messages keep their place and never reach a worker", async () => {
  const { gate } = pipeline();
  const step = make("double", gate, { maxBatchSize: 2 });
  const messages = [
    brokerMessage(1, 0),
    brokerMessage(FILTERED_PAYLOAD as unknown as number, 1),
    brokerMessage(FILTERED_PAYLOAD as unknown as number, 2),
    brokerMessage(FILTERED_PAYLOAD as unknown as number, 3),
    brokerMessage(5, 4),
  ];
  for (const m of messages) step.submit(m);
  await step.join(10_000);
  assertEquals(gate.received.map((m) => m.committable.get(P0)), [1, 2, 3, 4, 5]);
  assertEquals(gate.received[0].payload, 2);
  assertEquals(gate.received[4].payload, 10);
});

Deno.test("RunTaskInWorkers: a function error names the worker and the message; nothing past it is committed", async () => {
  const { recorder, gate } = pipeline();
  const step = make("failOnThree", gate, { name: "crunch", workers: 1, maxBatchSize: 2 });
  for (let i = 0; i < 6; i++) step.submit(brokerMessage(i, i));
  const error = await pollError(step, "the failure");
  assertInstanceOf(error, StepError);
  assertEquals(error.step, "crunch");
  assertEquals(error.messageRef, `${P0}@3`);
  assertStringIncludes(error.message, "worker 0");
  assertStringIncludes(error.message, "three is not allowed");
  assertLessOrEqual(recorder.latest.get(P0) ?? 0, 3);
  assertEquals(step.running, false, "workers stopped after a failure");
  assertThrows(() => step.submit(brokerMessage(9, 9)), StepError);
});

Deno.test("RunTaskInWorkers: an invalid payload is reported through poll and its offset carried on", async () => {
  const { gate } = pipeline();
  const step = make("invalidTwo", gate, { workers: 1, maxBatchSize: 4 });
  for (let i = 0; i < 4; i++) step.submit(brokerMessage(i, i));
  const reported = await pollError(step, "the invalid message");
  assertInstanceOf(reported, InvalidMessage);
  assertEquals(reported.offset, 2);
  assertStringIncludes(reported.message, "two is malformed");
  await step.join(10_000);
  assertEquals(gate.received.map((m) => m.committable.get(P0)), [1, 2, 3, 4]);
  assertEquals(gate.received[2].payload as unknown, FILTERED_PAYLOAD);
});

for (
  const [exportName, expected] of [
    ["crashOnTwo", "crashed"],
    ["exitOnTwo", "exited (Deno.exit(7))"],
  ] as const
) {
  Deno.test(`RunTaskInWorkers: a worker that dies (${exportName}) fails the step naming it and its batch`, async () => {
    const { recorder, gate } = pipeline();
    const step = make(exportName, gate, { name: "pool", workers: 1, maxBatchSize: 2 });
    for (let i = 0; i < 6; i++) step.submit(brokerMessage(i, i));
    const error = await pollError(step, "the crash");
    assertInstanceOf(error, StepError);
    assertStringIncludes(error.message, `worker 0 ${expected}`);
    assertEquals(error.messageRef, `${P0}@2`, "the first message of the dead worker's batch");
    assertEquals(gate.received.map((m) => m.payload), [0, 1], "only finished work went on");
    assertEquals(recorder.latest.get(P0) ?? 0, 2);
    assertEquals(step.running, false);
    await step.join(1000).catch(() => {});
  });
}

Deno.test("RunTaskInWorkers: a module that cannot load fails the step with a clear error", async () => {
  const { gate } = pipeline();
  const step = new RunTaskInWorkers<number, number>(
    new URL("../../fixtures/workers_broken_module.ts", import.meta.url),
    gate,
    { workers: 1, maxBatchSize: 1 },
  );
  step.submit(brokerMessage(0, 0));
  const error = await pollError(step, "the load failure");
  assertInstanceOf(error, StepError);
  assertStringIncludes(error.message, "this module cannot load");
  assertEquals(step.running, false);
});

Deno.test("RunTaskInWorkers: a missing export is named in the error", async () => {
  const { gate } = pipeline();
  const step = make("noSuchFunction", gate, { workers: 1, maxBatchSize: 1 });
  step.submit(brokerMessage(0, 0));
  const error = await pollError(step, "the load failure");
  assertInstanceOf(error, StepError);
  assertStringIncludes(error.message, `no function export named "noSuchFunction"`);
});

Deno.test("RunTaskInWorkers: a batch not answered within batchTimeoutMs fails the step", async () => {
  const { gate } = pipeline();
  const clock = new ManualClock();
  const step = make("hang", gate, { workers: 1, maxBatchSize: 1, batchTimeoutMs: 1000, clock });
  step.submit(brokerMessage(0, 0));
  await waitFor(() => step.batchesInFlight === 1, "the batch to be sent");
  await clock.advance(999);
  step.poll();
  await clock.advance(2);
  const error = assertThrows(() => step.poll(), StepError);
  assertStringIncludes(error.message, "did not answer within batchTimeoutMs (1000 ms)");
  assertEquals(error.messageRef, `${P0}@0`);
  assertEquals(step.running, false);
});

Deno.test("RunTaskInWorkers: payloads that cannot be cloned fail with the message named", async () => {
  const { gate } = pipeline();
  const step = new RunTaskInWorkers<unknown, unknown>(FNS, gate as Gate<unknown>, {
    exportName: "double",
    workers: 1,
    maxBatchSize: 2,
  });
  step.submit(brokerMessage(1, 0));
  step.submit(brokerMessage(() => 1, 1));
  const error = await pollError(step, "the clone failure");
  assertInstanceOf(error, StepError);
  assertEquals(error.messageRef, `${P0}@1`);
  assertStringIncludes(error.message, "structured-cloneable");
});

Deno.test("RunTaskInWorkers: terminate stops the workers and commits nothing", async () => {
  const { recorder, gate } = pipeline();
  const step = make("hang", gate, { workers: 2, maxBatchSize: 1 });
  step.submit(brokerMessage(0, 0));
  await waitFor(() => step.running, "workers started");
  step.terminate();
  assertEquals(step.running, false);
  assertEquals(recorder.latest.size, 0);
  assert(gate.terminated);
});

Deno.test("RunTaskInWorkers: bad options are configuration errors", () => {
  const next = new Gate<number>();
  assertThrows(
    () => new RunTaskInWorkers("./relative.ts", next),
    ConfigurationError,
    "absolute URL",
  );
  assertThrows(
    () => new RunTaskInWorkers(FNS, next, { workers: 0 }),
    ConfigurationError,
    "workers",
  );
  assertThrows(
    () => new RunTaskInWorkers(FNS, next, { maxBatchSize: 1.5 }),
    ConfigurationError,
    "maxBatchSize",
  );
});

Deno.test("RunTaskInWorkers: under the StreamProcessor everything is committed and the workers stop on shutdown", async () => {
  const broker = new LocalBroker<number>();
  const topic = broker.createTopic("workers-e2e", 2);
  const n = 200;
  for (let i = 0; i < n; i++) broker.produce(topic, i);
  const steps: RunTaskInWorkers<number, number>[] = [];
  const seen = new Map<number, number[]>();
  const processor = new StreamProcessor<number>({
    consumer: broker.getConsumer("workers-e2e"),
    topics: [topic],
    commitPolicy: new CommitPolicy({ intervalMs: 10 }),
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) => {
        const sink = new RunTask((m: Message<number>) => {
          const p = [...m.committable.keys()][0].index;
          seen.set(p, [...(seen.get(p) ?? []), m.payload]);
          return m.payload;
        }, new CommitOffsets(commit));
        const step = make("slowDouble", sink, { workers: 2, maxBatchSize: 7, maxBatchTimeMs: 1 });
        steps.push(step);
        return step;
      },
    },
  });
  await runUntilAllCommitted(processor, broker, topic, "workers-e2e");
  for (const [, results] of seen) {
    const sorted = [...results].sort((a, b) => a - b);
    assertEquals(results, sorted, "results of a partition come back in offset order");
  }
  assertEquals([...seen.values()].flat().length, n);
  assert(steps.length > 0 && steps.every((s) => !s.running), "every pipeline's workers stopped");
});

Deno.test("RunTaskInWorkers: a worker crash stops the StreamProcessor with the worker and message named", async () => {
  const broker = new LocalBroker<number>();
  const topic = broker.createTopic("workers-crash", 1);
  for (let i = 0; i < 10; i++) broker.produce(topic, i);
  const processor = new StreamProcessor<number>({
    consumer: broker.getConsumer("workers-crash"),
    topics: [topic],
    commitPolicy: CommitPolicy.IMMEDIATE,
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        make("exitOnTwo", new CommitOffsets(commit), { workers: 1, maxBatchSize: 2 }),
    },
  });
  const e = await assertRejects(() => processor.run(), StepError);
  assertStringIncludes(e.message, "worker 0 exited");
  assertStringIncludes(e.message, `${topic.name}/0@2`);
  assertLessOrEqual(broker.committed("workers-crash").get(Partition.of(topic, 0)) ?? 0, 2);
});

Deno.test("RunTaskInWorkers: a next step that rejects at random points still gets every result once, in order", async () => {
  const recorder = new CommitRecorder();
  const inner = new CommitOffsets<number>(recorder.commit);
  let seed = 11;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const received: number[] = [];
  const flaky = new Flaky(inner, () => rnd() < 0.5, (m) => received.push(m.payload));
  const step = make("double", flaky, { workers: 2, maxBatchSize: 3, highWaterMark: 4 });
  const n = 60;
  await submitAll(step, Array.from({ length: n }, (_, i) => brokerMessage(i, i)));
  await step.join(10_000);
  assertEquals(received, Array.from({ length: n }, (_, i) => i * 2));
  assertEquals(recorder.latest.get(P0), n);
});

Deno.test("RunTaskInWorkers: an invalid message reported during join leaves the workers running for the next join", async () => {
  const { recorder, gate } = pipeline();
  const step = make("invalidTwoSlow", gate, { workers: 1, maxBatchSize: 2, prefetch: 3 });
  for (let i = 0; i < 6; i++) step.submit(brokerMessage(i, i));
  step.close();
  const error = await step.join(10_000).then(() => undefined, (e) => e);
  assertInstanceOf(error, InvalidMessage, "join reports the invalid message");
  assertEquals(error.offset, 2);
  assert(step.batchesInFlight > 0, "the last batch is still being computed");
  // The processor deals with it (dead-letter queue) and joins again.
  await step.join(10_000);
  assertEquals(gate.received.map((m) => m.committable.get(P0)), [1, 2, 3, 4, 5, 6]);
  assertEquals(gate.received.map((m) => m.payload), [0, 1, FILTERED_PAYLOAD, 3, 4, 5]);
  assertEquals(recorder.latest.get(P0), 6);
  assertEquals(step.running, false);
});

// Worker functions for the payload-bytes tests, as a module of its own (a data: URL, so the
// fixture module stays as it is). They report what the worker received, including the size of
// the buffer under a view: structured clone copies a view's whole buffer.
const VIEW_FNS_SOURCE = `
function bytesOf(p) {
  return new Uint8Array(p.buffer, p.byteOffset, p.byteLength);
}
export function describe(p) {
  if (!ArrayBuffer.isView(p)) return { echo: p };
  return {
    kind: Object.prototype.toString.call(p).slice(8, -1),
    length: p instanceof DataView ? p.byteLength : p.length,
    bytes: bytesOf(p).slice(),
    bufferBytes: p.buffer.byteLength,
  };
}
// A payload's shape: views (as describe() sees them), arrays (length, own keys: holes and
// extra properties show), plain objects and other values; an object met again is { ref: n },
// n counting objects in the order first met, so shared views and containers show too.
export function describeDeep(p, seen = new Map()) {
  if (typeof p !== "object" || p === null) return { echo: p };
  if (seen.has(p)) return { ref: seen.get(p) };
  seen.set(p, seen.size);
  if (ArrayBuffer.isView(p)) return describe(p);
  const entries = () => Object.entries(p).map(([k, v]) => [k, describeDeep(v, seen)]);
  if (Array.isArray(p)) return { array: p.length, entries: entries() };
  const proto = Object.getPrototypeOf(p);
  if (proto === Object.prototype || proto === null) return { object: entries() };
  return { other: Object.prototype.toString.call(p), entries: entries() };
}
export function checksum(p) {
  const b = bytesOf(p);
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return { n: b.length, hash: h >>> 0, bufferBytes: p.buffer.byteLength };
}
`;
const VIEW_FNS = new URL(`data:text/javascript,${encodeURIComponent(VIEW_FNS_SOURCE)}`);
const viewFns = await import(VIEW_FNS.href) as {
  checksum(p: ArrayBufferView): Checksum;
  describeDeep(p: unknown): Deep;
};

interface Checksum {
  n: number;
  hash: number;
  bufferBytes: number;
}

interface Described {
  echo?: unknown;
  kind?: string;
  length?: number;
  bytes?: Uint8Array;
  bufferBytes?: number;
}

/** What describeDeep() makes of a value (a view's fields are those of {@link Described}). */
type Deep = Described & {
  ref?: number;
  array?: number;
  object?: Array<[string, Deep]>;
  other?: string;
  entries?: Array<[string, Deep]>;
};

/** `deep` without its views' buffer sizes, which are returned in the order met. */
function withoutBufferSizes(deep: Deep, sizes: number[] = []): { shape: Deep; sizes: number[] } {
  const strip = (d: Deep): Deep => {
    const { bufferBytes, object, entries, ...rest } = d;
    if (bufferBytes !== undefined) sizes.push(bufferBytes);
    const out: Deep = { ...rest };
    if (object !== undefined) out.object = object.map(([k, v]) => [k, strip(v)]);
    if (entries !== undefined) out.entries = entries.map(([k, v]) => [k, strip(v)]);
    return out;
  };
  return { shape: strip(deep), sizes };
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

/** 100 KB of varied bytes: the kind of buffer a fetch response or a LocalBroker read is. */
function sourceBuffer(size = 100_000): ArrayBuffer {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = (i * 7 + (i >> 8)) & 255;
  return b.buffer;
}

Deno.test("RunTaskInWorkers: a worker gets exactly each payload's bytes, as the same kind of view", async () => {
  const source = sourceBuffer();
  const copyOfSource = new Uint8Array(source).slice();
  const whole = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]);
  const wholeU16 = new Uint16Array([65535, 2, 513]);
  const payloads: Array<[unknown, string]> = [
    [new Uint8Array(source, 3, 100), "Uint8Array"],
    [new Uint8Array(source, 500, 0), "Uint8Array"],
    ["a string", ""],
    [{ n: 1, s: "object" }, ""],
    [whole, "Uint8Array"],
    [new Uint8Array(source, 17, 1), "Uint8Array"],
    [new Uint16Array(source, 1002, 5), "Uint16Array"], // lands after an odd byte count
    [Buffer.from(source, 7, 33), "Uint8Array"], // a Node Buffer arrives as a Uint8Array
    [new DataView(source, 11, 9), "DataView"],
    [new Float64Array(source, 80, 3), "Float64Array"],
    [new BigInt64Array(source, 4096, 2), "BigInt64Array"],
    [new Int32Array(source, 8, 0), "Int32Array"],
    [new Uint8Array(0), "Uint8Array"],
    [wholeU16, "Uint16Array"],
    [new Uint8Array(source, 99_999, 1), "Uint8Array"],
    [42, ""],
  ];
  const viewBytes = payloads.reduce(
    (n, [p]) => n + (ArrayBuffer.isView(p) ? p.byteLength : 0),
    0,
  );
  for (const maxBatchSize of [1, 5, payloads.length]) {
    const { recorder, gate } = pipeline<Described>();
    const step = new RunTaskInWorkers<unknown, Described>(VIEW_FNS, gate, {
      exportName: "describe",
      workers: 2,
      maxBatchSize,
    });
    await submitAll(step, payloads.map(([p], i) => brokerMessage(p, i)));
    await step.join(10_000);
    const got = gate.received.map((m) => m.payload);
    assertEquals(got.length, payloads.length);
    for (let i = 0; i < payloads.length; i++) {
      const [sent, kind] = payloads[i];
      const what = `payload ${i} (batches of ${maxBatchSize})`;
      if (!ArrayBuffer.isView(sent)) {
        assertEquals(got[i], { echo: sent }, what);
        continue;
      }
      assertEquals(got[i].kind, kind, what);
      const length = sent instanceof DataView ? sent.byteLength : (sent as Uint8Array).length;
      assertEquals(got[i].length, length, what);
      assertEquals(got[i].bytes, bytesOf(sent).slice(), what);
      if (sent.byteLength === sent.buffer.byteLength) {
        assertEquals(got[i].bufferBytes, sent.byteLength, `${what}: a whole buffer, as it is`);
      } else {
        // The batch's views and their alignment padding, not the 100 KB they came from.
        const bound = viewBytes + 8 * payloads.length;
        assertLessOrEqual(got[i].bufferBytes!, bound, `${what}: buffer ${got[i].bufferBytes}`);
      }
    }
    assertEquals(recorder.latest.get(P0), payloads.length);
  }
  // The sender's payloads are untouched: nothing of theirs was transferred (detached).
  assertEquals(new Uint8Array(source), copyOfSource);
  assertEquals(whole.byteLength, 16);
  assertEquals(wholeU16.byteLength, 6);
});

Deno.test("RunTaskInWorkers: a view of a big buffer costs a worker its own bytes, not the whole buffer", async () => {
  // 1 000 payloads of 100 bytes, all views of one 100 KB buffer (what a LocalBroker read or a
  // Kafka fetch response hands out), in batches of 100: each batch carries 10 KB.
  const source = sourceBuffer();
  const n = 1000;
  const size = 100;
  const maxBatchSize = 100;
  const views = Array.from({ length: n }, (_, i) => new Uint8Array(source, i * size, size));
  const { recorder, gate } = pipeline<Checksum>();
  const step = new RunTaskInWorkers<Uint8Array, Checksum>(VIEW_FNS, gate, {
    exportName: "checksum",
    workers: 2,
    maxBatchSize,
  });
  await submitAll(step, views.map((v, i) => brokerMessage(v, i)));
  await step.join(10_000);
  const got = gate.received.map((m) => m.payload);
  assertEquals(got.length, n);
  for (let i = 0; i < n; i++) {
    const expected = viewFns.checksum(views[i]);
    assertEquals([got[i].n, got[i].hash], [expected.n, expected.hash], `payload ${i}`);
    assertLessOrEqual(
      got[i].bufferBytes,
      maxBatchSize * size,
      `payload ${i}: the worker's buffer of ${got[i].bufferBytes} bytes should hold the ` +
        `batch's ${maxBatchSize * size}, not the source's ${source.byteLength}`,
    );
  }
  assertEquals(recorder.latest.get(P0), n);
});

Deno.test("RunTaskInWorkers: views of a buffer under 64 KiB are cloned with it, not packed (packing many would cost more)", async () => {
  // 200 payloads of 100 bytes, views of one 20 KB buffer (a small read, a compressed batch).
  const source = sourceBuffer(20_000);
  const views = Array.from({ length: 200 }, (_, i) => new Uint8Array(source, i * 100, 100));
  const { recorder, gate } = pipeline<Checksum>();
  const step = new RunTaskInWorkers<Uint8Array, Checksum>(VIEW_FNS, gate, {
    exportName: "checksum",
    workers: 2,
    maxBatchSize: 50,
  });
  await submitAll(step, views.map((v, i) => brokerMessage(v, i)));
  await step.join(10_000);
  const got = gate.received.map((m) => m.payload);
  assertEquals(got.length, views.length);
  for (const [i, v] of views.entries()) {
    const expected = viewFns.checksum(v);
    assertEquals([got[i].n, got[i].hash], [expected.n, expected.hash], `payload ${i}`);
    assertEquals(got[i].bufferBytes, source.byteLength, `payload ${i}: cloned with its buffer`);
  }
  assertEquals(recorder.latest.get(P0), views.length);
});

Deno.test("RunTaskInWorkers: byte payloads from the LocalBroker give the same results and commits as on the main thread", async () => {
  const broker = new LocalBroker<Uint8Array>();
  const topic = broker.createTopic("workers-bytes", 2);
  const n = 1000;
  // What each partition's messages should give, in offset order, computed on this thread.
  const expected = new Map<number, Array<[number, number]>>();
  for (let i = 0; i < n; i++) {
    // 0 to 400 bytes: a poll's read of one partition (~500 messages) is ~100 KB, over the
    // 64 KiB from which views are packed rather than cloned with their buffer.
    const bytes = new Uint8Array(i % 401);
    for (let k = 0; k < bytes.length; k++) bytes[k] = (i + k * 31) & 255;
    const c = viewFns.checksum(bytes);
    const at = broker.produce(topic, bytes).partition.index;
    expected.set(at, [...(expected.get(at) ?? []), [c.n, c.hash]]);
  }

  const seen = new Map<number, Array<[number, number]>>();
  let largestBuffer = 0;
  const maxBatchSize = 50;
  const processor = new StreamProcessor<Uint8Array>({
    consumer: broker.getConsumer("workers-bytes"),
    topics: [topic],
    commitPolicy: new CommitPolicy({ intervalMs: 10 }),
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) => {
        const sink = new RunTask((m: Message<Checksum>) => {
          const p = [...m.committable.keys()][0].index;
          seen.set(p, [...(seen.get(p) ?? []), [m.payload.n, m.payload.hash]]);
          largestBuffer = Math.max(largestBuffer, m.payload.bufferBytes);
          return m.payload;
        }, new CommitOffsets(commit));
        return new RunTaskInWorkers<Uint8Array, Checksum>(VIEW_FNS, sink, {
          exportName: "checksum",
          workers: 2,
          maxBatchSize,
          maxBatchTimeMs: 1,
        });
      },
    },
  });
  await runUntilAllCommitted(processor, broker, topic, "workers-bytes");
  assertEquals(seen, expected, "every partition's results, in offset order, each once");
  // Reads of 64 KiB or more are packed per batch (≤ 50 × 400 bytes); smaller ones are cloned.
  assertLess(
    largestBuffer,
    1 << 16,
    `a worker's buffer (largest: ${largestBuffer} bytes) is never a read of 64 KiB or more`,
  );
});

/**
 * Runs `describeDeep` on `payloads` in workers, in batches of `maxBatchSize`, and checks what
 * each worker received against a structured clone of the payload (what a worker got before
 * views were packed): the same shape, kinds, bytes and shared objects. A view the clone gave
 * its whole source buffer must arrive over a buffer of at most `bound` bytes, except the
 * views listed in `unpacked` (payload index → indexes among its views, in the order met),
 * which arrive as they did.
 */
async function checkDeepPayloads(
  payloads: unknown[],
  maxBatchSize: number,
  bound: number,
  unpacked = new Map<number, number[]>(),
): Promise<void> {
  const expected = payloads.map((p) =>
    withoutBufferSizes(viewFns.describeDeep(structuredClone(p)))
  );
  const { recorder, gate } = pipeline<Deep>();
  const step = new RunTaskInWorkers<unknown, Deep>(VIEW_FNS, gate, {
    exportName: "describeDeep",
    workers: 2,
    maxBatchSize,
  });
  await submitAll(step, payloads.map((p, i) => brokerMessage(p, i)));
  await step.join(10_000);
  const got = gate.received.map((m) => withoutBufferSizes(m.payload));
  assertEquals(got.length, payloads.length);
  for (let i = 0; i < payloads.length; i++) {
    const what = `payload ${i} (batches of ${maxBatchSize})`;
    assertEquals(got[i].shape, expected[i].shape, what);
    assertEquals(got[i].sizes.length, expected[i].sizes.length, what);
    expected[i].sizes.forEach((cloned, j) => {
      const size = got[i].sizes[j];
      if (cloned === bytesOfView(expected[i].shape, j) || unpacked.get(i)?.includes(j)) {
        assertEquals(size, cloned, `${what}, view ${j}: as it was`);
      } else {
        assertLessOrEqual(size, bound, `${what}, view ${j}: buffer of ${size} bytes`);
      }
    });
  }
  assertEquals(recorder.latest.get(P0), payloads.length);
}

/** The byte length of the `j`th view met in a describeDeep() shape. */
function bytesOfView(shape: Deep, j: number): number {
  const lengths: number[] = [];
  const walk = (d: Deep) => {
    if (d.bytes !== undefined) lengths.push(d.bytes.length);
    for (const [, v] of [...(d.object ?? []), ...(d.entries ?? [])]) walk(v);
  };
  walk(shape);
  return lengths[j];
}

Deno.test("RunTaskInWorkers: views inside plain objects and arrays are packed too, in copies of the same shape", async () => {
  const source = sourceBuffer();
  const shared = new Uint8Array(source, 10, 5);
  const sharedHeaders = { h: Buffer.from(source, 40, 6) };
  const headerValues = [Buffer.from(source, 300, 4), "text", new Uint16Array(source, 402, 3)];
  const nullProto = Object.assign(Object.create(null), { v: new Int32Array(source, 600, 2) });
  const holey: unknown[] = [new Uint8Array(source, 700, 3)];
  holey[2] = new DataView(source, 710, 2); // a hole at 1
  holey[4] = 5; // and at 3
  Object.assign(holey, { extra: new Uint8Array(source, 720, 4) });
  class Holder {
    constructor(readonly v: Uint8Array) {}
  }
  const payloads: unknown[] = [
    {
      key: new Uint8Array(source, 3, 20),
      value: Buffer.from(source, 1000, 200),
      headers: { trace: new DataView(source, 50, 9), list: headerValues, none: undefined },
      timestamp: 1,
      n: null,
    },
    [new Float64Array(source, 2048, 4), "s", 7, new Uint8Array(source, 99_990, 10)],
    { a: shared, b: shared, c: { x: shared }, h1: sharedHeaders, h2: sharedHeaders },
    nullProto,
    holey,
    { whole: new Uint8Array(16), text: "no views", n: 5 },
    { sharedHeaders, again: new BigInt64Array(source, 4096, 1) },
    new Holder(new Uint8Array(source, 800, 8)), // a class instance: cloned as it is
    {
      l1: { l2: { l3: new Uint8Array(source, 900, 8), l4: { v: new Uint8Array(source, 950, 8) } } },
    },
  ];
  // Views kept as they are: an array's non-index property (its elements alone are searched),
  // the class instance's, and the one in a fourth nested container.
  const unpacked = new Map([[4, [2]], [7, [0]], [8, [1]]]);
  const before = payloads.map((p) => viewFns.describeDeep(p));
  const bound = 1000; // the views' 350 bytes and their padding, not the source's 100 000
  for (const maxBatchSize of [1, 4, payloads.length]) {
    await checkDeepPayloads(payloads, maxBatchSize, bound, unpacked);
  }
  // Payloads that contain themselves keep their shape. A reference back to a container
  // already copied (it held a view met earlier) goes to its copy; one met before, and the
  // batch's views inside containers are sent as they are (top-level ones are still packed).
  const viewFirst: Record<string, unknown> = { v: new Uint8Array(source, 30, 3) };
  viewFirst.self = { back: viewFirst };
  await checkDeepPayloads([viewFirst, new Uint8Array(source, 60, 5)], 2, bound);
  const backFirst: Record<string, unknown> = { self: {} };
  backFirst.self = { back: backFirst };
  backFirst.v = new Uint8Array(source, 30, 3);
  const top = new Uint8Array(source, 60, 5);
  await checkDeepPayloads([backFirst, top], 2, bound, new Map([[0, [0]]]));
  // The sender's payloads are untouched: same objects, views and bytes, nothing detached.
  assertEquals(payloads.map((p) => viewFns.describeDeep(p)), before);
  const first = payloads[0] as { headers: { list: unknown[] }; value: unknown };
  assert(first.headers.list === headerValues && headerValues[0] instanceof Buffer);
  assert(first.value instanceof Buffer);
  assert((payloads[2] as { h1: unknown }).h1 === sharedHeaders);
  assertEquals(source.byteLength, 100_000);
});

Deno.test("RunTaskInWorkers: consumed KafkaPayloads cost a worker their batch's bytes, not the fetched buffer", async () => {
  const { payloads, fetchedBytes } = await consumedPayloads(400, 1000);
  assert(payloads[1].value instanceof Buffer && payloads[1].value.byteOffset > 0);
  assert(Array.isArray(payloads[1].headers!.hop));
  const before = payloads.map((p) => viewFns.describeDeep(p));
  // Per record: value 1000, key up to 7, trace up to 9, hop up to 4 bytes; and padding.
  const maxBatchSize = 50;
  const bound = maxBatchSize * (1000 + 7 + 9 + 1 + 4);
  assert(fetchedBytes > 4 * bound, `the fetched buffer (${fetchedBytes} bytes) is large`);
  await checkDeepPayloads(payloads, maxBatchSize, bound);
  assertEquals(payloads.map((p) => viewFns.describeDeep(p)), before);
});
