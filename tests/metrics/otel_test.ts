/**
 * Observability that fits OpenTelemetry (seconds, `messaging.*` attributes, consistent
 * names), the status view (`processor.status()`, its renderer, `/status`), and health
 * probes that tell a rebalance from a stuck loop and notice a stalled partition. Time is
 * a ManualClock throughout.
 */
import {
  DataPointType,
  type HistogramMetricData,
  MeterProvider,
  type MetricData,
} from "@opentelemetry/sdk-metrics";
import {
  type MeterProvider as ApiMeterProvider,
  type MetricOptions,
  metrics as otelApi,
} from "@opentelemetry/api";
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { ConsumerMeter } from "../../metrics/consumer.ts";
import { DURATION_BUCKETS_S, INSTRUMENTS } from "../../metrics/otel.ts";
import {
  type ProcessorStatus,
  renderStatus,
  renderStatusLine,
  StatusWindow,
} from "../../metrics/status.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import type { Commit, ProcessingStrategy } from "../../strategies/abstract.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { FilterStep } from "../../strategies/filter.ts";
import { HealthServer } from "../../strategies/healthcheck.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { type Message, Partition } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import {
  InMemoryReader,
  meterProvider,
  ONE,
  openEpisodes,
  settle,
  slowPipeline,
  SlowSink,
  Snapshot,
  tp,
} from "../_support/metrics.ts";

async function collect(reader: InMemoryReader): Promise<Map<string, MetricData>> {
  const { resourceMetrics, errors } = await reader.collect();
  assertEquals(errors, []);
  const out = new Map<string, MetricData>();
  for (const m of resourceMetrics.scopeMetrics.flatMap((s) => s.metrics)) {
    out.set(m.descriptor.name, m);
  }
  return out;
}

/** LocalBroker → parse (RunTask) → enrich (RunTask) → sink (held), every queue one deep. */
function backpressured(pauseAfterMs: number) {
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
async function fill(p: ReturnType<typeof backpressured>, stepMs: number, steps: number) {
  for (let i = 0; i < steps; i++) {
    const once = p.processor.runOnce();
    await settle();
    await p.clock.advance(stepMs);
    await once;
    await settle();
  }
}

Deno.test("renamed metrics: seconds with bucket advice, messaging.* attributes, no .count names", async () => {
  const p = backpressured(1_000_000);
  await fill(p, 100, 3);
  const metrics = await collect(p.reader);
  const names = [...metrics.keys()].sort();
  for (const old of ["sluice.consumer.run.count", "sluice.step.send_backpressure_time"]) {
    assert(!names.includes(old), `${old} is gone`);
  }
  assertEquals(names.filter((n) => n.endsWith(".count")), []);
  for (const n of names) {
    const unit = metrics.get(n)!.descriptor.unit;
    assert(unit !== "ms", `${n} is not in milliseconds`);
    if (n.endsWith(".time") || n.endsWith(".duration") || n === "sluice.consumer.latency") {
      assertEquals(unit, "s", `${n} is in seconds`);
    }
  }
  const duration = metrics.get("sluice.step.send_backpressure.duration") as HistogramMetricData;
  assertEquals(duration.descriptor.unit, "s");
  assertEquals(duration.dataPointType, DataPointType.HISTOGRAM);
  assertEquals(duration.dataPoints[0].value.buckets.boundaries, [...DURATION_BUCKETS_S]);
  const series = {
    "messaging.system": "sluice_local",
    "messaging.consumer.group.name": "g",
    "messaging.client.id": "g-member-000001",
  };
  const sendTime = metrics.get("sluice.step.send_backpressure.time")!;
  const sinkTime = sendTime.dataPoints.find((d) =>
    d.attributes.step === "sink" && d.attributes.origin === "sink"
  );
  assert(sinkTime !== undefined, "the sink's own send time is reported");
  for (const [k, v] of Object.entries(series)) assertEquals(sinkTime.attributes[k], v);
  // The sink has rejected enrich since t=100 (the second iteration filled it): 0.2 s.
  assertEquals(Math.round((sinkTime.value as number) * 1000), 200);
  const lag = metrics.get("sluice.consumer.lag")!.dataPoints[0];
  assertEquals(lag.attributes, {
    ...series,
    "messaging.destination.name": "orders",
    "messaging.destination.partition.id": "0",
  });
  assertEquals(lag.value, 5);
  assertEquals(metrics.get("sluice.consumer.iterations")!.dataPoints[0].value, 3);
  assertEquals(metrics.get("sluice.consumer.iterations")!.descriptor.unit, "{iteration}");
  assertEquals(metrics.get("sluice.consumer.stalled_time")!.descriptor.unit, "s");
});

Deno.test("status(): a backpressured pipeline names its bottleneck, per-step rates and shares over the window", async () => {
  const p = backpressured(1_000_000);
  const before = p.processor.status();
  assertEquals(before.state, "stopped");
  assertEquals(before.steps, [], "no pipeline yet");
  await fill(p, 250, 4); // t = 1000: the pipeline is full
  const first = p.processor.status();
  assertEquals(first.windowMs, 1000, "since the processor was built");
  await fill(p, 250, 4); // t = 2000
  const s = p.processor.status();
  assertEquals(first.polledPerSecond, 5, "5 messages polled in the first second");
  assertEquals(first.steps.map((x) => x.messagesPerSecond), [3, 2, 1]);
  assertEquals(first.bottleneck.name, "sink");
  assertEquals(s.windowMs, 1000);
  assertEquals(s.backpressured, true);
  assertEquals(s.paused, false);
  assertEquals(s.state, "stopped", "runOnce is not run(): not running");
  assertEquals(s.steps.map((x) => x.name), ["parse", "enrich", "sink"]);
  const [parse, enrich, sink] = s.steps;
  assertEquals(sink.rejectingShare, 1, "the sink rejected enrich all the window");
  assertEquals(sink.origin, "sink");
  assertEquals(enrich.origin, "sink");
  assertEquals(parse.origin, "sink");
  assertEquals(enrich.rejectedShare, 1);
  assertEquals(s.steps.map((x) => x.messagesPerSecond), [0, 0, 0], "nothing moves any more");
  assertEquals(parse.rejectingShare, 1);
  assertEquals(s.polledPerSecond, 0);
  assertEquals(s.lagPerSecond, 0);
  assertEquals(s.bottleneck.kind, "step");
  assertEquals(s.bottleneck.name, "sink");
  assertStringIncludes(s.bottleneck.reason, '"sink" rejected its upstream 100% of it');
  assert(s.backpressureShare > 0.9, `backpressure share ${s.backpressureShare}`);
  assertEquals(s.partitions, [{
    topic: "orders",
    partition: 0,
    committed: 0,
    lag: 5,
    stalledMs: 2000,
  }]);
  assertEquals(s.lag, 5);

  // The sink finishes everything: the pressure ends, nothing is held, lag goes to 0.
  while (p.sink().release()) await settle();
  await fill(p, 500, 2);
  while (p.sink().release()) await settle();
  await fill(p, 500, 2);
  const after = p.processor.status();
  assertEquals(after.backpressured, false);
  assertEquals(after.lag, 0);
  assertEquals(after.bottleneck.kind, "none");
  assertEquals(after.partitions[0].stalledMs, 0);
});

Deno.test("status(): paused is shown as part of backpressured, never instead of it", async () => {
  const p = backpressured(100);
  await fill(p, 150, 4);
  assert(p.processor.paused, "partitions were paused after 100 ms of backpressure");
  const s = p.processor.status();
  assertEquals(s.backpressured, true);
  assertEquals(s.paused, true);
  const screen = renderStatus({ ...s, state: "backpressured" });
  assertStringIncludes(screen, "backpressured for 0.6 s, fetching paused");
  assertStringIncludes(screen, "bottleneck: sink");
  assertStringIncludes(screen, "orders/0 5");
  assert(!/\bpaused\b/.test(screen.replace("fetching paused", "")), screen);
  assertStringIncludes(renderStatusLine({ ...s, state: "backpressured" }), "fetching paused");
});

/**
 * Holds partition 0 forever (a stuck key, say); on partition 1 commits each message when
 * the next one arrives, so partition 1 always has lag yet makes progress.
 */
class StallsPartitionZero implements ProcessingStrategy<string> {
  readonly ready: Promise<void> = Promise.resolve();
  #previous: Message<string> | undefined;
  constructor(readonly commit: Commit, readonly onClose?: () => void) {}
  submit(m: Message<string>): void {
    if (m.committable.keys().next().value?.index !== 1) return;
    if (this.#previous !== undefined) this.commit(this.#previous.committable);
    this.#previous = m;
  }
  poll(): void {}
  close(): void {
    this.onClose?.();
  }
  join(): Promise<void> {
    return Promise.resolve();
  }
  terminate(): void {}
}

Deno.test("probes: a partition with lag and no committed progress is stalled, while the other moves", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  const topic = broker.createTopic("two", 2);
  const p0 = Partition.of(topic, 0);
  const p1 = Partition.of(topic, 1);
  for (let i = 0; i < 3; i++) {
    broker.produce(p0, `a${i}`);
    broker.produce(p1, `b${i}`);
  }
  const reader = new InMemoryReader();
  const processor = new StreamProcessor<string>({
    consumer: broker.getConsumer("g"),
    topics: [topic],
    clock,
    meterProvider: new MeterProvider({ readers: [reader] }),
    commitPolicy: CommitPolicy.IMMEDIATE,
    pollTimeoutMs: 0,
    handleSignals: false,
    factory: { createWithPartitions: (commit) => new StallsPartitionZero(commit) },
  });
  const server = new HealthServer({ port: 0, clock, processor, partitionStallMs: 3000 });
  try {
    for (let t = 0; t < 5; t++) {
      await processor.runOnce();
      await settle();
      if (t < 4) broker.produce(p1, `more${t}`); // partition 1 keeps moving (with lag 1)
      await clock.advance(1000);
    }
    await processor.runOnce();
    const byIndex = new Map(processor.status().partitions.map((x) => [x.partition, x]));
    assertEquals(byIndex.get(0)!.lag, 3);
    assertEquals(byIndex.get(0)!.stalledMs, 5000);
    assertEquals(byIndex.get(1)!.lag, 1, "partition 1 always has lag...");
    assertEquals(byIndex.get(1)!.stalledMs, 1000, "...but its committed offset moved a second ago");

    const ready = server.readiness();
    assertEquals(ready.status, "partition-stalled");
    assertEquals(ready.httpStatus, 503);
    assertStringIncludes(ready.reason, "two/0");
    assert(!ready.reason.includes("two/1"), ready.reason);
    assertEquals(ready.partitions.map((x) => [x.partition, x.stalled]), [[0, true], [1, false]]);
    const live = server.liveness();
    assertEquals(live.httpStatus, 200, "a stalled partition fails readiness, not liveness");

    // Over HTTP: the body is the JSON above; /status is the processor's status.
    const res = await fetch(`http://127.0.0.1:${server.port}/readyz`);
    assertEquals(res.status, 503);
    assertEquals(((await res.json()) as { status: string }).status, "partition-stalled");
    const st = await fetch(`http://127.0.0.1:${server.port}/status`);
    assertEquals(((await st.json()) as ProcessorStatus).partitions.length, 2);

    // The metric, per partition, in seconds.
    const metrics = await collect(reader);
    const stalled = metrics.get("sluice.consumer.stalled_time")!.dataPoints.map((d) => [
      d.attributes["messaging.destination.partition.id"],
      d.value,
    ]);
    assertEquals(stalled, [["0", 5], ["1", 1]]);
  } finally {
    await server.close();
  }
});

/** A fake processor whose status the test sets. */
function fakeSource() {
  const status = {
    iterations: 0,
    rebalancingForMs: null as number | null,
    partitions: [] as ProcessorStatus["partitions"],
  };
  return { status, source: { status: () => status as unknown as ProcessorStatus } };
}

Deno.test("probes: a rebalance gets a grace period, then counts as stuck; a loop that iterates is alive", async () => {
  const clock = new ManualClock(0);
  const { status, source } = fakeSource();
  const server = new HealthServer({
    port: 0,
    clock,
    processor: source,
    livenessTimeoutMs: 10_000,
    rebalanceGraceMs: 30_000,
  });
  try {
    const beat = async (ms: number) => {
      status.iterations++;
      server.liveness();
      await clock.advance(ms);
    };
    await beat(0);
    await beat(5000);
    status.iterations++;
    assertEquals(server.liveness().status, "ok");
    // A revoke starts: the loop is inside the join and stops iterating.
    status.rebalancingForMs = 0;
    await clock.advance(20_000);
    status.rebalancingForMs = 20_000;
    let live = server.liveness();
    assertEquals([live.status, live.httpStatus], ["rebalancing", 200]);
    assertEquals(server.readiness().httpStatus, 200, "ready stays up during the grace period");
    // Past the grace period, the same silence is a stuck loop.
    await clock.advance(15_000);
    status.rebalancingForMs = 35_000;
    live = server.liveness();
    assertEquals([live.status, live.httpStatus], ["stuck", 503]);
    assertStringIncludes(live.reason, "rebalanceGraceMs");
    // Without a rebalance, not iterating for livenessTimeoutMs is stuck.
    status.rebalancingForMs = null;
    live = server.liveness();
    assertEquals([live.status, live.httpStatus], ["stuck", 503]);
    assertStringIncludes(live.reason, "livenessTimeoutMs");
    // The loop iterates again (a backpressured loop does too): alive.
    status.iterations++;
    assertEquals(server.liveness().status, "ok");
    // Rebalanced but nothing assigned for longer than the grace period: alive, not ready.
    status.rebalancingForMs = 40_000;
    assertEquals(server.liveness().httpStatus, 200);
    const ready = server.readiness();
    assertEquals([ready.status, ready.httpStatus], ["not-assigned", 503]);
  } finally {
    await server.close();
  }
});

Deno.test("status(): a revoke shows as rebalancing while the pipeline is joined, and ends with the new assignment", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  broker.createTopic("t", 2);
  let seenOnClose: ProcessorStatus | undefined;
  const processor: StreamProcessor<string> = new StreamProcessor<string>({
    consumer: broker.getConsumer("g"),
    topics: ["t"],
    clock,
    meterProvider: null,
    pollTimeoutMs: 0,
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        new StallsPartitionZero(commit, () => seenOnClose ??= processor.status()),
    },
  });
  await processor.runOnce();
  assertEquals(processor.status().rebalancingForMs, null);
  // A second member joins: the first gives partitions back on its next poll.
  const other = broker.getConsumer("g");
  other.subscribe(["t"]);
  await other.poll(0);
  await clock.advance(10);
  for (let i = 0; i < 3 && seenOnClose === undefined; i++) {
    await processor.runOnce();
    await other.poll(0);
  }
  assert(seenOnClose !== undefined, "the pipeline was closed by a revoke");
  assertEquals(seenOnClose.rebalancingForMs, 0);
  for (let i = 0; i < 3; i++) {
    await processor.runOnce();
    await other.poll(0);
  }
  assertEquals(processor.status().rebalancingForMs, null, "assigned again: over");
  assertEquals(processor.status().partitions.length, 1);
  await other.close();
});

Deno.test("status log: statusLogMs logs one line per period while run() runs", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  broker.createTopic("t", 1);
  const processor = new StreamProcessor<string>({
    consumer: broker.getConsumer("g"),
    topics: ["t"],
    clock,
    pollTimeoutMs: 100,
    statusLogMs: 1000,
    handleSignals: false,
    factory: { createWithPartitions: (commit) => new CommitOffsets(commit, { clock }) },
  });
  const lines: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => void lines.push(args.join(" "));
  try {
    const running = processor.run();
    for (let i = 0; i < 25; i++) {
      await clock.advance(100);
      await settle();
    }
    processor.signalShutdown();
    await clock.advance(100);
    await running;
  } finally {
    console.log = log;
  }
  assertEquals(lines.length, 2, lines.join("\n"));
  assertStringIncludes(lines[0], "sluice: running; polled");
  assertStringIncludes(lines[0], "commit_offsets");
});

Deno.test("probes: a partition idle (no lag) for long is not stalled the moment a message arrives", async () => {
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  const topic = broker.createTopic("idle", 1);
  broker.produce(topic, "first");
  let hold = false;
  const processor = new StreamProcessor<string>({
    consumer: broker.getConsumer("g"),
    topics: [topic],
    clock,
    meterProvider: null,
    commitPolicy: CommitPolicy.IMMEDIATE,
    pollTimeoutMs: 0,
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) => ({
        ready: Promise.resolve(),
        submit: (m: Message<string>) => void (hold || commit(m.committable)),
        poll() {},
        close() {},
        join: () => Promise.resolve(),
        terminate() {},
      }),
    },
  });
  for (let t = 0; t < 10; t++) {
    await processor.runOnce(); // caught up: lag 0, seen by the loop every second
    await clock.advance(1000);
  }
  hold = true;
  broker.produce(topic, "late");
  await processor.runOnce();
  await clock.advance(1000);
  await processor.runOnce();
  const [p] = processor.status().partitions;
  assertEquals(p.lag, 1);
  // Last seen caught up by the loop's once-a-second check at t=9000 (the message came at
  // t=10000): at most PROGRESS_CHECK_MS early, never counted from the commit at t=0.
  assertEquals(p.stalledMs, 2000);
});

Deno.test("status(): lag growing while the pipeline has room names the consumer/broker", async () => {
  const clock = new ManualClock(0);
  const p0 = Partition.of("fast", 0);
  let end = 0;
  const counters = {
    iterations: 0,
    messagesPolled: 0,
    pauses: 0,
    resumes: 0,
    backpressureMs: 0,
    invalidMessages: 0,
  };
  const meter = new ConsumerMeter(clock, counters, { endOffset: () => end });
  meter.assigned(new Map([[p0, 0]]));
  const window = new StatusWindow(clock, new Map(), meter);
  const input = () => ({
    running: true,
    rebalancingSince: undefined,
    backpressureSince: undefined,
    paused: false,
    heldMessages: 0,
    iterations: counters.iterations,
    messagesPolled: counters.messagesPolled,
  });
  end = 100;
  await clock.advance(1000);
  assertEquals(window.status(input()).bottleneck.kind, "none", "no lag trend yet");
  end = 600; // the producer outruns the consumer: +500/s
  counters.messagesPolled = 300;
  await clock.advance(1000);
  const s = window.status(input());
  assertEquals(s.lagPerSecond, 500);
  assertEquals(s.polledPerSecond, 300);
  assertEquals(s.bottleneck.kind, "consumer");
  assertEquals(s.bottleneck.name, "consumer/broker");
  assertEquals(s.state, "running");
});

Deno.test("probes: a real processor blocked in a revoke's join is 'rebalancing' (200) within the grace, 'stuck' after", async () => {
  const clock = new ManualClock(0);
  // A session long enough for the slow join (kafkajs heartbeats in the background).
  const broker = new LocalBroker<string>({ clock, sessionTimeoutMs: 600_000 });
  broker.createTopic("t", 2);
  let releaseJoin: (() => void) | undefined;
  const processor = new StreamProcessor<string>({
    consumer: broker.getConsumer("g"),
    topics: ["t"],
    clock,
    meterProvider: null,
    pollTimeoutMs: 0,
    joinTimeoutMs: 1_000_000,
    handleSignals: false,
    factory: {
      createWithPartitions: () => ({
        ready: Promise.resolve(),
        submit() {},
        poll() {},
        close() {},
        // A slow drain: the join takes as long as the test says.
        join: () => new Promise<void>((r) => releaseJoin = r),
        terminate() {},
      }),
    },
  });
  const server = new HealthServer({
    port: 0,
    clock,
    processor,
    livenessTimeoutMs: 10_000,
    rebalanceGraceMs: 60_000,
  });
  try {
    await processor.runOnce();
    server.liveness();
    await processor.runOnce();
    assertEquals(server.liveness().status, "ok");
    const other = broker.getConsumer("g");
    other.subscribe(["t"]);
    await other.poll(0);
    const blocked = processor.runOnce(); // revokes: closes the pipeline and joins it
    await settle();
    assert(releaseJoin !== undefined, "the loop is inside the revoke's join");
    await clock.advance(30_000); // three times livenessTimeoutMs without an iteration
    let live = server.liveness();
    assertEquals([live.status, live.httpStatus], ["rebalancing", 200], live.reason);
    assertEquals(live.rebalancingForMs, 30_000);
    assertEquals(server.readiness().httpStatus, 200);
    await clock.advance(40_000); // 70 s: past the grace period
    live = server.liveness();
    assertEquals([live.status, live.httpStatus], ["stuck", 503], live.reason);
    releaseJoin!();
    await settle();
    await other.poll(0);
    await clock.advance(100);
    await blocked;
    await processor.runOnce();
    await other.poll(0);
    await processor.runOnce();
    assertEquals(server.liveness().status, "ok", "iterating again");
    await other.close();
  } finally {
    await server.close();
  }
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

/** A provider whose meters note every instrument created: kind, name, unit, description. */
function recordingProvider(inner: MeterProvider, created: string[]): ApiMeterProvider {
  const kinds: Record<string, string> = {
    createHistogram: "histogram",
    createObservableCounter: "counter",
    createObservableGauge: "gauge",
  };
  return {
    getMeter(name, version, options) {
      const meter = inner.getMeter(name, version, options);
      return new Proxy(meter, {
        get(target, key) {
          const value = Reflect.get(target, key);
          const kind = typeof key === "string" ? kinds[key] : undefined;
          if (kind === undefined || typeof value !== "function") return value;
          return (n: string, o: MetricOptions) => {
            const buckets = o.advice?.explicitBucketBoundaries;
            created.push(
              `${kind} ${n} ${o.unit} "${o.description}"${buckets ? ` [${buckets}]` : ""}`,
            );
            return value.call(target, n, o);
          };
        },
      });
    },
  };
}

Deno.test("instruments: every name, kind, unit, description and attribute set, as registered", async () => {
  const created: string[] = [];
  const reader = new InMemoryReader();
  const provider = recordingProvider(new MeterProvider({ readers: [reader] }), created);
  const clock = new ManualClock(0);
  const broker = new LocalBroker<string>({ clock });
  broker.createTopic("orders", 1);
  for (let i = 0; i < 6; i++) broker.produce("orders", `m${i}`);
  let sink: SlowSink | undefined;
  const processor = new StreamProcessor<string>({
    consumer: broker.getConsumer("g"),
    topics: ["orders"],
    clock,
    meterProvider: provider,
    commitPolicy: CommitPolicy.IMMEDIATE,
    pollTimeoutMs: 0,
    pauseAfterMs: 50,
    joinTimeoutMs: 0,
    handleSignals: false,
    factory: {
      createWithPartitions(commit) {
        sink = new SlowSink(commit, { name: "sink", clock, ...ONE });
        return new FilterStep((m: Message<string>) => m.payload !== "m1", sink, {
          name: "filter",
          clock,
          ...ONE,
        });
      },
    },
  });
  const attributes = new Map<string, Set<string>>();
  const observe = async () => {
    for (const m of (await collect(reader)).values()) {
      const seen = attributes.get(m.descriptor.name) ?? new Set();
      attributes.set(m.descriptor.name, seen);
      for (const d of m.dataPoints) {
        for (const [k, v] of Object.entries(d.attributes)) {
          seen.add(["status", "kind", "reason", "step", "origin"].includes(k) ? `${k}=${v}` : k);
        }
      }
    }
  };
  for (let i = 0; i < 4; i++) {
    const once = processor.runOnce();
    await settle();
    await clock.advance(100);
    await once;
    await settle();
  }
  while (sink!.release()) await settle();
  for (let i = 0; i < 4; i++) {
    await processor.runOnce();
    await settle();
    while (sink!.release()) await settle();
  }
  await observe();
  processor.signalShutdown();
  await processor.run();
  await observe();
  const seen = Object.fromEntries([...attributes].map(([n, s]) => [n, [...s].sort().join(" ")]));
  const buckets = ` [${DURATION_BUCKETS_S}]`;
  assertEquals(created, [
    'histogram sluice.step.send_backpressure.duration s "Duration of each episode in which this step rejected its upstream"' +
    buckets,
    'histogram sluice.step.receive_backpressure.duration s "Duration of each episode in which this step\'s downstream rejected it"' +
    buckets,
    'histogram sluice.consumer.commit.duration s "Latency of offset commits"' + buckets,
    'histogram sluice.consumer.latency s "Message timestamp to commit, sampled per commit and partition"' +
    buckets,
    'counter sluice.step.messages {message} "Messages accepted by this step"',
    'counter sluice.step.dropped_messages {message} "Messages this step dropped on purpose (filtered, shed), by reason"',
    'counter sluice.step.send_backpressure.rejections {rejection} "Rejections: this step rejected its upstream (its queue was full)"',
    'counter sluice.step.send_backpressure.time s "Time spent rejecting its upstream, open episodes included, by origin (the step where the pressure started); its rate is the share of time"',
    'counter sluice.step.receive_backpressure.rejections {rejection} "Rejections: this step\'s downstream rejected it"',
    'counter sluice.step.receive_backpressure.time s "Time spent rejected by its downstream, open episodes included, by origin (the step where the pressure started); its rate is the share of time"',
    'counter sluice.consumer.iterations {iteration} "Processor loop iterations"',
    'counter sluice.consumer.messages {message} "Messages received from the consumer"',
    'counter sluice.consumer.poll.time s "Time spent in consumer.poll"',
    'counter sluice.consumer.processing.time s "Time spent in strategy.poll and strategy.submit"',
    'counter sluice.consumer.backpressure.time s "Time from a first rejection until the held message was accepted (open episode included)"',
    'counter sluice.consumer.join.time s "Time spent closing and joining the pipeline on revoke and shutdown"',
    'counter sluice.consumer.pauses {pause} "Times all partitions were paused for backpressure"',
    'counter sluice.consumer.resumes {resume} "Times paused partitions were resumed"',
    'counter sluice.consumer.invalid_messages {message} "Invalid messages reported by the pipeline"',
    'counter sluice.consumer.stuck_episodes {episode} "Times the loop did not advance for stuckTimeoutMs"',
    'counter sluice.consumer.dlq.messages {message} "Invalid messages whose dead-letter delivery was confirmed"',
    'counter sluice.consumer.dlq.dropped_messages {message} "Invalid messages dropped (and counted) by the DLQ policy instead of dead-lettered"',
    'counter sluice.consumer.dlq.evicted_messages {message} "Raw messages evicted from the DLQ buffer because it was full"',
    'counter sluice.consumer.commits {commit} "Offset commits, by status"',
    'counter sluice.consumer.rebalances {callback} "Assignment and revocation callbacks (attribute kind)"',
    'counter sluice.consumer.partition_assignments {partition} "Partitions assigned, summed over assignments"',
    'counter sluice.consumer.partition_revocations {partition} "Partitions revoked, summed over revocations"',
    'gauge sluice.consumer.assigned_partitions {partition} "Partitions currently assigned"',
    'gauge sluice.consumer.lag {message} "End offset minus committed offset, per partition"',
    'gauge sluice.consumer.stalled_time s "Per partition: how long it has had lag while its committed offset did not move (0 while it progresses or has no lag)"',
  ]);
  // Every point has the series attributes; these are the others seen per instrument.
  const series = ["messaging.client.id", "messaging.consumer.group.name", "messaging.system"];
  const and = (...others: string[]) => [...series, ...others].sort().join(" ");
  const destination = ["messaging.destination.name", "messaging.destination.partition.id"];
  assertEquals(seen, {
    "sluice.step.send_backpressure.duration": and(
      "origin=filter",
      "origin=sink",
      "step=filter",
      "step=sink",
    ),
    "sluice.step.receive_backpressure.duration": and("origin=sink", "step=filter"),
    "sluice.consumer.commit.duration": and(),
    "sluice.consumer.latency": and(...destination),
    "sluice.step.messages": and("step=filter", "step=sink"),
    "sluice.step.dropped_messages": and("reason=filtered", "step=filter"),
    "sluice.step.send_backpressure.rejections": and("step=filter", "step=sink"),
    "sluice.step.send_backpressure.time": and(
      "origin=filter",
      "origin=sink",
      "step=filter",
      "step=sink",
    ),
    "sluice.step.receive_backpressure.rejections": and("step=filter", "step=sink"),
    "sluice.step.receive_backpressure.time": and("origin=sink", "step=filter"),
    "sluice.consumer.iterations": and(),
    "sluice.consumer.messages": and(),
    "sluice.consumer.poll.time": and(),
    "sluice.consumer.processing.time": and(),
    "sluice.consumer.backpressure.time": and(),
    "sluice.consumer.join.time": and(),
    "sluice.consumer.pauses": and(),
    "sluice.consumer.resumes": and(),
    "sluice.consumer.invalid_messages": and(),
    "sluice.consumer.stuck_episodes": and(),
    "sluice.consumer.dlq.messages": and(),
    "sluice.consumer.dlq.dropped_messages": and(),
    "sluice.consumer.dlq.evicted_messages": and(),
    "sluice.consumer.commits": and("status=error", "status=ok"),
    "sluice.consumer.rebalances": and("kind=assign", "kind=revoke"),
    "sluice.consumer.partition_assignments": and(),
    "sluice.consumer.partition_revocations": and(),
    "sluice.consumer.assigned_partitions": and(),
    "sluice.consumer.lag": and(...destination),
    "sluice.consumer.stalled_time": and(...destination),
  });
});

Deno.test("docs/observability.md's metrics tables list exactly the instruments (name, type, unit)", async () => {
  const doc = await Deno.readTextFile(new URL("../../docs/observability.md", import.meta.url));
  const row = /^\| `(sluice\.[\w.]+)`\s*\| (counter|gauge|histogram)\s*\| `([^`]+)`/;
  const documented = doc.split("\n").flatMap((line) => {
    const m = row.exec(line);
    return m ? [`${m[1]} ${m[2]} ${m[3]}`] : [];
  });
  const registered = INSTRUMENTS.map((i) => `${i.name} ${i.kind} ${i.unit}`);
  assertEquals(documented.toSorted(), registered.toSorted());
});
