/**
 * The runtime smoke suite: the same checks in Deno, Node, Bun, Chromium and workerd
 * (`tests/runtime/runtimes_test.ts` runs it in each). It uses web-standard APIs only and gets the
 * library passed in, so each runtime can load it its own way (sources under Deno and Bun,
 * the type-stripped npm build under Node, in a page and in workerd).
 *
 * @module
 */
import type * as Sluice from "../../mod.ts";
import type * as Local from "../../backends/local/mod.ts";
import type * as Health from "../../health.ts";
import type * as Stream from "../../stream.ts";
import type * as Runtime from "../../runtime/mod.ts";

/** The library modules the suite runs against. */
export interface SmokeLibrary {
  sluice: typeof Sluice;
  local: typeof Local;
  health: typeof Health;
  stream: typeof Stream;
  runtime: typeof Runtime;
  /** Where a health file may be written (Deno, Node, Bun). */
  tempDir?: string;
  /** Port for the health server (Deno, Node, Bun). Default 0: any free port. */
  port?: number;
}

/** The checks, in the order they run (one test each per runtime in `runtimes_test.ts`). */
export const SMOKE_CHECKS = [
  "in-memory pipeline (filter, async, batch, commit)",
  "web-stream source (NDJSON acks, backpressure)",
  "signals",
  "health probes",
  "workers",
] as const;

/** A check's name. */
export type SmokeCheck = typeof SMOKE_CHECKS[number];

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
  const startedWhileBlocked = started;
  release();
  await running;
  expectEqual(consumer.committed, total, "acknowledged position after the stream ended");
  expectEqual(started, total, "items processed");
  return `acks up to ${acks.at(-1)}; blocked after ${ahead} pulls (${startedWhileBlocked} ` +
    `started), no pull while paused`;
}

const PROCESS_RUNTIMES = ["deno", "node", "bun"];

/** Throws unless `fn` throws an UnsupportedRuntimeError for `feature`; returns its message. */
function unsupported(lib: SmokeLibrary, feature: string, fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof lib.sluice.UnsupportedRuntimeError && e.feature === feature) {
      return e.message;
    }
    throw e;
  }
  throw new Error(`${feature}: expected an UnsupportedRuntimeError, nothing was thrown`);
}

/** Signals: handlers install where there are process signals, a typed error elsewhere. */
function signals(lib: SmokeLibrary): string {
  const { sluice, runtime } = lib;
  const rt = runtime.detectRuntime();
  const broker = new lib.local.LocalBroker<string>();
  broker.createTopic("t", 1);
  const options = {
    consumer: broker.getConsumer("g"),
    topics: ["t"],
    factory: { createWithPartitions: () => new sluice.Noop() as never },
  };
  if (PROCESS_RUNTIMES.includes(rt)) {
    if (!runtime.hasSignals()) throw new Error(`${rt}: hasSignals() is false`);
    const remove = runtime.onShutdownSignals(() => {});
    remove();
    new sluice.StreamProcessor({ ...options, handleSignals: true });
    return `${rt}: SIGINT/SIGTERM handlers install and remove`;
  }
  unsupported(lib, "signals", () => runtime.onShutdownSignals(() => {}));
  const message = unsupported(
    lib,
    "signals",
    () => new sluice.StreamProcessor({ ...options, handleSignals: true }),
  );
  new sluice.StreamProcessor(options); // the default: no handlers, no error
  return `${rt}: ${message}`;
}

/** Health: file and HTTP probes where the runtime has them, typed errors elsewhere. */
async function health(lib: SmokeLibrary): Promise<string> {
  const { sluice, runtime } = lib;
  const rt = runtime.detectRuntime();
  if (PROCESS_RUNTIMES.includes(rt)) {
    const file = `${lib.tempDir ?? "/tmp"}/sluice-smoke-health-${rt}-${Date.now()}`;
    const server = new lib.health.HealthServer({ port: lib.port ?? 0 });
    await server.ready;
    const step = new lib.health.Healthcheck(new sluice.CommitOffsets(() => {}), {
      file,
      http: server,
    });
    step.poll();
    const res = await fetch(`http://127.0.0.1:${server.port}/readyz`);
    const body = await res.json();
    step.terminate();
    await server.close();
    expectEqual([res.status, body.status], [200, "ok"], "/readyz after a beat");
    expectEqual(step.touches, 1, "health file touches");
    // A taken port is a ConfigurationError: thrown (Deno, Bun) or from `ready` (Node).
    const blocker = new lib.health.HealthServer({ port: 0 });
    await blocker.ready;
    try {
      const second = new lib.health.HealthServer({ port: blocker.port });
      await second.ready;
      await second.close();
      throw new Error(`a second server listened on the taken port ${blocker.port}`);
    } catch (e) {
      if (!(e instanceof sluice.ConfigurationError)) throw e;
    } finally {
      await blocker.close();
    }
    return `${rt}: /readyz 200 on port ${server.port}, health file written`;
  }
  const http = unsupported(lib, "http server", () => new lib.health.HealthServer({ port: 0 }));
  unsupported(lib, "health file", () => runtime.writeTextFileSync("/tmp/x", "x"));
  const step = new lib.health.Healthcheck(new sluice.CommitOffsets(() => {}), { file: "/tmp/x" });
  unsupported(lib, "health file", () => step.poll());
  step.terminate();
  return `${rt}: ${http}`;
}

/** Workers: RunTaskInWorkers where the runtime has workers, a typed error elsewhere. */
async function workers(lib: SmokeLibrary): Promise<string> {
  const { sluice, runtime } = lib;
  const rt = runtime.detectRuntime();
  const here = import.meta.url;
  if (!runtime.hasWorkers() || here === undefined) {
    const message = unsupported(
      lib,
      "workers",
      () => new sluice.RunTaskInWorkers("https://example.com/w.js", new sluice.Noop()),
    );
    return `${rt}: ${message}`;
  }
  const module = new URL(here.endsWith(".ts") ? "./double.ts" : "./double.js", here);
  const broker = new lib.local.LocalBroker<number>();
  broker.createTopic("numbers", 1);
  for (let i = 0; i < 10; i++) broker.produce("numbers", i);
  const out: number[] = [];
  const processor = new sluice.StreamProcessor<number>({
    consumer: broker.getConsumer("workers"),
    topics: ["numbers"],
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        new sluice.RunTaskInWorkers<number, number>(
          module,
          new sluice.RunTask((m) => void out.push(m.payload), new sluice.CommitOffsets(commit)),
          { workers: 2, maxBatchSize: 3, maxBatchTimeMs: 5 },
        ),
    },
  });
  const running = processor.run();
  const p = broker.partitions("numbers")[0];
  await waitUntil(() => broker.committed("workers").get(p) === 10, "offset 10 committed");
  processor.signalShutdown();
  await running;
  expectEqual(out, [...Array(10)].map((_, i) => i * 2), "doubled in order");
  return `${rt}: 2 workers doubled 10 numbers in order, committed ${p}@10`;
}

/** Runs every check; never throws. */
export async function runSmoke(lib: SmokeLibrary): Promise<SmokeReport> {
  const checks: Array<[SmokeCheck, (lib: SmokeLibrary) => string | Promise<string>]> = [
    [SMOKE_CHECKS[0], inMemoryPipeline],
    [SMOKE_CHECKS[1], webStreamSource],
    [SMOKE_CHECKS[2], signals],
    [SMOKE_CHECKS[3], health],
    [SMOKE_CHECKS[4], workers],
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
    runtime: lib.runtime.detectRuntime(),
    passed,
    failed: results.length - passed,
    results,
  };
}
