/**
 * Helpers of the metrics tests: an in-memory OpenTelemetry reader and a snapshot of one
 * collection read back in the scenarios' milliseconds, a slow sink, and the slow pipeline
 * (LocalBroker → parse → sink, every queue one deep) driven to open backpressure episodes.
 *
 * @module
 */
import {
  DataPointType,
  type HistogramMetricData,
  MeterProvider,
  type MetricData,
  MetricReader,
} from "@opentelemetry/sdk-metrics";
import { assert, assertEquals } from "@std/assert";
import { macrotask, ManualClock } from "../../clock.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import type { Commit } from "../../strategies/abstract.ts";
import { highestOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { type StepOptions, StreamStep } from "../../strategies/stream_step.ts";
import type { Message } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";

/** The SDK's reader, collected on demand (no export timer). */
export class InMemoryReader extends MetricReader {
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

export type Attrs = Record<string, string | number>;

/** One collection, indexed by metric name. */
export class Snapshot {
  readonly #byName = new Map<string, MetricData>();
  constructor(data: MetricData[]) {
    for (const m of data) this.#byName.set(m.descriptor.name, m);
  }
  get names(): string[] {
    return [...this.#byName.keys()].sort();
  }
  metric(name: string): MetricData | undefined {
    return this.#byName.get(name);
  }
  /** Data points of `name` as [attributes, value] (value: number, or histogram summary). */
  points(name: string): Array<{ attributes: Attrs; value: unknown }> {
    const m = this.#byName.get(name);
    return (m?.dataPoints ?? []).map((p) => ({
      attributes: p.attributes as Attrs,
      value: p.value,
    }));
  }
  /**
   * The value of the point whose attributes equal `attrs` (besides the processor's
   * `messaging.*` ones when `attrs` does not name them). Metrics in seconds are given in
   * milliseconds, as the scenarios' clocks count (the unit itself is asserted apart).
   */
  value(name: string, attrs: Attrs = {}): number | undefined {
    const p = this.#find(name, attrs);
    return p === undefined ? undefined : this.#ms(name, p.value as number);
  }
  /** The unit `name` is exported with. */
  unit(name: string): string | undefined {
    return this.#byName.get(name)?.descriptor.unit;
  }
  #ms(name: string, v: number): number {
    return this.unit(name) === "s" ? Math.round(v * 1000 * 1e6) / 1e6 : v;
  }
  histogram(
    name: string,
    attrs: Attrs,
  ): { count: number; sum: number; min?: number; max?: number } | undefined {
    const m = this.#byName.get(name);
    if (m === undefined) return undefined;
    assertEquals(m.dataPointType, DataPointType.HISTOGRAM, `${name} is a histogram`);
    const p = (m as HistogramMetricData).dataPoints.find((d) => sameAttrs(d.attributes, attrs));
    if (p === undefined) return undefined;
    const ms = (v: number | undefined) => v === undefined ? undefined : this.#ms(name, v);
    return {
      count: p.value.count,
      sum: ms(p.value.sum) ?? NaN,
      min: ms(p.value.min),
      max: ms(p.value.max),
    };
  }
  #find(name: string, attrs: Attrs): { attributes: Attrs; value: unknown } | undefined {
    return this.points(name).find((p) => sameAttrs(p.attributes, attrs));
  }
}

/** Attributes every point of a processor carries (its series), ignored unless asked for. */
const SERIES_KEYS = ["messaging.system", "messaging.consumer.group.name", "messaging.client.id"];

/** A partition's attributes. */
export function tp(topic: string, partition: number): Attrs {
  return {
    "messaging.destination.name": topic,
    "messaging.destination.partition.id": String(partition),
  };
}

function sameAttrs(all: Record<string, unknown>, b: Attrs): boolean {
  const a: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(all)) if (!SERIES_KEYS.includes(k) || k in b) a[k] = v;
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

export function meterProvider(): { provider: MeterProvider; snapshot: () => Promise<Snapshot> } {
  const reader = new InMemoryReader();
  const provider = new MeterProvider({ readers: [reader] });
  return {
    provider,
    snapshot: async () => {
      const { resourceMetrics, errors } = await reader.collect();
      assertEquals(errors, [], "collection reported no errors");
      return new Snapshot(resourceMetrics.scopeMetrics.flatMap((s) => s.metrics));
    },
  };
}

/** Lets every pending microtask and a few macrotask turns run (no time passes). */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await macrotask();
}

/**
 * A terminal step that holds every chunk until `release()` (the slow sink), then commits
 * it. Records when it was closed.
 */
export class SlowSink extends StreamStep<string, never> {
  readonly #holds: Array<() => void> = [];
  readonly #commit: Commit;
  closedAt: number | undefined;
  constructor(commit: Commit, options: StepOptions) {
    super("slow_sink", undefined, options);
    this.#commit = commit;
  }
  protected process(batch: Message<string>[]): Promise<void> {
    return new Promise((resolve) => {
      this.#holds.push(() => {
        this.#commit(highestOffsets(batch));
        resolve();
      });
    });
  }
  /** Finishes the oldest held chunk; false when nothing was held. */
  release(): boolean {
    const h = this.#holds.shift();
    h?.();
    return h !== undefined;
  }
  override close(): void {
    this.closedAt ??= this.clock.now();
    super.close();
  }
}

export const ONE = { highWaterMark: 1, chunkSize: 1 } as const;
export const SEND_DURATION = "sluice.step.send_backpressure.duration";
export const RECEIVE_DURATION = "sluice.step.receive_backpressure.duration";
export const SEND_TIME = "sluice.step.send_backpressure.time";
export const RECEIVE_TIME = "sluice.step.receive_backpressure.time";

export interface SlowPipeline {
  clock: ManualClock;
  broker: LocalBroker<string>;
  processor: StreamProcessor<string>;
  sink: () => SlowSink;
  snapshot: () => Promise<Snapshot>;
}

/** LocalBroker → parse (RunTask) → sink (SlowSink), every queue holding one message. */
export function slowPipeline(
  messages: number,
  extra: {
    joinTimeoutMs?: number;
    pauseAfterMs?: number;
    metrics?: boolean;
    meterProvider?: MeterProvider | null;
  } = {},
): SlowPipeline {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  broker.createTopic("slow", 1);
  for (let i = 0; i < messages; i++) broker.produce("slow", `m${i}`);
  const { provider, snapshot } = meterProvider();
  let sink: SlowSink | undefined;
  const processor = new StreamProcessor<string>({
    consumer: broker.getConsumer("g"),
    topics: ["slow"],
    clock,
    meterProvider: "meterProvider" in extra ? extra.meterProvider : provider,
    metrics: extra.metrics,
    commitPolicy: CommitPolicy.IMMEDIATE,
    pollTimeoutMs: 0,
    joinTimeoutMs: extra.joinTimeoutMs ?? 0,
    pauseAfterMs: extra.pauseAfterMs ?? 1_000_000,
    handleSignals: false,
    factory: {
      createWithPartitions(commit) {
        sink = new SlowSink(commit, { name: "sink", clock, ...ONE });
        return new RunTask((m: Message<string>) => m.payload.toUpperCase(), sink, {
          name: "parse",
          clock,
          ...ONE,
        });
      },
    },
  });
  return { clock, broker, processor, sink: () => sink!, snapshot };
}

/**
 * Drives the slow pipeline to the state where every episode is open at t=0: the sink
 * holds m0, parse holds m1 (rejected by the sink), and m2 is carried by the processor.
 * The clock ends at `at`.
 */
export async function openEpisodes(p: SlowPipeline, at: number): Promise<void> {
  await p.processor.runOnce(); // m0 accepted, m1 rejected until parse hands m0 on
  await settle();
  const second = p.processor.runOnce(); // m1 accepted, m2 rejected: parse is stuck behind the sink
  await settle();
  await p.clock.advance(at); // the processor's backoff timer lets runOnce return
  await second;
  await settle();
  assert(p.processor.backpressured, "the processor holds a rejected message");
}

/** LocalBroker → parse (RunTask) → enrich (RunTask) → sink (held), every queue one deep. */
export function backpressured(pauseAfterMs: number) {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  broker.createTopic("orders", 1);
  for (let i = 0; i < 5; i++) broker.produce("orders", `m${i}`);
  const reader = new InMemoryReader();
  const provider = new MeterProvider({ readers: [reader] });
  let sink: SlowSink | undefined;
  const processor = new StreamProcessor<string>({
    consumer: broker.getConsumer("g"),
    topics: ["orders"],
    clock,
    meterProvider: provider,
    commitPolicy: CommitPolicy.IMMEDIATE,
    pollTimeoutMs: 0,
    pauseAfterMs,
    handleSignals: false,
    factory: {
      createWithPartitions(commit) {
        sink = new SlowSink(commit, { name: "sink", clock, ...ONE });
        const enrich = new RunTask((m: Message<string>) => `${m.payload}!`, sink, {
          name: "enrich",
          clock,
          ...ONE,
        });
        return new RunTask((m: Message<string>) => m.payload.toUpperCase(), enrich, {
          name: "parse",
          clock,
          ...ONE,
        });
      },
    },
  });
  return { clock, broker, processor, reader, sink: () => sink! };
}

/** Runs the loop until the pipeline is full and the processor holds a rejected message. */
export async function fill(p: ReturnType<typeof backpressured>, stepMs: number, steps: number) {
  for (let i = 0; i < steps; i++) {
    const once = p.processor.runOnce();
    await settle();
    await p.clock.advance(stepMs);
    await once;
    await settle();
  }
}

/** One collection, indexed by metric name (no errors allowed). */
export async function collect(reader: InMemoryReader): Promise<Map<string, MetricData>> {
  const { resourceMetrics, errors } = await reader.collect();
  assertEquals(errors, []);
  const out = new Map<string, MetricData>();
  for (const m of resourceMetrics.scopeMetrics.flatMap((s) => s.metrics)) {
    out.set(m.descriptor.name, m);
  }
  return out;
}
