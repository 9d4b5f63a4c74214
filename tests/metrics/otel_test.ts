/**
 * The OpenTelemetry binding: instruments as registered (names, units, descriptions and
 * attributes, in seconds with bucket advice, matching docs/observability.md), the global
 * provider, and series per processor. Time is a ManualClock throughout.
 */
import { DataPointType, type HistogramMetricData, MeterProvider } from "@opentelemetry/sdk-metrics";
import {
  type MeterProvider as ApiMeterProvider,
  type MetricOptions,
  metrics as otelApi,
} from "@opentelemetry/api";
import { assert, assertEquals } from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { DURATION_BUCKETS_S, INSTRUMENTS } from "../../metrics/otel.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { FilterStep } from "../../strategies/filter.ts";
import type { Message } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import {
  backpressured,
  collect,
  fill,
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
