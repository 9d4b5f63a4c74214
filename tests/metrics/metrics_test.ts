/**
 * Metrics: per-step backpressure episodes (with their origin), consumer metrics, lag,
 * latency and the stuck detector, read back through the OpenTelemetry SDK's in-memory
 * collection on scripted scenarios driven by a ManualClock.
 */
import { metrics as otelApi } from "@opentelemetry/api";
import {
  DataPointType,
  type HistogramMetricData,
  MeterProvider,
  type MetricData,
  MetricReader,
} from "@opentelemetry/sdk-metrics";
import { assert, assertEquals, assertThrows } from "@std/assert";
import { macrotask, ManualClock } from "../../clock.ts";
import { ConfigurationError, MessageRejected } from "../../errors.ts";
import { SluiceMetrics } from "../../metrics/otel.ts";
import { StepMeter, StepStats } from "../../metrics/step.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { DlqPolicy, type DlqRecord } from "../../processing/dlq.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import type { Commit } from "../../strategies/abstract.ts";
import { CommitOffsets, highestOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { type StepOptions, StreamStep } from "../../strategies/stream_step.ts";
import { type BrokerValue, FILTERED_PAYLOAD, InvalidMessage, type Message } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { brokerMessage, waitFor } from "../_support/helpers.ts";

// ---- helpers ---------------------------------------------------------------------------

/** The SDK's reader, collected on demand (no export timer). */
class InMemoryReader extends MetricReader {
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

type Attrs = Record<string, string | number>;

/** One collection, indexed by metric name. */
class Snapshot {
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
function tp(topic: string, partition: number): Attrs {
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

function meterProvider(): { provider: MeterProvider; snapshot: () => Promise<Snapshot> } {
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
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await macrotask();
}

/**
 * A terminal step that holds every chunk until `release()` (the slow sink), then commits
 * it. Records when it was closed.
 */
class SlowSink extends StreamStep<string, never> {
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

const ONE = { highWaterMark: 1, chunkSize: 1 } as const;
const SEND_DURATION = "sluice.step.send_backpressure.duration";
const RECEIVE_DURATION = "sluice.step.receive_backpressure.duration";
const SEND_TIME = "sluice.step.send_backpressure.time";
const RECEIVE_TIME = "sluice.step.receive_backpressure.time";

interface SlowPipeline {
  clock: ManualClock;
  broker: LocalBroker<string>;
  processor: StreamProcessor<string>;
  sink: () => SlowSink;
  snapshot: () => Promise<Snapshot>;
}

/** LocalBroker → parse (RunTask) → sink (SlowSink), every queue holding one message. */
function slowPipeline(
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
async function openEpisodes(p: SlowPipeline, at: number): Promise<void> {
  await p.processor.runOnce(); // m0 accepted, m1 rejected until parse hands m0 on
  await settle();
  const second = p.processor.runOnce(); // m1 accepted, m2 rejected: parse is stuck behind the sink
  await settle();
  await p.clock.advance(at); // the processor's backoff timer lets runOnce return
  await second;
  await settle();
  assert(p.processor.backpressured, "the processor holds a rejected message");
}

// ---- scenarios -------------------------------------------------------------------------

Deno.test("slow sink: the sink is the origin on every step, durations match the clock exactly", async () => {
  const p = slowPipeline(3);
  await openEpisodes(p, 40);
  let s = await p.snapshot();
  // While the episodes are open, time counters already include them, under origin "sink".
  assertEquals(s.value(SEND_TIME, { step: "sink", origin: "sink" }), 40);
  assertEquals(s.value(SEND_TIME, { step: "parse", origin: "sink" }), 40);
  assertEquals(s.value(RECEIVE_TIME, { step: "parse", origin: "sink" }), 40);
  assertEquals(s.value("sluice.consumer.backpressure.time"), 40);
  assertEquals(s.value("sluice.consumer.lag", tp("slow", 0)), 3);

  assert(p.sink().release(), "sink finishes m0 at t=40");
  await settle();
  await p.processor.runOnce(); // m2 accepted: the processor's episode ends at 40
  await settle();
  await p.clock.advance(25);
  assert(p.sink().release(), "sink finishes m1 at t=65");
  await settle();
  assert(p.sink().release(), "sink finishes m2 at t=65");
  await settle();
  await p.clock.advance(1000); // idle time must not leak into any episode
  s = await p.snapshot();

  // The sink rejected parse twice: t=0..40 (m1) and t=40..65 (m2).
  assertEquals(s.histogram(SEND_DURATION, { step: "sink", origin: "sink" }), {
    count: 2,
    sum: 65,
    min: 25,
    max: 40,
  });
  assertEquals(s.histogram(RECEIVE_DURATION, { step: "parse", origin: "sink" }), {
    count: 2,
    sum: 65,
    min: 25,
    max: 40,
  });
  // parse rejected the processor t=0..40 because of the sink. Its only self-originated
  // episode is the instant at t=0 when the processor handed it a whole batch at once.
  assertEquals(s.histogram(SEND_DURATION, { step: "parse", origin: "sink" }), {
    count: 1,
    sum: 40,
    min: 40,
    max: 40,
  });
  assertEquals(s.histogram(SEND_DURATION, { step: "parse", origin: "parse" }), {
    count: 1,
    sum: 0,
    min: 0,
    max: 0,
  });
  assertEquals(s.value(SEND_TIME, { step: "parse", origin: "parse" }), 0);
  assertEquals(s.value(SEND_TIME, { step: "parse", origin: "sink" }), 40);
  assertEquals(s.value(SEND_TIME, { step: "sink", origin: "sink" }), 65);
  assertEquals(s.value(RECEIVE_TIME, { step: "parse", origin: "sink" }), 65);
  // No step reports itself as receiving pressure from anywhere but the sink, and the sink
  // never receives any.
  for (const pt of s.points(RECEIVE_TIME)) assertEquals(pt.attributes.origin, "sink");
  assertEquals(s.points(RECEIVE_DURATION).some((pt) => pt.attributes.step === "sink"), false);

  assertEquals(s.value("sluice.step.messages", { step: "parse" }), 3);
  assertEquals(s.value("sluice.step.messages", { step: "sink" }), 3);
  // Rejections count every refused hand-off, retries included: at least one per episode,
  // and each one the sink gave is one parse received.
  const sinkRejections = s.value("sluice.step.send_backpressure.rejections", { step: "sink" })!;
  assert(sinkRejections >= 2, `sink rejections: ${sinkRejections}`);
  assertEquals(
    s.value("sluice.step.receive_backpressure.rejections", { step: "parse" }),
    sinkRejections,
  );
  // parse refused the processor twice: m1 (t=0) and m2 (t=0..40).
  assertEquals(s.value("sluice.step.send_backpressure.rejections", { step: "parse" }), 2);

  // Consumer side.
  assertEquals(s.value("sluice.consumer.backpressure.time"), 40);
  assertEquals(s.value("sluice.consumer.messages"), 3);
  assertEquals(s.value("sluice.consumer.iterations"), 3);
  assertEquals(s.value("sluice.consumer.commits", { status: "ok" }), 3);
  assertEquals(s.value("sluice.consumer.commits", { status: "error" }), 0);
  assertEquals(s.value("sluice.consumer.lag", tp("slow", 0)), 0);
  assertEquals(s.value("sluice.consumer.assigned_partitions"), 1);
  assertEquals(s.value("sluice.consumer.rebalances", { kind: "assign" }), 1);
  assertEquals(s.value("sluice.consumer.partition_assignments"), 1);
  // Produced at t=0; the commit at t=40 covers m0 (sampled), the one at t=65 covers m2.
  assertEquals(s.histogram("sluice.consumer.latency", tp("slow", 0)), {
    count: 2,
    sum: 105,
    min: 40,
    max: 65,
  });
  assertEquals(s.histogram("sluice.consumer.commit.duration", {})?.count, 3);
});

Deno.test("a step that rejects then drains in poll: its episode ends in poll, not at the next message", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  broker.createTopic("gated", 1);
  broker.produce("gated", "a");
  broker.produce("gated", "b");
  const { provider, snapshot } = meterProvider();
  let open = false;
  const processor = new StreamProcessor<string>({
    consumer: broker.getConsumer("g"),
    topics: ["gated"],
    clock,
    meterProvider: provider,
    pollTimeoutMs: 0,
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        new RunTask(
          (m: Message<string>) => {
            if (!open) throw new MessageRejected(); // held, retried after 10, 30, 70 ms
            return m.payload;
          },
          new CommitOffsets(commit, { name: "commit", clock }),
          { name: "gate", clock, ...ONE },
        ),
    },
  });
  const first = processor.runOnce(); // "a" held by the gate, "b" rejected
  await settle();
  await clock.advance(29);
  open = true;
  await clock.advance(1); // the gate retries "a": its queue empties at t=30
  await first;
  await processor.runOnce();
  await settle();
  let s = await snapshot();
  assertEquals(s.histogram(SEND_DURATION, { step: "gate", origin: "gate" }), {
    count: 1,
    sum: 30,
    min: 30,
    max: 30,
  });
  // Nothing submitted for a long while; then "b" goes in. The episode stays at 30 ms
  // (PR #288 would have closed it here, at 1030 ms).
  await clock.advance(1000);
  await processor.runOnce();
  await settle();
  s = await snapshot();
  assertEquals(s.histogram(SEND_DURATION, { step: "gate", origin: "gate" })?.sum, 30);
  assertEquals(s.value(SEND_TIME, { step: "gate", origin: "gate" }), 30);
  assertEquals(s.points(RECEIVE_TIME), [], "nothing downstream of the gate pushed back");
  assertEquals(s.value("sluice.step.messages", { step: "commit" }), 2);
});

Deno.test("revoke during an episode: every episode ends at the revoke", async () => {
  const p = slowPipeline(3, { pauseAfterMs: 10 });
  await openEpisodes(p, 20);
  const firstSink = p.sink();
  // A second member joins: the next poll revokes, closes and joins the pipeline.
  const other = p.broker.getConsumer("g");
  other.subscribe(["slow"]);
  const third = p.processor.runOnce(); // rejected again; pauses; polls while paused → revoke
  await settle();
  await p.clock.advance(50); // the backoff timer fires at some point within these 50 ms
  await third;
  await settle();
  const revokedAt = firstSink.closedAt;
  assert(revokedAt !== undefined && revokedAt > 20, "the pipeline was closed by the revoke");
  await p.clock.advance(1000); // idle after the revoke
  const s = await p.snapshot();
  assertEquals(s.value("sluice.consumer.rebalances", { kind: "revoke" }), 1);
  assertEquals(s.value("sluice.consumer.pauses"), 1);
  for (
    const [name, step] of [
      [SEND_DURATION, "sink"],
      [RECEIVE_DURATION, "parse"],
      [SEND_DURATION, "parse"],
    ] as const
  ) {
    const h = s.histogram(name, { step, origin: "sink" });
    assertEquals(h?.max, revokedAt, `${name} of ${step} ends at the revoke`);
  }
  assertEquals(s.value(SEND_TIME, { step: "sink", origin: "sink" }), revokedAt);
  assertEquals(s.value(RECEIVE_TIME, { step: "parse", origin: "sink" }), revokedAt);
  assertEquals(s.value("sluice.consumer.backpressure.time"), revokedAt);
  assertEquals(s.value("sluice.consumer.join.time"), 0);
});

Deno.test("shutdown during an episode: episodes end at the shutdown, or when the join gives up", async () => {
  const p = slowPipeline(3, { joinTimeoutMs: 100 });
  await openEpisodes(p, 50);
  p.processor.signalShutdown();
  const running = p.processor.run(); // closes the pipeline at t=50, joins for up to 100 ms
  await settle();
  await p.clock.advance(100); // the sink never finishes: the join gives up at t=150
  await running;
  assertEquals(p.sink().closedAt, 150, "parse's join handed on the close when it gave up");
  await p.clock.advance(1000); // idle after shutdown
  const s = await p.snapshot();
  // The processor stopped submitting at t=50: its wait, and parse's rejection of it, end there.
  assertEquals(s.value("sluice.consumer.backpressure.time"), 50);
  assertEquals(s.histogram(SEND_DURATION, { step: "parse", origin: "sink" })?.sum, 50);
  // parse kept trying to hand m1 to the sink during the join: that pressure was real until
  // the join abandoned the work at t=150, and not a millisecond later.
  assertEquals(s.histogram(RECEIVE_DURATION, { step: "parse", origin: "sink" })?.sum, 150);
  assertEquals(s.histogram(SEND_DURATION, { step: "sink", origin: "sink" })?.sum, 150);
  assertEquals(s.value(SEND_TIME, { step: "sink", origin: "sink" }), 150);
  assertEquals(s.value("sluice.consumer.join.time"), 100);
  // The processor stopped: its counters are kept, its gauges are no longer observed.
  assertEquals(s.value("sluice.consumer.messages"), 3);
  assertEquals(s.points("sluice.consumer.assigned_partitions"), []);
  assertEquals(s.points("sluice.consumer.lag"), []);
});

Deno.test("metrics flow to the global provider once one is set, in seconds", async () => {
  const reader = new InMemoryReader();
  const global = new MeterProvider({ readers: [reader] });
  otelApi.setGlobalMeterProvider(global);
  try {
    const p = slowPipeline(3, { meterProvider: undefined });
    await openEpisodes(p, 10);
    p.sink().release();
    p.sink().release();
    p.processor.signalShutdown();
    await p.processor.run();
    const { resourceMetrics } = await reader.collect();
    const s = new Snapshot(resourceMetrics.scopeMetrics.flatMap((sm) => sm.metrics));
    assertEquals(s.value("sluice.consumer.messages"), 3);
    assert(s.value("sluice.step.messages", { step: "parse" })! >= 2);
    assertEquals(s.unit("sluice.consumer.backpressure.time"), "s");
    assertEquals(s.value("sluice.consumer.backpressure.time"), 10); // ms, read back from 0.01 s
  } finally {
    otelApi.disable();
  }
});

for (
  const [label, extra] of [["meterProvider: null", { meterProvider: null }], ["metrics: false", {
    metrics: false,
  }]] as const
) {
  Deno.test(`${label}: nothing reaches a global provider`, async () => {
    const reader = new InMemoryReader();
    const global = new MeterProvider({ readers: [reader] });
    otelApi.setGlobalMeterProvider(global);
    try {
      const p = slowPipeline(3, extra);
      await openEpisodes(p, 10);
      p.sink().release();
      p.sink().release();
      p.processor.signalShutdown();
      await p.processor.run();
      const { resourceMetrics } = await reader.collect();
      const points = resourceMetrics.scopeMetrics.flatMap((sm) =>
        sm.metrics.flatMap((m): unknown[] => m.dataPoints)
      );
      assertEquals(points, []);
      // meterProvider: null keeps the status view's numbers; metrics: false turns them off.
      const steps = p.processor.status().steps.map((x) => x.name);
      assertEquals(steps, "metrics" in extra ? [] : ["parse", "sink"]);
    } finally {
      otelApi.disable();
    }
  });
}

Deno.test("poll and processing time come from the injected clock", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  broker.createTopic("idle", 1);
  const { provider, snapshot } = meterProvider();
  const processor = new StreamProcessor<string>({
    consumer: broker.getConsumer("g"),
    topics: ["idle"],
    clock,
    meterProvider: provider,
    pollTimeoutMs: 100,
    handleSignals: false,
    factory: { createWithPartitions: (commit) => new CommitOffsets(commit, { clock }) },
  });
  for (let i = 0; i < 3; i++) {
    const once = processor.runOnce(); // an empty topic: poll waits its full 100 ms
    await settle();
    await clock.advance(100);
    await once;
  }
  const s = await snapshot();
  assertEquals(s.value("sluice.consumer.poll.time"), 300);
  assertEquals(s.value("sluice.consumer.processing.time"), 0);
  assertEquals(s.value("sluice.consumer.iterations"), 3);
  assertEquals(s.value("sluice.consumer.lag", tp("idle", 0)), 0);
});

Deno.test("with the system clock, poll and processing time stay exact though the loop's clock readings are shared", async () => {
  // The system clock reads Date.now(); stubbed, time moves only when the scenario says so:
  // 1 ms per poll, 1 ms per message processed (in the pipeline's microtasks, after the
  // iteration that submitted it), and 1000 ms once inside one of the loop's yields. One
  // reading per iteration serves the yield check and the start of the poll phase; it must
  // be taken after the pipeline's microtasks, and again after a yield.
  const realNow = Date.now;
  let t = 1_000_000;
  Date.now = () => t;
  try {
    const broker = new LocalBroker<string>();
    broker.createTopic("wall", 1);
    for (let i = 0; i < 400; i++) broker.produce("wall", `m${i}`);
    const consumer = broker.getConsumer("g", { maxPollMessages: 4 });
    const realPoll = consumer.poll.bind(consumer);
    let polls = 0;
    consumer.poll = (timeoutMs?: number) => {
      polls++;
      t += 1;
      return realPoll(timeoutMs);
    };
    const { provider, snapshot } = meterProvider();
    let processed = 0;
    let duringYield = 0;
    const processor: StreamProcessor<string> = new StreamProcessor<string>({
      consumer,
      topics: ["wall"],
      meterProvider: provider,
      pollTimeoutMs: 0,
      handleSignals: false,
      factory: {
        createWithPartitions: (commit) =>
          new RunTask((m: Message<string>) => {
            t += 1;
            // Queued ahead of the loop's next yield (every 20 ms of this clock), so it runs there.
            if (++processed === 40) setImmediate(() => void (t += duringYield = 1000));
            if (processed === 200) processor.signalShutdown();
            return m.payload;
          }, new CommitOffsets(commit)),
      },
    });
    const start = t;
    await processor.run();
    assertEquals(duringYield, 1000, "time passed inside a yield");
    const s = await snapshot();
    assertEquals(s.value("sluice.consumer.poll.time"), polls);
    assertEquals(s.value("sluice.consumer.processing.time"), processed + 1000);
    assertEquals(s.value("sluice.consumer.join.time"), 0);
    assertEquals(polls + processed + 1000, t - start, "every millisecond accounted once");
  } finally {
    Date.now = realNow;
  }
});

Deno.test("a commit outside the loop's strategy.poll() reads the clock afresh, not the poll's reading", async () => {
  // While metered, the commit check made in strategy.poll() reuses the clock reading taken
  // when the poll returned; a commit made later (a step finishing on its own) must not.
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  broker.createTopic("late", 1);
  broker.produce("late", "m0");
  const { provider } = meterProvider();
  let sink: SlowSink | undefined;
  const processor = new StreamProcessor<string>({
    consumer: broker.getConsumer("g"),
    topics: ["late"],
    clock,
    meterProvider: provider,
    commitPolicy: new CommitPolicy({ intervalMs: 100 }),
    pollTimeoutMs: 0,
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        sink = new SlowSink(commit, { name: "sink", clock, ...ONE }),
    },
  });
  await processor.runOnce(); // m0 polled at t=0 and held by the sink
  await settle();
  assertEquals(processor.stats.commits, 0);
  await clock.advance(150);
  assert(sink!.release(), "the sink finishes m0 at t=150 and commits");
  await settle();
  assertEquals(processor.stats.commits, 1, "150 ms after the last commit, the policy commits");
});

Deno.test("lag is end offset minus committed offset, and absent for consumers without endOffset", async () => {
  for (const withEndOffset of [true, false]) {
    const clock = new ManualClock(0);
    const broker = new LocalBroker<string>({ clock });
    const topic = broker.createTopic("lag", 2);
    const consumer = broker.getConsumer("g", { maxPollMessages: 3 });
    if (!withEndOffset) {
      (consumer as { endOffset?: unknown }).endOffset = undefined;
    }
    for (let i = 0; i < 10; i++) broker.produce(topic, `m${i}`); // 5 per partition
    const { provider, snapshot } = meterProvider();
    const processor = new StreamProcessor<string>({
      consumer,
      topics: [topic],
      clock,
      meterProvider: provider,
      commitPolicy: CommitPolicy.IMMEDIATE,
      pollTimeoutMs: 0,
      handleSignals: false,
      factory: { createWithPartitions: (commit) => new CommitOffsets(commit, { clock }) },
    });
    await processor.runOnce(); // 3 messages: partition 0 (rotation starts there)
    await settle();
    const s = await snapshot();
    if (withEndOffset) {
      assertEquals(s.value("sluice.consumer.lag", tp("lag", 0)), 2);
      assertEquals(s.value("sluice.consumer.lag", tp("lag", 1)), 5);
    } else {
      assertEquals(s.points("sluice.consumer.lag"), []);
      assertEquals(s.value("sluice.consumer.messages"), 3, "other metrics still work");
    }
  }
});

Deno.test("stuck detector: a hung consumer poll is reported once, with what the loop was doing", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  broker.createTopic("stuck", 1);
  const consumer = broker.getConsumer("g");
  let release: (() => void) | undefined;
  const realPoll = consumer.poll.bind(consumer);
  let polls = 0;
  consumer.poll = (_timeoutMs?: number) => {
    if (++polls === 3) {
      return new Promise<void>((r) => release = r).then(() => realPoll(0));
    }
    return realPoll(0);
  };
  const { provider, snapshot } = meterProvider();
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => void warnings.push(args.join(" "));
  try {
    const processor = new StreamProcessor<string>({
      consumer,
      topics: ["stuck"],
      clock,
      meterProvider: provider,
      stuckTimeoutMs: 500,
      handleSignals: false,
      factory: { createWithPartitions: (commit) => new CommitOffsets(commit, { clock }) },
    });
    const running = processor.run();
    await waitFor(() => release !== undefined, "the third poll to hang");
    await clock.advance(400);
    assertEquals(warnings, [], "not stuck yet");
    await clock.advance(2000);
    assertEquals(warnings.length, 1, "reported once per stuck episode");
    assert(warnings[0].includes("polling the consumer"), warnings[0]);
    assert(warnings[0].includes("has not advanced for"), warnings[0]);
    const s = await snapshot();
    assertEquals(s.value("sluice.consumer.stuck_episodes"), 1);
    release!();
    processor.signalShutdown();
    await running;
    assertEquals((await snapshot()).value("sluice.consumer.stuck_episodes"), 1);
  } finally {
    console.warn = warn;
  }
});

Deno.test("origin propagates up a chain: a slow sink two steps down is the origin of all", async () => {
  const clock = new ManualClock(0);
  const source = new Map<string, StepStats>();
  const stats = (name: string) => {
    const s = new StepStats(name, clock);
    source.set(name, s);
    return s;
  };
  const sink = new StepMeter(stats("sink"), clock);
  const enrich = new StepMeter(stats("enrich"), clock, sink);
  const parse = new StepMeter(stats("parse"), clock, enrich);
  const never = new Promise<void>(() => {});
  // The order the bridge sees in practice: each step rejects its upstream first, and only
  // then finds its own downstream full.
  parse.rejectedUpstream(never); // t=0, origin "parse" for now
  await clock.advance(5);
  enrich.rejectedUpstream(never); // enrich full
  parse.rejectedDownstream(); // parse now follows enrich
  await clock.advance(5);
  sink.rejectedUpstream(never);
  enrich.rejectedDownstream(); // enrich follows the sink, and so does parse
  assertEquals(parse.sendOrigin, "sink");
  assertEquals(parse.receiveOrigin, "sink");
  assertEquals(enrich.sendOrigin, "sink");
  await clock.advance(90);
  sink.relieveUpstream();
  enrich.acceptedDownstream();
  enrich.relieveUpstream();
  parse.acceptedDownstream();
  parse.relieveUpstream(); // t=100
  const p = source.get("parse")!;
  // Time goes to whichever origin was known: 5 ms parse, 5 ms enrich, 90 ms sink.
  assertEquals(p.send.get("parse")!.timeMs(100), 5);
  assertEquals(p.send.get("enrich")!.timeMs(100), 5);
  assertEquals(p.send.get("sink")!.timeMs(100), 90);
  // The episode itself (100 ms) is reported once, with the origin it ended with.
  assertEquals(p.send.get("sink")!.episodes, 1);
  assertEquals(p.send.get("parse")!.episodes, 0);
  assertEquals(p.receive.get("sink")!.timeMs(100), 90);
  assertEquals(source.get("sink")!.send.get("sink")!.timeMs(100), 90);
});

/**
 * A step that drops odd payloads (forwarding their offsets as filtered markers) and counts
 * them with the bridge's drop hook.
 */
class DropOdd extends StreamStep<number, number> {
  constructor(next: StreamStep<number, never>, options: StepOptions) {
    super("drop_odd", next, options);
  }
  protected process(batch: Message<number>[]): void | Promise<void> {
    const out: Message<number>[] = [];
    let dropped = 0;
    for (const m of batch) {
      if (m.payload % 2 === 1) {
        dropped++;
        out.push(m.replacePayload(FILTERED_PAYLOAD as unknown as number));
      } else out.push(m);
    }
    if (dropped > 0) this.countDropped(dropped, "odd");
    return this.emitAll(out);
  }
}

Deno.test("drops counted by a step and dead-letter outcomes appear as metrics", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<number>({ clock });
  broker.createTopic("numbers", 1);
  for (let i = 0; i < 10; i++) broker.produce("numbers", i);
  const dlqBroker = new LocalBroker<DlqRecord<number>>({ clock });
  const dlqTopic = dlqBroker.createTopic("numbers-dlq", 1);
  const { provider, snapshot } = meterProvider();
  const processor = new StreamProcessor<number>({
    consumer: broker.getConsumer("g"),
    topics: ["numbers"],
    clock,
    meterProvider: provider,
    commitPolicy: CommitPolicy.IMMEDIATE,
    pollTimeoutMs: 0,
    handleSignals: false,
    dlqPolicy: new DlqPolicy<number>({ producer: dlqBroker.getProducer(), topic: dlqTopic }),
    factory: {
      createWithPartitions: (commit) =>
        new RunTask(
          (m: Message<number>) => {
            if (m.payload === 4) {
              throw InvalidMessage.fromValue(m.value as BrokerValue<number>, "four is invalid");
            }
            return m.payload;
          },
          new DropOdd(new CommitOffsets(commit, { clock }), { name: "evens", clock }),
          { name: "validate", clock },
        ),
    },
  });
  for (
    let i = 0;
    i < 20 && broker.committed("g").get(broker.partitions("numbers")[0]) !== 10;
    i++
  ) {
    await processor.runOnce();
    await settle();
  }
  assertEquals(broker.committed("g").get(broker.partitions("numbers")[0]), 10);
  const s = await snapshot();
  // 1, 3, 5, 7, 9 dropped on purpose; 4 dead-lettered (and never reaches "evens").
  assertEquals(s.value("sluice.step.dropped_messages", { step: "evens", reason: "odd" }), 5);
  assertEquals(s.value("sluice.consumer.invalid_messages"), 1);
  assertEquals(s.value("sluice.consumer.dlq.messages"), 1);
  assertEquals(s.value("sluice.consumer.dlq.dropped_messages"), 0);
  assertEquals(dlqBroker.endOffset(dlqBroker.partitions(dlqTopic)[0]), 1);
});

Deno.test("bad metrics options are typed errors that say what to pass", () => {
  const broker = new LocalBroker<string>();
  broker.createTopic("opts", 1);
  const base = {
    consumer: broker.getConsumer("g"),
    topics: ["opts"],
    handleSignals: false,
    factory: { createWithPartitions: (commit: Commit) => new CommitOffsets(commit) },
  };
  for (const stuckTimeoutMs of [0, -5, NaN, Infinity]) {
    const e = assertThrows(
      () => new StreamProcessor<string>({ ...base, stuckTimeoutMs }),
      ConfigurationError,
    );
    assert(e.message.includes("stuckTimeoutMs"), e.message);
  }
  const e = assertThrows(
    () =>
      new StreamProcessor<string>({
        ...base,
        meterProvider: {} as unknown as MeterProvider,
      }),
    ConfigurationError,
  );
  assert(e.message.includes("MeterProvider"), e.message);
});

Deno.test("unnamed steps of one kind get distinct names; explicit metrics work without a processor", async () => {
  const { provider, snapshot } = meterProvider();
  const clock = new ManualClock(0);
  const broker = new LocalBroker<number>({ clock });
  broker.createTopic("names", 1);
  for (let i = 0; i < 4; i++) broker.produce("names", i);
  const processor = new StreamProcessor<number>({
    consumer: broker.getConsumer("g"),
    topics: ["names"],
    clock,
    meterProvider: provider,
    pollTimeoutMs: 0,
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        new RunTask(
          (m: Message<number>) => m.payload + 1,
          new RunTask((m: Message<number>) => m.payload * 2, new CommitOffsets(commit), { clock }),
          { clock },
        ),
    },
  });
  await processor.runOnce();
  await settle();
  // Named from the first step to the last, though they are built last one first.
  let s = await snapshot();
  assertEquals(s.value("sluice.step.messages", { step: "run_task" }), 4);
  assertEquals(s.value("sluice.step.messages", { step: "run_task#2" }), 4);
  assertEquals(s.value("sluice.step.messages", { step: "commit_offsets" }), 4);
  assertEquals(processor.status().steps.map((x) => x.name), [
    "run_task",
    "run_task#2",
    "commit_offsets",
  ]);

  // A step built outside any processor, given the binding explicitly.
  const standalone = new CommitOffsets(() => {}, {
    name: "standalone",
    metrics: SluiceMetrics.for(provider),
  });
  standalone.submit(brokerMessage(7, 0));
  await settle();
  s = await snapshot();
  assertEquals(s.value("sluice.step.messages", { step: "standalone" }), 1);
  standalone.terminate();
});

Deno.test("processors sharing a provider are separate series (messaging.* attributes); a stopped one keeps its counters", async () => {
  const { provider, snapshot } = meterProvider();
  const clock = new ManualClock(0);
  const broker = new LocalBroker<number>({ clock });
  broker.createTopic("shared-a", 1);
  broker.createTopic("shared-b", 1);
  for (let i = 0; i < 3; i++) broker.produce("shared-a", i);
  for (let i = 0; i < 5; i++) broker.produce("shared-b", i);
  const make = (topic: string) =>
    new StreamProcessor<number>({
      consumer: broker.getConsumer(`g-${topic}`),
      topics: [topic],
      clock,
      meterProvider: provider,
      commitPolicy: CommitPolicy.IMMEDIATE,
      pollTimeoutMs: 0,
      handleSignals: false,
      factory: {
        createWithPartitions: (commit) => new CommitOffsets(commit, { name: "commit", clock }),
      },
    });
  const a = make("shared-a");
  const b = make("shared-b");
  await a.runOnce();
  await b.runOnce();
  await settle();
  let s = await snapshot();
  const series = (group: string, client: string) => ({
    "messaging.system": "sluice_local",
    "messaging.consumer.group.name": group,
    "messaging.client.id": client,
  });
  const sa = series("g-shared-a", "g-shared-a-member-000001");
  const sb = series("g-shared-b", "g-shared-b-member-000001");
  assertEquals(s.value("sluice.consumer.messages", sa), 3);
  assertEquals(s.value("sluice.consumer.messages", sb), 5);
  assertEquals(s.value("sluice.step.messages", { ...sa, step: "commit" }), 3);
  assertEquals(s.value("sluice.step.messages", { ...sb, step: "commit" }), 5);
  assertEquals(s.value("sluice.consumer.assigned_partitions", sa), 1);
  assertEquals(s.value("sluice.consumer.assigned_partitions", sb), 1);
  assertEquals(s.value("sluice.consumer.lag", { ...sa, ...tp("shared-a", 0) }), 0);
  assertEquals(s.value("sluice.consumer.lag", tp("shared-a", 0)), 0);
  assertEquals(s.value("sluice.consumer.lag", tp("shared-b", 0)), 0);
  a.signalShutdown();
  await a.run();
  s = await snapshot();
  assertEquals(
    s.value("sluice.consumer.messages", sa),
    3,
    "a's counters are kept after it stopped",
  );
  assertEquals(s.value("sluice.consumer.assigned_partitions", sb), 1);
  // (The SDK, with cumulative temporality, keeps repeating the last lag it saw for
  // shared-a; Sluice no longer observes it.)
  broker.produce("shared-b", 99);
  s = await snapshot();
  assertEquals(s.value("sluice.consumer.lag", tp("shared-b", 0)), 1);
  b.signalShutdown();
  await b.run();
});

/** A step that refuses everything while `closedForBusiness`, as a circuit breaker does. */
class Gatekeeper extends StreamStep<number, number> {
  closedForBusiness = true;
  #open!: () => void;
  #opened = new Promise<void>((r) => this.#open = r);
  constructor(next: StreamStep<number, never>, options: StepOptions) {
    super("gatekeeper", next, options);
  }
  override get ready(): Promise<void> {
    return this.closedForBusiness ? this.#opened : super.ready;
  }
  openUp(): void {
    this.closedForBusiness = false;
    this.#open();
  }
  override submit(message: Message<number>): void {
    if (this.closedForBusiness) {
      this.recordRejection();
      throw new MessageRejected();
    }
    super.submit(message);
  }
  protected process(batch: Message<number>[]): void | Promise<void> {
    return this.emitAll(batch);
  }
}

Deno.test("a step that rejects in its own submit override records the episode with recordRejection", async () => {
  const { provider, snapshot } = meterProvider();
  const clock = new ManualClock(0);
  const metrics = SluiceMetrics.for(provider);
  const gate = new Gatekeeper(new CommitOffsets(() => {}, { clock, metrics }), {
    name: "gate",
    clock,
    metrics,
  });
  let rejected = 0;
  for (let i = 0; i < 3; i++) {
    try {
      gate.submit(brokerMessage(i, i));
    } catch (e) {
      if (!(e instanceof MessageRejected)) throw e;
      rejected++;
    }
  }
  assertEquals(rejected, 3);
  await clock.advance(70);
  gate.openUp(); // its ready resolves: the episode ends at t=70
  await settle();
  await clock.advance(500);
  gate.submit(brokerMessage(3, 3));
  await settle();
  const s = await snapshot();
  assertEquals(s.value("sluice.step.send_backpressure.rejections", { step: "gate" }), 3);
  assertEquals(s.histogram(SEND_DURATION, { step: "gate", origin: "gate" }), {
    count: 1,
    sum: 70,
    min: 70,
    max: 70,
  });
  gate.terminate();
});
