import { assert, assertEquals, assertRejects, assertThrows } from "@std/assert";
import { ConfigurationError, InvalidStateError, SluiceError } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { RunTaskAsync } from "../../strategies/run_task_async.ts";
import { Partition } from "../../types.ts";
import { lines, StreamConsumer } from "../../backends/stream.ts";
import { processStream } from "../../processing/process_stream.ts";
import { waitFor } from "../_support/helpers.ts";

/** A source of `total` numbers that counts its pulls (highWaterMark 0: no read-ahead of its own). */
function countingSource(total: number) {
  const state = { pulls: 0, cancelled: undefined as unknown };
  const stream = new ReadableStream<number>({
    pull(controller) {
      if (state.pulls === total) return controller.close();
      controller.enqueue(state.pulls++);
    },
    cancel(reason) {
      state.cancelled = reason;
    },
  }, { highWaterMark: 0 });
  return { stream, state };
}

Deno.test("stream source: a full pipeline stops pulling the source; all items acknowledged after", async () => {
  const { stream, state } = countingSource(500);
  const acks: number[] = [];
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  const consumer = new StreamConsumer(stream, {
    onCommit: (n) => void acks.push(n),
    maxPollRecords: 10,
  });
  const processor = new StreamProcessor<number>({
    consumer,
    topics: [consumer.topic],
    handleSignals: false,
    pauseAfterMs: 0,
    maxBackoffMs: 1,
    pausedBackoffMs: 1,
    factory: {
      createWithPartitions: (commit) =>
        new RunTaskAsync<number, number>(
          async (m) => {
            await gate;
            return m.payload;
          },
          new CommitOffsets(commit),
          { concurrency: 2, maxPending: 4, highWaterMark: 4 },
        ),
    },
  });
  consumer.done.then(() => processor.signalShutdown());
  const running = processor.run();
  await waitFor(() => processor.stats.pauses >= 1, "the processor to pause the source");
  const pullsAtPause = state.pulls;
  const polls = processor.stats.iterations;
  const rejections = processor.stats.rejections;
  await waitFor(
    () => processor.stats.rejections >= rejections + 50,
    "50 more rejected submits while full",
  );
  assertEquals(state.pulls, pullsAtPause, "no pull while the pipeline is full");
  assert(processor.stats.iterations > polls, "the loop kept running meanwhile");
  // Bounded read-ahead: the pipeline's capacity (queue 4 + 4 pending) and one poll of 10.
  assert(pullsAtPause <= 4 + 4 + 10 + 1, `read ahead ${pullsAtPause} items`);
  assertEquals(acks, [], "nothing acknowledged before anything finished");
  release();
  await running;
  assertEquals(consumer.committed, 500);
  assertEquals(acks.at(-1), 500);
  assert(acks.every((a, i) => i === 0 || a > acks[i - 1]), "acknowledgements only grow");
  assertEquals(state.pulls, 500);
});

Deno.test("stream source: positions are sequence numbers from start; acks wait for the slowest", async () => {
  const acks: number[] = [];
  const offsets: number[] = [];
  const release: Array<() => void> = [];
  const consumer = new StreamConsumer(ReadableStream.from(["a", "b", "c", "d"]), {
    onCommit: (n) => void acks.push(n),
    start: 100,
    topic: "socket",
  });
  const processor = new StreamProcessor<string>({
    consumer,
    topics: ["socket"],
    handleSignals: false,
    commitPolicy: CommitPolicy.IMMEDIATE,
    factory: {
      createWithPartitions: (commit) =>
        new RunTaskAsync<string, string>(
          async (m) => {
            offsets.push(...m.committable.values());
            // "b" finishes last: nothing past it may be acknowledged before it.
            if (m.payload === "b") await new Promise<void>((r) => release.push(r));
            return m.payload;
          },
          new CommitOffsets(commit),
          { concurrency: 4 },
        ),
    },
  });
  const running = processor.run();
  await waitFor(() => offsets.length === 4 && release.length === 1, "all four started");
  const iterations = processor.stats.iterations;
  await waitFor(() => processor.stats.iterations >= iterations + 20, "20 more loop iterations");
  assert(acks.every((a) => a <= 101), `acknowledged past the unfinished "b": ${acks}`);
  release[0]();
  await consumer.done;
  processor.signalShutdown();
  await running;
  assertEquals(offsets.sort(), [101, 102, 103, 104], "committable = sequence number + 1");
  assertEquals(acks.at(-1), 104);
});

Deno.test("stream source: bad input and impossible requests are typed errors", async () => {
  assertThrows(
    () => new StreamConsumer("not a stream" as never, { onCommit() {} }),
    ConfigurationError,
    "needs a ReadableStream",
  );
  assertThrows(
    () => new StreamConsumer(ReadableStream.from([1]), {} as never),
    ConfigurationError,
    "needs onCommit",
  );
  const locked = ReadableStream.from([1]);
  locked.getReader();
  assertThrows(() => new StreamConsumer(locked, { onCommit() {} }), ConfigurationError, "locked");
  const c = new StreamConsumer(ReadableStream.from([1, 2]), { onCommit() {} });
  assertThrows(() => c.subscribe(["other"]), ConfigurationError, 'reads one topic, "stream"');
  c.subscribe(["stream"]);
  const got: number[] = [];
  for (let i = 0; i < 100 && got.length < 2; i++) {
    got.push(...(await c.poll(10)).map((v) => v.offset));
  }
  assertEquals(got, [0, 1]);
  const p = Partition.of("stream", 0);
  assertThrows(() => c.seek(new Map([[p, 0]])), InvalidStateError, "cannot seek to 0");
  c.seek(new Map([[p, 2]])); // where it is: fine
  assertThrows(() => c.stageOffsets(new Map([[p, 3]])), InvalidStateError, "past the last item");
  assertThrows(
    () => c.stageOffsets(new Map([[Partition.of("x", 0), 1]])),
    ConfigurationError,
    "reads only stream/0",
  );
  await c.close();
  await assertRejects(() => c.poll(0), InvalidStateError, "closed");
});

Deno.test("stream source: a failing source stops the pipeline with a clear error; acks so far kept", async () => {
  let n = 0;
  const source = new ReadableStream<number>({
    pull(controller) {
      if (n === 3) return controller.error(new Error("socket reset"));
      controller.enqueue(n++);
    },
  }, { highWaterMark: 0 });
  let acked = 0;
  const error = await assertRejects(
    () =>
      processStream(source, {
        onCommit: (next) => void (acked = next),
        factory: {
          createWithPartitions: (commit) =>
            new RunTask((m) => m.payload, new CommitOffsets(commit)),
        },
      }),
    SluiceError,
    "reading the source stream failed after 3 item(s): socket reset",
  );
  assert(error instanceof SluiceError);
  assertEquals(acked, 3, "finished work before the failure is acknowledged");
});

Deno.test("stream source: a failing onCommit fails the run like a failed broker commit", async () => {
  await assertRejects(() =>
    processStream(ReadableStream.from([1, 2, 3]), {
      onCommit: () => {
        throw new Error("ack channel closed");
      },
      factory: {
        createWithPartitions: (commit) => new RunTask((m) => m.payload, new CommitOffsets(commit)),
      },
    }), Error);
});

Deno.test("stream source: abort stops early, acknowledges what finished, cancels the source", async () => {
  const { stream, state } = countingSource(1_000_000);
  const abort = new AbortController();
  let acked = 0;
  let seen = 0;
  const stats = await processStream(stream, {
    signal: abort.signal,
    onCommit: (next) => void (acked = next),
    factory: {
      createWithPartitions: (commit) =>
        new RunTask((m) => {
          if (++seen === 50) abort.abort();
          return m.payload;
        }, new CommitOffsets(commit)),
    },
  });
  assert(stats.messagesPolled < 1_000_000);
  assertEquals(acked, stats.messagesSubmitted, "everything submitted was finished and acked");
  assert(state.cancelled !== undefined, "the source was cancelled");
});

Deno.test("lines: splits across chunks, \\r\\n and a last line without end; skips empty lines", async () => {
  const enc = new TextEncoder();
  const chunks = ['{"a":1}\n{"b"', ':2}\r\n\n{"c":3', "}"];
  const body = ReadableStream.from(chunks.map((c) => enc.encode(c)));
  const out: string[] = [];
  for await (const line of lines(body)) out.push(line);
  assertEquals(out, ['{"a":1}', '{"b":2}', '{"c":3}']);
});

Deno.test("stream source: poll(timeoutMs) waits for a late first item, and a poll that times out loses nothing", async () => {
  const enqueue: ((n: number) => void)[] = [];
  let failNext = false;
  const source = new ReadableStream<number>({
    pull(controller) {
      if (failNext) return controller.error(new Error("gone"));
      return new Promise<void>((resolve) =>
        enqueue.push((n) => {
          controller.enqueue(n);
          resolve();
        })
      );
    },
  }, { highWaterMark: 0 });
  const c = new StreamConsumer(source, { onCommit() {} });
  c.subscribe(["stream"]);
  // Nothing arrives: the poll returns empty after its timeout, and its read stays pending.
  const started = Date.now();
  assertEquals(await c.poll(30), []);
  assert(Date.now() - started >= 25, "the poll waited for its timeout");
  // The item arrives while a poll waits: that poll returns it, long before its timeout.
  const waiting = c.poll(10_000);
  await waitFor(() => enqueue.length > 0, "the source was pulled");
  const before = Date.now();
  enqueue.shift()!(7);
  assertEquals((await waiting).map((v) => [v.offset, v.payload]), [[0, 7]]);
  assert(Date.now() - before < 5_000, "the poll returned when the item came, not at its timeout");
  // The read left pending by a timed-out poll is the one the next poll gets: nothing lost.
  assertEquals(await c.poll(20), []);
  await waitFor(() => enqueue.length > 0, "the source was pulled again");
  enqueue.shift()!(8);
  assertEquals((await c.poll(0)).map((v) => [v.offset, v.payload]), [[1, 8]]);
  // A read that fails while a poll waits fails that poll with the stream's error.
  failNext = true;
  const failing = c.poll(10_000);
  await waitFor(() => enqueue.length > 0, "pulled a third time");
  enqueue.shift()!(9); // handed out by that poll, the next pull errors the stream
  assertEquals((await failing).map((v) => v.payload), [9]);
  await assertRejects(() => c.poll(10_000), SluiceError, "gone");
  await c.close();
});
