/**
 * Step metrics: per-step backpressure episodes and their origin (send and receive side),
 * step naming, drops and rejections recorded by a step, read back through the
 * OpenTelemetry SDK's in-memory collection on scenarios driven by a ManualClock.
 */
import { assert, assertEquals } from "@std/assert";
import { ManualClock } from "../../clock.ts";
import { MessageRejected } from "../../errors.ts";
import { SluiceMetrics } from "../../metrics/otel.ts";
import { StepMeter, StepStats } from "../../metrics/step.ts";
import { CommitPolicy } from "../../processing/commit_policy.ts";
import { DlqPolicy, type DlqRecord } from "../../processing/dlq.ts";
import { StreamProcessor } from "../../processing/processor.ts";
import { CommitOffsets } from "../../strategies/commit_offsets.ts";
import { RunTask } from "../../strategies/run_task.ts";
import { type StepOptions, StreamStep } from "../../strategies/stream_step.ts";
import { type BrokerValue, FILTERED_PAYLOAD, InvalidMessage, type Message } from "../../types.ts";
import { LocalBroker } from "../../backends/local/mod.ts";
import { brokerMessage } from "../_support/helpers.ts";
import {
  meterProvider,
  ONE,
  openEpisodes,
  RECEIVE_DURATION,
  RECEIVE_TIME,
  SEND_DURATION,
  SEND_TIME,
  settle,
  slowPipeline,
  tp,
} from "../_support/metrics.ts";

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
  // Rejected again; pauses; the rebalance (a group event of the consumer) ends its wait at
  // once, and the poll while paused revokes: no backoff timer is waited out.
  const third = p.processor.runOnce();
  await settle();
  await p.clock.advance(50);
  await third;
  await settle();
  const revokedAt = firstSink.closedAt;
  assertEquals(revokedAt, 20, "the pipeline was closed by the revoke, at once");
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
