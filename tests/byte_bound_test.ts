/**
 * Memory is bounded in bytes: 1 GiB of payloads flows through a slow step whose queue is
 * bounded at 16 MiB (`size: byteLength`), and the process's heap plus off-heap buffers
 * stay under a stated ceiling the whole time.
 *
 * The source generates payloads lazily (a tiny in-test consumer), so the test itself
 * never holds more than one poll's worth; the processor carries at most one batch.
 */
import { assert, assertEquals, assertLessOrEqual } from "@std/assert";
import type { AssignmentCallbacks, Consumer } from "../backends/abstract.ts";
import { CommitPolicy } from "../processing/commit_policy.ts";
import { StreamProcessor } from "../processing/processor.ts";
import type { ProcessingStrategy } from "../strategies/abstract.ts";
import { CommitOffsets } from "../strategies/commit_offsets.ts";
import { byteLength } from "../strategies/size.ts";
import { StreamStep } from "../strategies/stream_step.ts";
import { BrokerValue, type Committable, type Message, Partition } from "../types.ts";

const MiB = 1024 * 1024;
const PAYLOAD = 64 * 1024;
const TOTAL_BYTES = 1024 * MiB;
const TOTAL = TOTAL_BYTES / PAYLOAD; // 16 384 messages
const BOUND = 16 * MiB;
/** The stated ceiling: the 16 MiB bound, one carried poll (1 MiB), and fixed overhead. */
const CEILING = 200 * MiB;

const partition = Partition.of("byte-bound", 0);

/** A consumer of one partition whose messages are made on demand (64 KiB each). */
class GeneratingConsumer implements Consumer<Uint8Array> {
  readonly memberId = "generator";
  closed = false;
  committed = 0;
  #next = 0;
  /** Messages made so far. */
  get generated(): number {
    return this.#next;
  }
  #staged = 0;
  #callbacks: AssignmentCallbacks = {};
  #assigned = false;

  subscribe(_topics: readonly unknown[], callbacks: AssignmentCallbacks = {}): void {
    this.#callbacks = callbacks;
  }
  unsubscribe(): void {}
  async poll(): Promise<BrokerValue<Uint8Array>[]> {
    if (!this.#assigned) {
      this.#assigned = true;
      await this.#callbacks.onAssign?.(new Map([[partition, 0]]));
    }
    const out: BrokerValue<Uint8Array>[] = [];
    for (let i = 0; i < 16 && this.#next < TOTAL; i++) {
      const payload = new Uint8Array(PAYLOAD);
      payload[0] = this.#next & 0xff; // touch it, so the pages are real
      payload[PAYLOAD - 1] = 1;
      out.push(new BrokerValue(payload, partition, this.#next++, 0));
    }
    return out;
  }
  pause(): void {}
  resume(): void {}
  paused(): Partition[] {
    return [];
  }
  tell(): Map<Partition, number> {
    return new Map([[partition, this.#next]]);
  }
  seek(): void {}
  stageOffsets(offsets: Committable): void {
    this.#staged = Math.max(this.#staged, offsets.get(partition) ?? 0);
  }
  commitOffsets(): Promise<Map<Partition, number>> {
    this.committed = this.#staged;
    return Promise.resolve(new Map([[partition, this.committed]]));
  }
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.#callbacks.onRevoke?.([partition]);
  }
}

/** A slow step: each chunk waits for the next `poll()` before it is handed on. */
class SlowStep extends StreamStep<Uint8Array> {
  bytesThrough = 0;
  constructor(next: ProcessingStrategy<Uint8Array>, bound: number, readonly sample: () => void) {
    super("slow", next, { highWaterMark: bound, size: byteLength });
  }
  protected async process(batch: Message<Uint8Array>[]): Promise<void> {
    await this.waitForPoll();
    this.sample();
    for (const m of batch) {
      this.bytesThrough += m.payload.byteLength;
      await this.emitWhenRoom(m);
    }
  }
}

interface Result {
  seconds: number;
  committed: number;
  bytesThrough: number;
  rejections: number;
  baseline: number;
  peakLive: number;
  peakRaw: number;
  peakRss: number;
  peakInPipeline: number;
}

/**
 * Runs the workload. `gc` (when the process runs with `--expose-gc`) is called before
 * some samples so they measure live memory, not garbage the collector has yet to free.
 */
async function workload(bound: number): Promise<Result> {
  const gc = (globalThis as { gc?: () => void }).gc;
  const memory = () => {
    const u = Deno.memoryUsage();
    return u.heapUsed + u.external;
  };
  gc?.();
  const baseline = memory();
  let peakLive = baseline;
  let peakRaw = baseline;
  let peakRss = 0;
  let peakInPipeline = 0;
  let samples = 0;
  let slow: SlowStep | undefined;
  const consumer = new GeneratingConsumer();
  const sample = () => {
    // Bytes made by the source and not yet through the slow step: queued or carried.
    peakInPipeline = Math.max(peakInPipeline, consumer.generated * PAYLOAD - slow!.bytesThrough);
    samples++;
    if (samples % 8 === 0) {
      const u = Deno.memoryUsage();
      peakRaw = Math.max(peakRaw, u.heapUsed + u.external);
      peakRss = Math.max(peakRss, u.rss);
    }
    if (gc && samples % 64 === 0) {
      gc();
      peakLive = Math.max(peakLive, memory());
    }
  };
  const processor = new StreamProcessor<Uint8Array>({
    consumer,
    topics: ["byte-bound"],
    commitPolicy: new CommitPolicy({ intervalMs: 100 }),
    maxBackoffMs: 5,
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        slow = new SlowStep(new CommitOffsets(commit), bound, sample),
    },
  });
  const started = performance.now();
  const running = processor.run();
  while (consumer.committed < TOTAL && performance.now() - started < 50_000) {
    await new Promise((r) => setTimeout(r, 20));
  }
  processor.signalShutdown();
  await running;
  return {
    seconds: (performance.now() - started) / 1000,
    committed: consumer.committed,
    bytesThrough: slow!.bytesThrough,
    rejections: processor.stats.rejections,
    baseline,
    peakLive,
    peakRaw,
    peakRss,
    peakInPipeline,
  };
}

if (import.meta.main) {
  // Child mode: `deno run --v8-flags=--expose-gc tests/byte_bound_test.ts [boundBytes]`.
  console.log(JSON.stringify(await workload(Number(Deno.args[0] ?? BOUND))));
}

Deno.test("byte bound: 1 GiB through a slow step bounded at 16 MiB keeps live heap + buffers under 200 MiB", async () => {
  // A child process with --expose-gc, so that live memory can be measured after a GC.
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--no-check",
      "--v8-flags=--expose-gc",
      import.meta.filename!,
      String(BOUND),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert(out.success, "the workload ran");
  const r: Result = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
  console.log(
    `1 GiB in ${r.seconds.toFixed(1)} s, ${r.rejections} rejections; ` +
      `most bytes in the pipeline ${(r.peakInPipeline / MiB).toFixed(1)} MiB; heap+external: ` +
      `baseline ${(r.baseline / MiB).toFixed(0)} MiB, peak live ${
        (r.peakLive / MiB).toFixed(0)
      } MiB, ` +
      `peak incl. garbage ${(r.peakRaw / MiB).toFixed(0)} MiB; peak rss ${
        (r.peakRss / MiB).toFixed(0)
      } MiB`,
  );
  assertEquals(r.committed, TOTAL, "all 1 GiB was processed and committed");
  assertEquals(r.bytesThrough, TOTAL_BYTES);
  assert(r.rejections > 0, "the slow step did push back");
  assertLessOrEqual(
    r.peakInPipeline,
    BOUND + 2 * MiB,
    "the pipeline never held more than the bound plus one carried poll (1 MiB) and one message",
  );
  assertLessOrEqual(r.peakLive, CEILING, `live heap + external stayed under ${CEILING / MiB} MiB`);
});
