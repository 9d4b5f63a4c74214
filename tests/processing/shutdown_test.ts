import {
  assert,
  assertEquals,
  assertGreater,
  assertInstanceOf,
  assertLessOrEqual,
  assertRejects,
  assertStringIncludes,
} from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { ClosedError, ConfigurationError, MessageRejected } from "../../errors.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { ProcessorStoppedError, StreamProcessor } from "../../processing/processor.ts";
import type { ProcessingStrategy } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { RunTaskAsync } from "../../strategies/run_task_async.ts";
import type { Message } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { brokerMessage, Sink, tick, waitFor } from "../_support/helpers.ts";

type Maker = (
  fn: (m: Message<number>) => number,
  next: ProcessingStrategy<number>,
  clock: ManualClock,
  maxBackoffMs?: number,
) => ProcessingStrategy<number>;
const makers: Array<[string, Maker]> = [
  ["RunTask", (fn, next, clock, maxBackoffMs) => new RunTask(fn, next, { clock, maxBackoffMs })],
  [
    "RunTaskAsync",
    (fn, next, clock, maxBackoffMs) => new RunTaskAsync(fn, next, { clock, maxBackoffMs }),
  ],
];

for (const [kind, make] of makers) {
  for (const maxBackoffMs of [undefined, 100]) {
    Deno.test(`${kind}: a held message is retried with a backoff on the clock, not on every poll (maxBackoffMs ${maxBackoffMs ?? "default"})`, async () => {
      const clock = new ManualClock();
      let calls = 0;
      const step = make(
        () => {
          calls++;
          throw new MessageRejected();
        },
        new Sink<number>(),
        clock,
        maxBackoffMs,
      );
      step.submit(brokerMessage(1, 0));
      await tick();
      const first = calls;
      // Two seconds, polled every 10 ms as a busy processor would.
      for (let t = 0; t < 2000; t += 10) {
        step.poll();
        await clock.advance(10);
      }
      const retries = calls - first;
      // 10, 20, 40 ... up to the bound: 1000 ms → 8 retries in 2 s; 100 ms → 4 + 17.
      if (maxBackoffMs === undefined) assertLessOrEqual(retries, 9, `retries in 2 s: ${retries}`);
      else assertLessOrEqual(retries, 23, `retries in 2 s: ${retries}`);
      assertGreater(retries, 4, "it still retries");
      step.terminate();
    });
  }

  Deno.test(`${kind}: shutdown does not wait joinTimeoutMs for a message held for ever; work before it is committed`, async () => {
    const clock = new ManualClock(1_000_000);
    const broker = new LocalBroker<number>({ clock });
    const topic = broker.createTopic(`t-${crypto.randomUUID()}`, 1);
    for (let i = 0; i < 10; i++) broker.produce(topic, i);
    const processor = new StreamProcessor<number>({
      consumer: broker.getConsumer("g"),
      topics: [topic],
      clock,
      pollTimeoutMs: 0,
      handleSignals: false,
      joinTimeoutMs: 25_000,
      commitPolicy: CommitPolicy.IMMEDIATE,
      factory: {
        createWithPartitions: (commit) =>
          make(
            (m) => {
              if (m.payload === 4) throw new MessageRejected();
              return m.payload;
            },
            new CommitOffsets(commit, { clock }),
            clock,
          ),
      },
    });
    const running = processor.run();
    const p0 = broker.partitions(topic)[0];
    await waitFor(() => broker.committed("g").get(p0) === 4, "offsets 0..3 committed");
    processor.signalShutdown();
    let stopped = false;
    running.then(() => stopped = true, () => stopped = true);
    let advanced = 0;
    for (; advanced < 30_000 && !stopped; advanced += 50) await clock.advance(50);
    await running;
    assertLessOrEqual(
      advanced,
      2_000,
      `shutdown took ${advanced} ms of the clock (joinTimeoutMs 25 000)`,
    );
    assertEquals(broker.committed("g").get(p0), 4, "nothing committed past the held message");
  });
}

function batch(count: number, partitions = 3) {
  const broker = new LocalBroker<number>();
  const topic = broker.createTopic(`t-${crypto.randomUUID()}`, partitions);
  for (let i = 0; i < count; i++) broker.produce(topic, i);
  const processor = new StreamProcessor<number>({
    consumer: broker.getConsumer("g"),
    topics: [topic],
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        new RunTask((m: Message<number>) => m.payload, new CommitOffsets(commit)),
    },
  });
  return { broker, topic, processor };
}

Deno.test("run() on a processor that has stopped throws ProcessorStoppedError", async () => {
  const { processor } = batch(10);
  processor.signalShutdown();
  await processor.run();
  const error = await assertRejects(() => processor.run(), ProcessorStoppedError);
  assertInstanceOf(error, ClosedError);
  assertStringIncludes(error.message, "create a new consumer and StreamProcessor");
  await assertRejects(() => processor.runOnce(), ProcessorStoppedError);
});

Deno.test("run({ untilCaughtUp: true }) processes and commits what the partitions held, then stops", async () => {
  const { broker, topic, processor } = batch(300);
  await processor.run({ untilCaughtUp: true });
  const committed = broker.committed("g");
  for (const p of broker.partitions(topic)) {
    assertEquals(committed.get(p), broker.endOffset(p), `${p} committed to its end`);
  }
  assertEquals(processor.stats.messagesSubmitted, 300);
  await assertRejects(() => processor.run(), ProcessorStoppedError);
});

Deno.test("run({ untilCaughtUp: true }) on empty partitions stops at once", async () => {
  const { processor } = batch(0);
  await processor.run({ untilCaughtUp: true });
  assertEquals(processor.stats.messagesSubmitted, 0);
});

Deno.test("run({ untilCaughtUp: true }) needs a consumer that can tell its end offsets", async () => {
  const { broker, topic } = batch(1);
  const consumer = broker.getConsumer("g");
  (consumer as { endOffsets?: unknown }).endOffsets = undefined;
  const processor = new StreamProcessor<number>({
    consumer,
    topics: [topic],
    handleSignals: false,
    factory: { createWithPartitions: (commit) => new CommitOffsets(commit) },
  });
  await assertRejects(
    () => processor.run({ untilCaughtUp: true }),
    ConfigurationError,
    "endOffsets",
  );
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.test(`${signal}: one line says what is drained and the deadline; a second ${signal} stops at once, committing nothing more`, async () => {
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../fixtures/hold_app.ts", import.meta.url).pathname],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const err = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let stdout = "";
    let stderr = "";
    const readAll = async (
      r: ReadableStreamDefaultReader<string>,
      add: (s: string) => void,
    ) => {
      for (;;) {
        const { value, done } = await r.read();
        if (done) return;
        add(value);
      }
    };
    const reading = Promise.all([
      readAll(out, (s) => stdout += s),
      readAll(err, (s) => stderr += s),
    ]);
    await waitFor(() => stdout.includes("READY"), "the app to be ready", 30_000);
    child.kill(signal);
    await waitFor(() => stderr.includes("shutting down"), "the shutdown line", 10_000);
    const line = stderr.split("\n").find((l) => l.includes("shutting down"))!;
    assertStringIncludes(line, `sluice: ${signal} received`);
    assertStringIncludes(line, "draining the pipeline of 1 partition(s) (hold/0)");
    assertStringIncludes(line, "60000 ms (joinTimeoutMs)");
    assertStringIncludes(line, `Send ${signal} again to stop at once`);
    const t0 = performance.now();
    child.kill(signal);
    const status = await child.status;
    const took = performance.now() - t0;
    await reading;
    assertEquals(status.code, signal === "SIGINT" ? 130 : 143, `exit code; stderr: ${stderr}`);
    assertLessOrEqual(took, 10_000, "stopped at once, not after joinTimeoutMs (60 s)");
    assert(!stdout.includes("RETURNED"), "run() never returned: the process stopped");
    const commits = stdout.split("\n").filter((l) => l.startsWith("COMMIT")).map((l) =>
      Number(l.split(" ")[2])
    );
    assertGreater(commits.length, 0);
    assertLessOrEqual(Math.max(...commits), 5, "nothing committed past the unfinished offset 5");
  });
}

Deno.test("RunTaskAsync: a message given up at close waits for the calls before it, without spinning", async () => {
  const clock = new ManualClock();
  const sink = new Sink<number>();
  const step = new RunTaskAsync(
    async (m: Message<number>) => {
      if (m.payload === 0) await new Promise((r) => setTimeout(r, 30)); // real I/O, slow
      if (m.payload === 1) throw new MessageRejected();
      return m.payload;
    },
    sink,
    { clock },
  );
  step.submit(brokerMessage(0, 0));
  step.submit(brokerMessage(1, 1));
  step.submit(brokerMessage(2, 2));
  await tick();
  step.close();
  await step.join(60_000); // would starve the timer above if the give-up spun
  assertEquals(sink.received.map((m) => m.payload), [0], "the call before it finished and went on");
});
