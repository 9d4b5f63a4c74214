/**
 * The status view: `processor.status()` (bottleneck, per-step rates and shares, paused,
 * rebalancing, lag), its periodic log line, and the health probes a `HealthServer` answers
 * from it (a rebalance told from a stuck loop, a stalled partition noticed). Time is a
 * ManualClock throughout.
 */
import { MeterProvider } from "@opentelemetry/sdk-metrics";
import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { ConsumerMeter } from "../../metrics/consumer.ts";
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
import { HealthServer } from "../../strategies/health_server.ts";
import { type Message, Partition } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { backpressured, collect, fill, InMemoryReader, settle } from "../_support/metrics.ts";

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
