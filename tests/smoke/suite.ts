/**
 * The runtime smoke suite: the same checks in Deno, Node, Bun, Chromium and workerd
 * (`tests/runtimes_test.ts` runs it in each). It uses web-standard APIs only and gets the
 * library passed in, so each runtime can load it its own way (sources under Deno and Bun,
 * the type-stripped npm build under Node, in a page and in workerd).
 *
 * @module
 */
import type * as Sluice from "../../mod.ts";
import type * as Local from "../../backends/local/mod.ts";
import type * as Stream from "../../backends/stream.ts";

/** The library modules the suite runs against. */
export interface SmokeLibrary {
  sluice: typeof Sluice;
  local: typeof Local;
  stream: typeof Stream;
}

/** One check's outcome. */
export interface SmokeResult {
  name: string;
  ok: boolean;
  detail: string;
}

/** What a runtime reports back: `SMOKE {json}` on one line. */
export interface SmokeReport {
  runtime: string;
  passed: number;
  failed: number;
  results: SmokeResult[];
}

async function waitUntil(condition: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

function expectEqual(actual: unknown, expected: unknown, what: string): void {
  const a = JSON.stringify(actual);
  const e = JSON.stringify(expected);
  if (a !== e) throw new Error(`${what}: expected ${e}, got ${a}`);
}

/** Filter, async step, batching and commit on the in-memory broker. */
async function inMemoryPipeline({ sluice, local }: SmokeLibrary): Promise<string> {
  const { BatchStep, CommitOffsets, FilterStep, RunTask, RunTaskAsync, StreamProcessor } = sluice;
  const broker = new local.LocalBroker<string>();
  broker.createTopic("events", 2);
  for (let i = 0; i < 40; i++) broker.produce(`events`, JSON.stringify({ n: i }), { key: `k${i}` });
  const partitions = broker.partitions("events");
  const seen: number[] = [];
  const processor = new StreamProcessor<string>({
    consumer: broker.getConsumer("smoke"),
    topics: ["events"],
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        new FilterStep<string>(
          (m) => JSON.parse(m.payload).n % 2 === 0,
          new RunTaskAsync<string, number>(
            async (m) => {
              await new Promise((r) => setTimeout(r, 0));
              return JSON.parse(m.payload).n * 10;
            },
            new BatchStep<number>(
              new RunTask((batch) => {
                for (const m of batch.payload) seen.push(m.payload);
              }, new CommitOffsets(commit)),
              { maxBatchSize: 3, maxBatchTimeMs: 10 },
            ),
            { concurrency: 4 },
          ),
        ),
    },
  });
  const running = processor.run();
  const ends = partitions.map((p) => broker.endOffset(p));
  await waitUntil(
    () => partitions.every((p, i) => broker.committed("smoke").get(p) === ends[i]),
    "every partition committed to its end offset",
  );
  processor.signalShutdown();
  await running;
  const committed = Object.fromEntries(
    partitions.map((p) => [String(p), broker.committed("smoke").get(p)]),
  );
  expectEqual(
    Object.values(committed).reduce((a, b) => a! + b!, 0),
    40,
    "sum of committed offsets",
  );
  expectEqual(seen.sort((a, b) => a - b), [...Array(20)].map((_, i) => i * 20), "outputs");
  return `committed ${JSON.stringify(committed)}`;
}

/**
 * The web-stream source: an NDJSON body through filter, async step and batching, every
 * line acknowledged; and a blocked pipeline stops pulling the source.
 */
async function webStreamSource({ sluice, stream }: SmokeLibrary): Promise<string> {
  const { BatchStep, CommitOffsets, FilterStep, RunTask, RunTaskAsync } = sluice;
  const text = [...Array(30)].map((_, i) => JSON.stringify({ n: i })).join("\n") + "\n";
  const acks: number[] = [];
  let kept = 0;
  const stats = await stream.processStream(stream.lines(new Response(text).body!), {
    onCommit: (next) => void acks.push(next),
    factory: {
      createWithPartitions: (commit) =>
        new FilterStep<string>(
          (m) => JSON.parse(m.payload).n % 3 !== 0,
          new RunTaskAsync<string, string>(
            async (m) => {
              await Promise.resolve();
              return m.payload;
            },
            new BatchStep<string>(
              new RunTask((b) => void (kept += b.payload.length), new CommitOffsets(commit)),
              { maxBatchSize: 4, maxBatchTimeMs: 10 },
            ),
          ),
        ),
    },
  });
  expectEqual(acks.at(-1), 30, "last acknowledged sequence number");
  expectEqual(kept, 20, "lines kept by the filter");
  expectEqual(stats.messagesPolled, 30, "lines polled");

  // Backpressure: a source counting its pulls, a pipeline that holds everything.
  let pulls = 0;
  const total = 200;
  const source = new ReadableStream<number>({
    pull(controller) {
      if (pulls === total) return controller.close();
      controller.enqueue(pulls++);
    },
  }, { highWaterMark: 0 });
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  let started = 0;
  const consumer = new stream.StreamConsumer(source, {
    onCommit: (n) => void acks.push(n),
    maxPollRecords: 5,
  });
  const processor = new sluice.StreamProcessor<number>({
    consumer,
    topics: [consumer.topic],
    handleSignals: false,
    pauseAfterMs: 0,
    maxBackoffMs: 2,
    pausedBackoffMs: 2,
    factory: {
      createWithPartitions: (commit) =>
        new RunTaskAsync<number, number>(
          async (m) => {
            started++;
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
  await waitUntil(() => processor.stats.pauses >= 1, "the processor pausing the source");
  const pullsAtPause = pulls;
  const rejections = processor.stats.rejections;
  await waitUntil(
    () => processor.stats.rejections >= rejections + 20,
    "20 more rejections while full",
  );
  const pullsWhileFull = pulls - pullsAtPause;
  if (pullsWhileFull !== 0) {
    throw new Error(`the source was pulled ${pullsWhileFull} time(s) while the pipeline was full`);
  }
  if (pulls >= total) throw new Error(`the whole source was read ahead (${pulls} pulls)`);
  const ahead = pulls;
  release();
  await running;
  expectEqual(consumer.committed, total, "acknowledged position after the stream ended");
  expectEqual(started, total, "items processed");
  return `acks up to ${
    acks.at(-1)
  }; ${ahead} pulls (${started} started) while blocked, none after the pause`;
}

/** Where the runtime lacks a facility, the typed error names it. */
function typedErrors({ sluice }: SmokeLibrary): string {
  const rt = sluice.detectRuntime();
  const out: string[] = [rt];
  if (rt === "browser" || rt === "workerd") {
    try {
      new sluice.StreamProcessor({
        consumer: { poll: () => Promise.resolve([]) } as never,
        topics: ["t"],
        factory: { createWithPartitions: () => undefined as never },
        handleSignals: true,
      });
      throw new Error("handleSignals: true did not throw");
    } catch (e) {
      if (!(e instanceof sluice.UnsupportedRuntimeError) || e.feature !== "signals") throw e;
      out.push("signals: UnsupportedRuntimeError");
    }
    try {
      new sluice.HealthServer({ port: 0 });
      throw new Error("HealthServer did not throw");
    } catch (e) {
      if (!(e instanceof sluice.UnsupportedRuntimeError) || e.feature !== "http server") throw e;
      out.push("http server: UnsupportedRuntimeError");
    }
  }
  return out.join("; ");
}

/** Runs every check; never throws. */
export async function runSmoke(lib: SmokeLibrary): Promise<SmokeReport> {
  const checks: Array<[string, (lib: SmokeLibrary) => string | Promise<string>]> = [
    ["in-memory pipeline (filter, async, batch, commit)", inMemoryPipeline],
    ["web-stream source (NDJSON acks, backpressure)", webStreamSource],
    ["runtime detection and typed errors", typedErrors],
  ];
  const results: SmokeResult[] = [];
  for (const [name, check] of checks) {
    try {
      results.push({ name, ok: true, detail: await check(lib) });
    } catch (e) {
      results.push({
        name,
        ok: false,
        detail: e instanceof Error ? e.stack ?? e.message : String(e),
      });
    }
  }
  const passed = results.filter((r) => r.ok).length;
  return {
    runtime: lib.sluice.detectRuntime(),
    passed,
    failed: results.length - passed,
    results,
  };
}
