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
import { ConfigurationError } from "../errors.ts";
import { HistogramBuffer } from "./buffer.ts";
import { type ConsumerMeter, Phase } from "./consumer.ts";
import { EpisodeStats } from "./episode.ts";
import { type BackpressureSide, type StepMetricsSource, StepStats } from "./step.ts";

/** The instrumentation scope name of every Sluice instrument. */
export const METER_NAME = "@sluice/sluice";

/**
 * Bucket boundaries (seconds) of Sluice's duration histograms, given to the SDK as advice:
 * OpenTelemetry's messaging buckets (5 ms to 10 s), with 1 ms below and 30 s, 1 min and
 * 5 min above for long backpressure episodes.
 */
export const DURATION_BUCKETS_S: readonly number[] = [
  0.001,
  0.005,
  0.01,
  0.025,
  0.05,
  0.075,
  0.1,
  0.25,
  0.5,
  0.75,
  1,
  2.5,
  5,
  7.5,
  10,
  30,
  60,
  300,
];

/** Milliseconds (how Sluice counts) to seconds (how it reports). */
const S_PER_MS = 0.001;

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

function noRetired(): Retired {
  return {
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
}

type Observe = (result: ObservableResult) => void;

/**
 * Attributes of one series of Sluice's metrics, e.g.
 * `{ "messaging.system": "kafka", "messaging.consumer.group.name": "orders" }`.
 */
export type SeriesAttributes = Readonly<Record<string, string | number | boolean>>;

/**
 * One series of Sluice's metrics: the steps and processors that share one set of
 * attributes (the processor's `messaging.system`, `messaging.consumer.group.name`,
 * `messaging.client.id`). A processor without a `MeterProvider` keeps a series of its own
 * (its {@link StreamProcessor.status} reads it); with one, {@link SluiceMetrics.series}
 * gives the shared one.
 *
 * @example
 * ```ts
 * import { systemClock } from "../clock.ts";
 * import { MetricSeries } from "./otel.ts";
 * const series = new MetricSeries({ "messaging.system": "kafka" });
 * const parse = series.stepStats("parse", systemClock);
 * console.log(parse.attributes); // { "messaging.system": "kafka", step: "parse" }
 * ```
 */
export class MetricSeries implements StepMetricsSource {
  /** Every step's totals, by name, in the order the steps were first named. */
  readonly steps: Map<string, StepStats> = new Map();
  /** @internal Processors reporting into this series. */
  readonly consumers: Set<ConsumerMeter> = new Set();
  /** @internal Totals of processors that stopped. */
  readonly retired: Retired = noRetired();
  readonly #episodes:
    | ((side: BackpressureSide, attributes: Attributes) => EpisodeStats)
    | undefined;

  /** The attributes of every point of this series. */
  readonly attributes: SeriesAttributes;

  /** Creates an empty series; `episodes` builds the totals of one step, side and origin. */
  constructor(
    attributes: SeriesAttributes = {},
    episodes?: (side: BackpressureSide, attributes: Attributes) => EpisodeStats,
  ) {
    this.attributes = attributes;
    this.#episodes = episodes;
  }

  /** The totals of steps named `name` (created on first use). Used by steps. */
  stepStats(name: string, clock: Clock): StepStats {
    let s = this.steps.get(name);
    if (s === undefined) {
      s = new StepStats(name, clock, this.#episodes, this.attributes);
      this.steps.set(name, s);
    } else s.clock = clock;
    return s;
  }
}

/** A stable key of an attribute set. */
function keyOf(attributes: SeriesAttributes): string {
  return JSON.stringify(Object.keys(attributes).sort().map((k) => [k, attributes[k]]));
}

const bindings = new WeakMap<MeterProvider, SluiceMetrics>();

/**
 * Sluice's metrics on one `MeterProvider`. Shared by every processor (and every step)
 * using that provider: use {@link SluiceMetrics.for}. A processor uses the provider it is
 * given (`meterProvider`), else the global one once set (`metrics.setGlobalMeterProvider`,
 * as `OTEL_DENO=true` does); steps built by its factory are instrumented automatically.
 *
 * @example
 * ```ts
 * import { metrics } from "@opentelemetry/api";
 * import { SluiceMetrics } from "@sluice/sluice";
 * // With OTEL_DENO=true, Deno registers its MeterProvider with the API:
 * const sluiceMetrics = SluiceMetrics.for(metrics.getMeterProvider());
 * ```
 */
export class SluiceMetrics {
  /**
   * The meter every instrument belongs to.
   * @internal An OpenTelemetry type, for Sluice's metrics binding only.
   */
  readonly meter: Meter;
  readonly #series = new Map<string, MetricSeries>();
  readonly #default: MetricSeries;
  readonly #sendDuration: Histogram;
  readonly #receiveDuration: Histogram;
  readonly #commitDuration: Histogram;
  readonly #latency: Histogram;

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
    const advice = { explicitBucketBoundaries: [...DURATION_BUCKETS_S] };
    this.#sendDuration = meter.createHistogram("sluice.step.send_backpressure.duration", {
      unit: "s",
      description: "Duration of each episode in which this step rejected its upstream",
      advice,
    });
    this.#receiveDuration = meter.createHistogram("sluice.step.receive_backpressure.duration", {
      unit: "s",
      description: "Duration of each episode in which this step's downstream rejected it",
      advice,
    });
    this.#commitDuration = meter.createHistogram("sluice.consumer.commit.duration", {
      unit: "s",
      description: "Latency of offset commits",
      advice,
    });
    this.#latency = meter.createHistogram("sluice.consumer.latency", {
      unit: "s",
      description: "Message timestamp to commit, sampled per commit and partition",
      advice,
    });
    this.#default = this.series({});
    this.#defineStepInstruments();
    this.#defineConsumerInstruments();
  }

  /**
   * The series with exactly these `attributes` (created on first use). Processors with the
   * same attributes (same system, group and client id) add up in one series.
   * @internal For the processor.
   */
  series(attributes: SeriesAttributes): MetricSeries {
    const key = keyOf(attributes);
    let s = this.#series.get(key);
    if (s === undefined) {
      s = new MetricSeries(attributes, (side, attrs) => this.#episodeStats(side, attrs));
      this.#series.set(key, s);
    }
    return s;
  }

  /**
   * The totals of steps named `name` in the series without attributes.
   * @internal For steps (it makes a binding a step's `metrics` source).
   */
  stepStats(name: string, clock: Clock): StepStats {
    return this.#default.stepStats(name, clock);
  }

  /**
   * Every step's totals in the series without attributes, by name.
   * @internal For tests and the status view.
   */
  get steps(): ReadonlyMap<string, StepStats> {
    return this.#default.steps;
  }

  /**
   * Registers a processor's meter in `series` (default: the one of the meter's
   * attributes); its numbers are reported until {@link SluiceMetrics.retire}.
   * @internal For the processor.
   */
  addConsumer(meter: ConsumerMeter, series?: MetricSeries): void {
    const s = series ?? this.series(meter.attributes);
    meter.commitDurations = new HistogramBuffer(this.#commitDuration, s.attributes, S_PER_MS);
    meter.latencyBuffer = (attributes) => new HistogramBuffer(this.#latency, attributes, S_PER_MS);
    s.consumers.add(meter);
  }

  /**
   * A processor stopped: its totals are kept (counters never go back), its gauges go.
   * @internal For the processor.
   */
  retire(meter: ConsumerMeter): void {
    for (const s of this.#series.values()) {
      if (!s.consumers.delete(meter)) continue;
      meter.flush();
      const r = s.retired;
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
      return;
    }
  }

  /** Records every buffered histogram sample now (collection does this by itself). */
  flush(): void {
    for (const series of this.#series.values()) {
      for (const s of series.steps.values()) {
        for (const e of s.send.values()) e.durations?.flush();
        for (const e of s.receive.values()) e.durations?.flush();
      }
      for (const c of series.consumers) c.flush();
    }
  }

  #episodeStats(side: BackpressureSide, attributes: Attributes): EpisodeStats {
    const h = side === "send" ? this.#sendDuration : this.#receiveDuration;
    return new EpisodeStats(attributes, new HistogramBuffer(h, attributes, S_PER_MS));
  }

  #counter(name: string, unit: string, description: string, observe: Observe): void {
    this.meter.createObservableCounter(name, { unit, description }).addCallback(observe);
  }

  #gauge(name: string, unit: string, description: string, observe: Observe): void {
    this.meter.createObservableGauge(name, { unit, description }).addCallback(observe);
  }

  #defineStepInstruments(): void {
    const steps = (f: (s: StepStats) => void) => {
      for (const series of this.#series.values()) for (const s of series.steps.values()) f(s);
    };
    // The SDK runs every observable callback before it reads the synchronous instruments,
    // so samples recorded here land in this collection.
    this.#counter("sluice.step.messages", "{message}", "Messages accepted by this step", (r) => {
      this.flush();
      steps((s) => r.observe(s.messages, s.attributes));
    });
    this.#counter(
      "sluice.step.dropped_messages",
      "{message}",
      "Messages this step dropped on purpose (filtered, shed), by reason",
      (r) => steps((s) => s.drops.forEach((d) => r.observe(d.count, d.attributes))),
    );
    const sides: Array<[BackpressureSide, string, string]> = [
      ["send", "this step rejected its upstream (its queue was full)", "rejecting its upstream"],
      ["receive", "this step's downstream rejected it", "rejected by its downstream"],
    ];
    for (const [side, what, doing] of sides) {
      this.#counter(
        `sluice.step.${side}_backpressure.rejections`,
        "{rejection}",
        `Rejections: ${what}`,
        (r) =>
          steps((s) =>
            r.observe(side === "send" ? s.sendRejections : s.receiveRejections, s.attributes)
          ),
      );
      this.#counter(
        `sluice.step.${side}_backpressure.time`,
        "s",
        `Time spent ${doing}, open episodes included, by origin (the step where the ` +
          `pressure started); its rate is the share of time`,
        (r) =>
          steps((s) => {
            const now = s.clock.now();
            const map = side === "send" ? s.send : s.receive;
            for (const e of map.values()) r.observe(e.timeMs(now) * S_PER_MS, e.attributes);
          }),
      );
    }
  }

  /** Observes `f` summed per series (live processors plus retired totals). */
  #perSeries(
    o: ObservableResult,
    f: (c: ConsumerMeter) => number,
    retired: (r: Retired) => number,
    extra?: Attributes,
  ): void {
    for (const s of this.#series.values()) {
      if (s.consumers.size === 0 && !hasRetired(s.retired)) continue;
      let t = retired(s.retired);
      for (const c of s.consumers) t += f(c);
      o.observe(t, extra === undefined ? s.attributes : { ...s.attributes, ...extra });
    }
  }

  #defineConsumerInstruments(): void {
    const counter = (
      name: string,
      unit: string,
      description: string,
      f: (c: ConsumerMeter) => number,
      retired: (r: Retired) => number,
    ) => this.#counter(name, unit, description, (o) => this.#perSeries(o, f, retired));
    const seconds = (
      name: string,
      description: string,
      f: (c: ConsumerMeter) => number,
      retired: (r: Retired) => number,
    ) =>
      this.#counter(
        name,
        "s",
        description,
        (o) => this.#perSeries(o, (c) => f(c) * S_PER_MS, (r) => retired(r) * S_PER_MS),
      );
    // Flushes buffered histogram samples too (as sluice.step.messages does), so they reach
    // the collection even if a View drops one of the two instruments.
    this.#counter("sluice.consumer.iterations", "{iteration}", "Processor loop iterations", (o) => {
      this.flush();
      this.#perSeries(o, (c) => c.counters.iterations, (r) => r.iterations);
    });
    counter(
      "sluice.consumer.messages",
      "{message}",
      "Messages received from the consumer",
      (c) => c.counters.messagesPolled,
      (r) => r.messages,
    );
    seconds(
      "sluice.consumer.poll.time",
      "Time spent in consumer.poll",
      (c) => c.phaseMs(Phase.Poll),
      (r) => r.pollMs,
    );
    seconds(
      "sluice.consumer.processing.time",
      "Time spent in strategy.poll and strategy.submit",
      (c) => c.phaseMs(Phase.Process),
      (r) => r.processingMs,
    );
    seconds(
      "sluice.consumer.backpressure.time",
      "Time from a first rejection until the held message was accepted (open episode included)",
      (c) => c.backpressureMs(),
      (r) => r.backpressureMs,
    );
    seconds(
      "sluice.consumer.join.time",
      "Time spent closing and joining the pipeline on revoke and shutdown",
      (c) => c.phaseMs(Phase.Join),
      (r) => r.joinMs,
    );
    counter(
      "sluice.consumer.pauses",
      "{pause}",
      "Times all partitions were paused for backpressure",
      (c) => c.counters.pauses,
      (r) => r.pauses,
    );
    counter(
      "sluice.consumer.resumes",
      "{resume}",
      "Times paused partitions were resumed",
      (c) => c.counters.resumes,
      (r) => r.resumes,
    );
    counter(
      "sluice.consumer.invalid_messages",
      "{message}",
      "Invalid messages reported by the pipeline",
      (c) => c.counters.invalidMessages,
      (r) => r.invalid,
    );
    counter(
      "sluice.consumer.stuck_episodes",
      "{episode}",
      "Times the loop did not advance for stuckTimeoutMs",
      (c) => c.stuck,
      (r) => r.stuck,
    );
    counter(
      "sluice.consumer.dlq.messages",
      "{message}",
      "Invalid messages whose dead-letter delivery was confirmed",
      (c) => c.counters.deadLettered ?? 0,
      (r) => r.deadLettered,
    );
    counter(
      "sluice.consumer.dlq.dropped_messages",
      "{message}",
      "Invalid messages dropped (and counted) by the DLQ policy instead of dead-lettered",
      (c) => c.counters.dlqDropped ?? 0,
      (r) => r.dlqDropped,
    );
    counter(
      "sluice.consumer.dlq.evicted_messages",
      "{message}",
      "Raw messages evicted from the DLQ buffer because it was full",
      (c) => c.counters.dlqBufferEvicted ?? 0,
      (r) => r.dlqBufferEvicted,
    );
    const ok: Attributes = { status: "ok" };
    const error: Attributes = { status: "error" };
    this.#counter("sluice.consumer.commits", "{commit}", "Offset commits, by status", (o) => {
      this.#perSeries(o, (c) => c.commitsOk, (r) => r.commitsOk, ok);
      this.#perSeries(o, (c) => c.commitsFailed, (r) => r.commitsFailed, error);
    });
    const assign: Attributes = { kind: "assign" };
    const revoke: Attributes = { kind: "revoke" };
    this.#counter(
      "sluice.consumer.rebalances",
      "{callback}",
      "Assignment and revocation callbacks (attribute kind)",
      (o) => {
        this.#perSeries(o, (c) => c.assigns, (r) => r.assigns, assign);
        this.#perSeries(o, (c) => c.revokes, (r) => r.revokes, revoke);
      },
    );
    counter(
      "sluice.consumer.partition_assignments",
      "{partition}",
      "Partitions assigned, summed over assignments",
      (c) => c.partitionsAssigned,
      (r) => r.partitionsAssigned,
    );
    counter(
      "sluice.consumer.partition_revocations",
      "{partition}",
      "Partitions revoked, summed over revocations",
      (c) => c.partitionsRevoked,
      (r) => r.partitionsRevoked,
    );
    this.#gauge(
      "sluice.consumer.assigned_partitions",
      "{partition}",
      "Partitions currently assigned",
      (o) => {
        for (const s of this.#series.values()) {
          if (s.consumers.size === 0) continue;
          let n = 0;
          for (const c of s.consumers) n += c.assignedCount;
          o.observe(n, s.attributes);
        }
      },
    );
    const consumers = (f: (c: ConsumerMeter) => void) => {
      for (const s of this.#series.values()) s.consumers.forEach(f);
    };
    this.#gauge(
      "sluice.consumer.lag",
      "{message}",
      "End offset minus committed offset, per partition",
      (o) => consumers((c) => c.observeLag((lag, attrs) => o.observe(lag, attrs))),
    );
    this.#gauge(
      "sluice.consumer.stalled_time",
      "s",
      "Per partition: how long it has had lag while its committed offset did not move " +
        "(0 while it progresses or has no lag)",
      (o) => consumers((c) => c.observeStalls((ms, attrs) => o.observe(ms * S_PER_MS, attrs))),
    );
  }
}

function hasRetired(r: Retired): boolean {
  return r.iterations > 0 || r.assigns > 0 || r.messages > 0;
}
