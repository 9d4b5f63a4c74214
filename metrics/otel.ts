/**
 * The OpenTelemetry binding. Steps and the processor count in plain numbers; this class
 * turns them into instruments when a reader collects: cumulative observable counters and
 * gauges read the numbers, and buffered histogram samples are recorded just before (the
 * SDK runs observable callbacks before it reads synchronous instruments, so they land in
 * the same collection). Nothing runs between collections, and without a `MeterProvider`
 * there is no binding at all.
 *
 * @module
 */
import type {
  Attributes,
  Histogram,
  Meter,
  MeterProvider,
  ObservableResult,
} from "@opentelemetry/api";
import type { Clock } from "../clock.ts";
import { ConfigurationError } from "../types.ts";
import { HistogramBuffer } from "./buffer.ts";
import { type ConsumerMeter, Phase } from "./consumer.ts";
import { EpisodeStats } from "./episode.ts";
import { type BackpressureSide, type StepMetricsSource, StepStats } from "./step.ts";

/** The instrumentation scope name of every Sluice instrument. */
export const METER_NAME = "@sluice/sluice";

/** Bucket boundaries (ms) of Sluice's duration histograms. */
export const DURATION_BUCKETS_MS: readonly number[] = [
  0,
  1,
  2,
  5,
  10,
  25,
  50,
  100,
  250,
  500,
  1000,
  2500,
  5000,
  10_000,
  30_000,
  60_000,
  300_000,
];

/** Totals of consumers that stopped (their counters must not go backwards). */
interface Retired {
  iterations: number;
  messages: number;
  pollMs: number;
  processingMs: number;
  backpressureMs: number;
  joinMs: number;
  pauses: number;
  resumes: number;
  commitsOk: number;
  commitsFailed: number;
  invalid: number;
  assigns: number;
  revokes: number;
  partitionsAssigned: number;
  partitionsRevoked: number;
  stuck: number;
  deadLettered: number;
  dlqDropped: number;
  dlqBufferEvicted: number;
}

type Observe = (result: ObservableResult) => void;

const bindings = new WeakMap<MeterProvider, SluiceMetrics>();

/**
 * Sluice's metrics on one `MeterProvider`. Shared by every processor (and every step)
 * using that provider: use {@link SluiceMetrics.for}. The processor creates it when given
 * `meterProvider`; steps built by its factory are instrumented automatically.
 *
 * @example
 * ```ts
 * import { metrics } from "@opentelemetry/api";
 * import { SluiceMetrics } from "@sluice/sluice";
 * // With OTEL_DENO=true, Deno registers its MeterProvider with the API:
 * const sluiceMetrics = SluiceMetrics.for(metrics.getMeterProvider());
 * ```
 */
export class SluiceMetrics implements StepMetricsSource {
  /**
   * The meter every instrument belongs to.
   * @internal An OpenTelemetry type, for Sluice's metrics binding only.
   */
  readonly meter: Meter;
  readonly #steps = new Map<string, StepStats>();
  readonly #consumers = new Set<ConsumerMeter>();
  readonly #retired: Retired = {
    iterations: 0,
    messages: 0,
    pollMs: 0,
    processingMs: 0,
    backpressureMs: 0,
    joinMs: 0,
    pauses: 0,
    resumes: 0,
    commitsOk: 0,
    commitsFailed: 0,
    invalid: 0,
    assigns: 0,
    revokes: 0,
    partitionsAssigned: 0,
    partitionsRevoked: 0,
    stuck: 0,
    deadLettered: 0,
    dlqDropped: 0,
    dlqBufferEvicted: 0,
  };
  readonly #sendDuration: Histogram;
  readonly #receiveDuration: Histogram;
  readonly #commitDuration: Histogram;
  readonly #latency: Histogram;
  readonly #commitBuffer: HistogramBuffer;

  /** The binding for `provider`, created on first use and shared afterwards. */
  static for(provider: MeterProvider): SluiceMetrics {
    let m = bindings.get(provider);
    if (m === undefined) {
      m = new SluiceMetrics(provider);
      bindings.set(provider, m);
    }
    return m;
  }

  /** Creates the instruments on `provider`. Prefer {@link SluiceMetrics.for}. */
  constructor(provider: MeterProvider) {
    if (!provider || typeof provider.getMeter !== "function") {
      throw new ConfigurationError(
        "meterProvider must be an OpenTelemetry MeterProvider (with getMeter()); e.g. " +
          'metrics.getMeterProvider() from "@opentelemetry/api", or new MeterProvider() ' +
          'from "@opentelemetry/sdk-metrics"',
      );
    }
    const meter = this.meter = provider.getMeter(METER_NAME);
    const advice = { explicitBucketBoundaries: [...DURATION_BUCKETS_MS] };
    this.#sendDuration = meter.createHistogram("sluice.step.send_backpressure_duration", {
      unit: "ms",
      description: "Duration of each episode in which this step rejected its upstream",
      advice,
    });
    this.#receiveDuration = meter.createHistogram("sluice.step.receive_backpressure_duration", {
      unit: "ms",
      description: "Duration of each episode in which this step's downstream rejected it",
      advice,
    });
    this.#commitDuration = meter.createHistogram("sluice.consumer.commit.duration", {
      unit: "ms",
      description: "Latency of offset commits",
      advice,
    });
    this.#latency = meter.createHistogram("sluice.consumer.latency", {
      unit: "ms",
      description: "Message timestamp to commit, sampled per commit and partition",
      advice,
    });
    this.#commitBuffer = new HistogramBuffer(this.#commitDuration, {});
    this.#defineStepInstruments();
    this.#defineConsumerInstruments();
  }

  /** The totals of steps named `name` (created on first use). Used by steps. */
  stepStats(name: string, clock: Clock): StepStats {
    let s = this.#steps.get(name);
    if (s === undefined) {
      s = new StepStats(name, clock, (side, origin) => this.#episodeStats(name, side, origin));
      this.#steps.set(name, s);
    } else s.clock = clock;
    return s;
  }

  /** Every step's totals, by name (for live views and tests). */
  get steps(): ReadonlyMap<string, StepStats> {
    return this.#steps;
  }

  /** Registers a processor's meter; its numbers are reported until {@link retire}. */
  addConsumer(meter: ConsumerMeter): void {
    meter.commitDurations = this.#commitBuffer;
    meter.latencyBuffer = (attributes) => new HistogramBuffer(this.#latency, attributes);
    this.#consumers.add(meter);
  }

  /** A processor stopped: its totals are kept (counters never go back), its gauges go. */
  retire(meter: ConsumerMeter): void {
    if (!this.#consumers.delete(meter)) return;
    meter.flush();
    const r = this.#retired;
    const c = meter.counters;
    r.iterations += c.iterations;
    r.messages += c.messagesPolled;
    r.pollMs += meter.phaseMs(Phase.Poll);
    r.processingMs += meter.phaseMs(Phase.Process);
    r.backpressureMs += meter.backpressureMs();
    r.joinMs += meter.phaseMs(Phase.Join);
    r.pauses += c.pauses;
    r.resumes += c.resumes;
    r.commitsOk += meter.commitsOk;
    r.commitsFailed += meter.commitsFailed;
    r.invalid += c.invalidMessages;
    r.assigns += meter.assigns;
    r.revokes += meter.revokes;
    r.partitionsAssigned += meter.partitionsAssigned;
    r.partitionsRevoked += meter.partitionsRevoked;
    r.stuck += meter.stuck;
    r.deadLettered += c.deadLettered ?? 0;
    r.dlqDropped += c.dlqDropped ?? 0;
    r.dlqBufferEvicted += c.dlqBufferEvicted ?? 0;
  }

  /** Records every buffered histogram sample now (collection does this by itself). */
  flush(): void {
    for (const s of this.#steps.values()) {
      for (const e of s.send.values()) e.durations?.flush();
      for (const e of s.receive.values()) e.durations?.flush();
    }
    for (const c of this.#consumers) c.flush();
    this.#commitBuffer.flush();
  }

  #episodeStats(step: string, side: BackpressureSide, origin: string): EpisodeStats {
    const attributes: Attributes = { step, origin };
    const h = side === "send" ? this.#sendDuration : this.#receiveDuration;
    return new EpisodeStats(attributes, new HistogramBuffer(h, attributes));
  }

  #counter(name: string, unit: string, description: string, observe: Observe): void {
    this.meter.createObservableCounter(name, { unit, description }).addCallback(observe);
  }

  #gauge(name: string, unit: string, description: string, observe: Observe): void {
    this.meter.createObservableGauge(name, { unit, description }).addCallback(observe);
  }

  #defineStepInstruments(): void {
    // The SDK runs every observable callback before it reads the synchronous instruments,
    // so samples recorded here land in this collection.
    this.#counter(
      "sluice.step.messages",
      "{message}",
      "Messages accepted by this step",
      (r) => {
        this.flush();
        for (const s of this.#steps.values()) r.observe(s.messages, s.attributes);
      },
    );
    this.#counter(
      "sluice.step.dropped",
      "{message}",
      "Messages this step dropped on purpose (filtered, shed), by reason",
      (r) => {
        for (const s of this.#steps.values()) {
          for (const d of s.drops.values()) r.observe(d.count, d.attributes);
        }
      },
    );
    const sides: Array<[BackpressureSide, string, string]> = [
      ["send", "this step rejected its upstream (its queue was full)", "rejecting its upstream"],
      ["receive", "this step's downstream rejected it", "rejected by its downstream"],
    ];
    for (const [side, what, doing] of sides) {
      const map = (s: StepStats) => side === "send" ? s.send : s.receive;
      this.#counter(
        `sluice.step.${side}_backpressure`,
        "{rejection}",
        `Rejections: ${what}`,
        (r) => {
          for (const s of this.#steps.values()) {
            r.observe(side === "send" ? s.sendRejections : s.receiveRejections, s.attributes);
          }
        },
      );
      this.#counter(
        `sluice.step.${side}_backpressure_time`,
        "ms",
        `Time spent ${doing}, open episodes included, by origin (the step where the ` +
          `pressure started); its rate is the share of time`,
        (r) => {
          for (const s of this.#steps.values()) {
            const now = s.clock.now();
            for (const e of map(s).values()) r.observe(e.timeMs(now), e.attributes);
          }
        },
      );
    }
  }

  #sum(f: (c: ConsumerMeter) => number, retired: number): number {
    let t = retired;
    for (const c of this.#consumers) t += f(c);
    return t;
  }

  #defineConsumerInstruments(): void {
    const r = this.#retired;
    const counter = (
      name: string,
      unit: string,
      description: string,
      f: (c: ConsumerMeter) => number,
      retired: () => number,
    ) =>
      this.#counter(name, unit, description, (o) => {
        o.observe(this.#sum(f, retired()));
      });
    // Flushes buffered histogram samples too (as sluice.step.messages does), so they reach
    // the collection even if a View drops one of the two instruments.
    this.#counter("sluice.consumer.run.count", "{iteration}", "Processor loop iterations", (o) => {
      this.flush();
      o.observe(this.#sum((c) => c.counters.iterations, r.iterations));
    });
    counter(
      "sluice.consumer.messages",
      "{message}",
      "Messages received from the consumer",
      (c) => c.counters.messagesPolled,
      () => r.messages,
    );
    counter(
      "sluice.consumer.poll.time",
      "ms",
      "Time spent in consumer.poll",
      (c) => c.phaseMs(Phase.Poll),
      () => r.pollMs,
    );
    counter(
      "sluice.consumer.processing.time",
      "ms",
      "Time spent in strategy.poll and strategy.submit",
      (c) => c.phaseMs(Phase.Process),
      () => r.processingMs,
    );
    counter(
      "sluice.consumer.backpressure.time",
      "ms",
      "Time from a first rejection until the held message was accepted (open episode included)",
      (c) => c.backpressureMs(),
      () => r.backpressureMs,
    );
    counter(
      "sluice.consumer.join.time",
      "ms",
      "Time spent closing and joining the pipeline on revoke and shutdown",
      (c) => c.phaseMs(Phase.Join),
      () => r.joinMs,
    );
    counter(
      "sluice.consumer.pause",
      "{pause}",
      "Times all partitions were paused for backpressure",
      (c) => c.counters.pauses,
      () => r.pauses,
    );
    counter(
      "sluice.consumer.resume",
      "{resume}",
      "Times paused partitions were resumed",
      (c) => c.counters.resumes,
      () => r.resumes,
    );
    counter(
      "sluice.consumer.invalid_message.count",
      "{message}",
      "Invalid messages reported by the pipeline",
      (c) => c.counters.invalidMessages,
      () => r.invalid,
    );
    counter(
      "sluice.consumer.stuck",
      "{event}",
      "Times the loop did not advance for stuckTimeoutMs",
      (c) => c.stuck,
      () => r.stuck,
    );
    counter(
      "sluice.consumer.dlq.messages",
      "{message}",
      "Invalid messages whose dead-letter delivery was confirmed",
      (c) => c.counters.deadLettered ?? 0,
      () => r.deadLettered,
    );
    counter(
      "sluice.consumer.dlq.dropped_messages",
      "{message}",
      "Invalid messages dropped (and counted) by the DLQ policy instead of dead-lettered",
      (c) => c.counters.dlqDropped ?? 0,
      () => r.dlqDropped,
    );
    counter(
      "sluice.consumer.dlq_buffer.exceeded",
      "{message}",
      "Raw messages evicted from the DLQ buffer because it was full",
      (c) => c.counters.dlqBufferEvicted ?? 0,
      () => r.dlqBufferEvicted,
    );
    const okAttrs: Attributes = { status: "ok" };
    const errorAttrs: Attributes = { status: "error" };
    this.#counter("sluice.consumer.commit.count", "{commit}", "Offset commits, by status", (o) => {
      o.observe(this.#sum((c) => c.commitsOk, r.commitsOk), okAttrs);
      o.observe(this.#sum((c) => c.commitsFailed, r.commitsFailed), errorAttrs);
    });
    const assignAttrs: Attributes = { kind: "assign" };
    const revokeAttrs: Attributes = { kind: "revoke" };
    this.#counter(
      "sluice.consumer.rebalance.count",
      "{callback}",
      "Assignment and revocation callbacks (attribute kind)",
      (o) => {
        o.observe(this.#sum((c) => c.assigns, r.assigns), assignAttrs);
        o.observe(this.#sum((c) => c.revokes, r.revokes), revokeAttrs);
      },
    );
    counter(
      "sluice.consumer.partitions_assigned.count",
      "{partition}",
      "Partitions assigned, summed over assignments",
      (c) => c.partitionsAssigned,
      () => r.partitionsAssigned,
    );
    counter(
      "sluice.consumer.partitions_revoked.count",
      "{partition}",
      "Partitions revoked, summed over revocations",
      (c) => c.partitionsRevoked,
      () => r.partitionsRevoked,
    );
    this.#gauge(
      "sluice.consumer.assigned_partitions",
      "{partition}",
      "Partitions currently assigned",
      (o) => o.observe(this.#sum((c) => c.assignedCount, 0)),
    );
    this.#gauge(
      "sluice.consumer.lag",
      "{message}",
      "End offset minus committed offset, per partition",
      (o) => {
        for (const c of this.#consumers) c.observeLag((lag, attrs) => o.observe(lag, attrs));
      },
    );
  }
}
