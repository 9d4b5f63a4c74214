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
import type { SeriesAttributes } from "./attributes.ts";
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

/**
 * The instrumentation scope name of every Sluice instrument: select them by it, e.g. in an
 * SDK View (`meterName: METER_NAME`).
 *
 * @example Find Sluice's meter
 * ```ts
 * import { METER_NAME } from "@sluice/sluice";
 * console.log(METER_NAME); // "@sluice/sluice"
 * ```
 */
export const METER_NAME = "@sluice/sluice";

/**
 * Bucket boundaries (seconds) of Sluice's duration histograms, given to the SDK as advice:
 * OpenTelemetry's messaging buckets (5 ms to 10 s), with 1 ms below and 30 s, 1 min and
 * 5 min above for long backpressure episodes.
 *
 * @example Reuse the buckets
 * ```ts
 * import { DURATION_BUCKETS_S } from "@sluice/sluice";
 * // The same buckets for a histogram of your own:
 * const advice = { explicitBucketBoundaries: [...DURATION_BUCKETS_S] };
 * console.log(advice.explicitBucketBoundaries.at(-1)); // 300 (5 min)
 * ```
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

/**
 * A processor's totals, each as its meter reads it (time in ms). A stopped processor's are
 * added to its series' retired totals, so counters never go backwards.
 */
const TOTALS = {
  iterations: (c: ConsumerMeter): number => c.counters.iterations,
  messages: (c: ConsumerMeter): number => c.counters.messagesPolled,
  pollMs: (c: ConsumerMeter): number => c.phaseMs(Phase.Poll),
  processingMs: (c: ConsumerMeter): number => c.phaseMs(Phase.Process),
  backpressureMs: (c: ConsumerMeter): number => c.backpressureMs(),
  joinMs: (c: ConsumerMeter): number => c.phaseMs(Phase.Join),
  pauses: (c: ConsumerMeter): number => c.counters.pauses,
  resumes: (c: ConsumerMeter): number => c.counters.resumes,
  commitsOk: (c: ConsumerMeter): number => c.commitsOk,
  commitsFailed: (c: ConsumerMeter): number => c.commitsFailed,
  invalid: (c: ConsumerMeter): number => c.counters.invalidMessages,
  assigns: (c: ConsumerMeter): number => c.assigns,
  revokes: (c: ConsumerMeter): number => c.revokes,
  partitionsAssigned: (c: ConsumerMeter): number => c.partitionsAssigned,
  partitionsRevoked: (c: ConsumerMeter): number => c.partitionsRevoked,
  stuck: (c: ConsumerMeter): number => c.stuck,
  deadLettered: (c: ConsumerMeter): number => c.counters.deadLettered ?? 0,
  dlqDropped: (c: ConsumerMeter): number => c.counters.dlqDropped ?? 0,
  dlqBufferEvicted: (c: ConsumerMeter): number => c.counters.dlqBufferEvicted ?? 0,
} satisfies Record<string, (c: ConsumerMeter) => number>;

/** The name of one of a processor's {@link TOTALS}. */
type Total = keyof typeof TOTALS;

const TOTAL_NAMES = Object.keys(TOTALS) as Total[];

/** Totals of consumers that stopped (their counters must not go backwards). */
type Retired = Record<Total, number>;

function noRetired(): Retired {
  return Object.fromEntries(TOTAL_NAMES.map((t) => [t, 0])) as Retired;
}

/** One of Sluice's instruments. */
interface Instrument {
  /** The metric name. */
  readonly name: string;
  /** Counters and gauges are observable; histograms get {@link DURATION_BUCKETS_S} as advice. */
  readonly kind: "counter" | "gauge" | "histogram";
  /** UCUM unit; "s" for time (which Sluice counts in ms). */
  readonly unit: string;
  /** What it measures. */
  readonly description: string;
  /**
   * A processor counter: the {@link TOTALS} it sums per series (live processors plus
   * retired totals), each with the attributes it adds. Without it, the binding observes it.
   */
  readonly totals?: ReadonlyArray<readonly [Total, Attributes?]>;
  /** Records the buffered histogram samples before it is observed. */
  readonly flushes?: true;
}

/**
 * Every instrument Sluice registers, in the order it registers them: the one list of its
 * metric names. `docs/observability.md`'s metrics tables list the same (a test keeps them
 * equal).
 */
export const INSTRUMENTS = [
  {
    name: "sluice.step.send_backpressure.duration",
    kind: "histogram",
    unit: "s",
    description: "Duration of each episode in which this step rejected its upstream",
  },
  {
    name: "sluice.step.receive_backpressure.duration",
    kind: "histogram",
    unit: "s",
    description: "Duration of each episode in which this step's downstream rejected it",
  },
  {
    name: "sluice.consumer.commit.duration",
    kind: "histogram",
    unit: "s",
    description: "Latency of offset commits",
  },
  {
    name: "sluice.consumer.latency",
    kind: "histogram",
    unit: "s",
    description: "Message timestamp to commit, sampled per commit and partition",
  },
  // The SDK runs every observable callback before it reads the synchronous instruments,
  // so samples recorded by a callback that flushes land in this collection.
  {
    name: "sluice.step.messages",
    kind: "counter",
    unit: "{message}",
    description: "Messages accepted by this step",
    flushes: true,
  },
  {
    name: "sluice.step.dropped_messages",
    kind: "counter",
    unit: "{message}",
    description: "Messages this step dropped on purpose (filtered, shed), by reason",
  },
  {
    name: "sluice.step.send_backpressure.rejections",
    kind: "counter",
    unit: "{rejection}",
    description: "Rejections: this step rejected its upstream (its queue was full)",
  },
  {
    name: "sluice.step.send_backpressure.time",
    kind: "counter",
    unit: "s",
    description: "Time spent rejecting its upstream, open episodes included, by origin " +
      "(the step where the pressure started); its rate is the share of time",
  },
  {
    name: "sluice.step.receive_backpressure.rejections",
    kind: "counter",
    unit: "{rejection}",
    description: "Rejections: this step's downstream rejected it",
  },
  {
    name: "sluice.step.receive_backpressure.time",
    kind: "counter",
    unit: "s",
    description: "Time spent rejected by its downstream, open episodes included, by origin " +
      "(the step where the pressure started); its rate is the share of time",
  },
  // Flushes buffered histogram samples too (as sluice.step.messages does), so they reach
  // the collection even if a View drops one of the two instruments.
  {
    name: "sluice.consumer.iterations",
    kind: "counter",
    unit: "{iteration}",
    description: "Processor loop iterations",
    totals: [["iterations"]],
    flushes: true,
  },
  {
    name: "sluice.consumer.messages",
    kind: "counter",
    unit: "{message}",
    description: "Messages received from the consumer",
    totals: [["messages"]],
  },
  {
    name: "sluice.consumer.poll.time",
    kind: "counter",
    unit: "s",
    description: "Time spent in consumer.poll",
    totals: [["pollMs"]],
  },
  {
    name: "sluice.consumer.processing.time",
    kind: "counter",
    unit: "s",
    description: "Time spent in strategy.poll and strategy.submit",
    totals: [["processingMs"]],
  },
  {
    name: "sluice.consumer.backpressure.time",
    kind: "counter",
    unit: "s",
    description:
      "Time from a first rejection until the held message was accepted (open episode included)",
    totals: [["backpressureMs"]],
  },
  {
    name: "sluice.consumer.join.time",
    kind: "counter",
    unit: "s",
    description: "Time spent closing and joining the pipeline on revoke and shutdown",
    totals: [["joinMs"]],
  },
  {
    name: "sluice.consumer.pauses",
    kind: "counter",
    unit: "{pause}",
    description: "Times all partitions were paused for backpressure",
    totals: [["pauses"]],
  },
  {
    name: "sluice.consumer.resumes",
    kind: "counter",
    unit: "{resume}",
    description: "Times paused partitions were resumed",
    totals: [["resumes"]],
  },
  {
    name: "sluice.consumer.invalid_messages",
    kind: "counter",
    unit: "{message}",
    description: "Invalid messages reported by the pipeline",
    totals: [["invalid"]],
  },
  {
    name: "sluice.consumer.stuck_episodes",
    kind: "counter",
    unit: "{episode}",
    description: "Times the loop did not advance for stuckTimeoutMs",
    totals: [["stuck"]],
  },
  {
    name: "sluice.consumer.dlq.messages",
    kind: "counter",
    unit: "{message}",
    description: "Invalid messages whose dead-letter delivery was confirmed",
    totals: [["deadLettered"]],
  },
  {
    name: "sluice.consumer.dlq.dropped_messages",
    kind: "counter",
    unit: "{message}",
    description:
      "Invalid messages dropped (and counted) by the DLQ policy instead of dead-lettered",
    totals: [["dlqDropped"]],
  },
  {
    name: "sluice.consumer.dlq.evicted_messages",
    kind: "counter",
    unit: "{message}",
    description: "Raw messages evicted from the DLQ buffer because it was full",
    totals: [["dlqBufferEvicted"]],
  },
  {
    name: "sluice.consumer.commits",
    kind: "counter",
    unit: "{commit}",
    description: "Offset commits, by status",
    totals: [["commitsOk", { status: "ok" }], ["commitsFailed", { status: "error" }]],
  },
  {
    name: "sluice.consumer.rebalances",
    kind: "counter",
    unit: "{callback}",
    description: "Assignment and revocation callbacks (attribute kind)",
    totals: [["assigns", { kind: "assign" }], ["revokes", { kind: "revoke" }]],
  },
  {
    name: "sluice.consumer.partition_assignments",
    kind: "counter",
    unit: "{partition}",
    description: "Partitions assigned, summed over assignments",
    totals: [["partitionsAssigned"]],
  },
  {
    name: "sluice.consumer.partition_revocations",
    kind: "counter",
    unit: "{partition}",
    description: "Partitions revoked, summed over revocations",
    totals: [["partitionsRevoked"]],
  },
  {
    name: "sluice.consumer.assigned_partitions",
    kind: "gauge",
    unit: "{partition}",
    description: "Partitions currently assigned",
  },
  {
    name: "sluice.consumer.lag",
    kind: "gauge",
    unit: "{message}",
    description: "End offset minus committed offset, per partition",
  },
  {
    name: "sluice.consumer.stalled_time",
    kind: "gauge",
    unit: "s",
    description: "Per partition: how long it has had lag while its committed offset did not " +
      "move (0 while it progresses or has no lag)",
  },
] as const satisfies readonly Instrument[];

type Row = typeof INSTRUMENTS[number];
/** The histograms, recorded from buffered samples. */
type HistogramName = Extract<Row, { kind: "histogram" }>["name"];
/** The observable instruments the binding observes itself (no {@link Instrument.totals}). */
type ObservedName = Exclude<Extract<Row, { kind: "counter" | "gauge" }>, { totals: unknown }>[
  "name"
];

type Observe = (result: ObservableResult) => void;

/**
 * One series of Sluice's metrics: the steps and processors that share one set of
 * attributes (the processor's `messaging.system`, `messaging.consumer.group.name`,
 * `messaging.client.id`). A processor without a `MeterProvider` keeps a series of its own
 * (its {@link StreamProcessor.status} reads it); with one, {@link SluiceMetrics.series}
 * gives the shared one.
 *
 * @example Per-step numbers of one processor
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
 * @example Instruments on the global MeterProvider
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
   * @ignore An OpenTelemetry type, for Sluice's metrics binding only.
   */
  readonly meter: Meter;
  readonly #series = new Map<string, MetricSeries>();
  readonly #default: MetricSeries;
  readonly #histograms = {} as Record<HistogramName, Histogram>;

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
    const observers = this.#observers();
    for (const i of INSTRUMENTS as readonly Instrument[]) {
      const { name, unit, description } = i;
      if (i.kind === "histogram") {
        this.#histograms[name as HistogramName] = meter.createHistogram(name, {
          unit,
          description,
          advice,
        });
        continue;
      }
      const observe = i.totals === undefined
        ? observers[name as ObservedName]
        : this.#sum(i.totals, unit === "s" ? S_PER_MS : 1);
      const instrument = i.kind === "counter"
        ? meter.createObservableCounter(name, { unit, description })
        : meter.createObservableGauge(name, { unit, description });
      instrument.addCallback(
        i.flushes
          ? (o) => {
            this.flush();
            observe(o);
          }
          : observe,
      );
    }
    this.#default = this.series({});
  }

  /**
   * The series with exactly these `attributes` (created on first use). Processors with the
   * same attributes (same system, group and client id) add up in one series.
   * @ignore For the processor.
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
   * @ignore For steps (it makes a binding a step's `metrics` source).
   */
  stepStats(name: string, clock: Clock): StepStats {
    return this.#default.stepStats(name, clock);
  }

  /**
   * Every step's totals in the series without attributes, by name.
   * @ignore For tests and the status view.
   */
  get steps(): ReadonlyMap<string, StepStats> {
    return this.#default.steps;
  }

  /**
   * Registers a processor's meter in `series` (default: the one of the meter's
   * attributes); its numbers are reported until {@link SluiceMetrics.retire}.
   * @ignore For the processor.
   */
  addConsumer(meter: ConsumerMeter, series?: MetricSeries): void {
    const s = series ?? this.series(meter.attributes);
    const commits = this.#histograms["sluice.consumer.commit.duration"];
    const latency = this.#histograms["sluice.consumer.latency"];
    meter.commitDurations = new HistogramBuffer(commits, s.attributes, S_PER_MS);
    meter.latencyBuffer = (attributes) => new HistogramBuffer(latency, attributes, S_PER_MS);
    s.consumers.add(meter);
  }

  /**
   * A processor stopped: its totals are kept (counters never go back), its gauges go.
   * @ignore For the processor.
   */
  retire(meter: ConsumerMeter): void {
    for (const s of this.#series.values()) {
      if (!s.consumers.delete(meter)) continue;
      meter.flush();
      const r = s.retired;
      for (const t of TOTAL_NAMES) r[t] += TOTALS[t](meter);
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
    const h = this.#histograms[
      side === "send"
        ? "sluice.step.send_backpressure.duration"
        : "sluice.step.receive_backpressure.duration"
    ];
    return new EpisodeStats(attributes, new HistogramBuffer(h, attributes, S_PER_MS));
  }

  /** How the binding observes the instruments that are not sums of processor totals. */
  #observers(): Record<ObservedName, Observe> {
    const steps = (f: (s: StepStats) => void) => {
      for (const series of this.#series.values()) for (const s of series.steps.values()) f(s);
    };
    const episodeTime = (side: BackpressureSide): Observe => (r) =>
      steps((s) => {
        const now = s.clock.now();
        const map = side === "send" ? s.send : s.receive;
        for (const e of map.values()) r.observe(e.timeMs(now) * S_PER_MS, e.attributes);
      });
    const consumers = (f: (c: ConsumerMeter) => void) => {
      for (const s of this.#series.values()) s.consumers.forEach(f);
    };
    return {
      "sluice.step.messages": (r) => steps((s) => r.observe(s.messages, s.attributes)),
      "sluice.step.dropped_messages": (r) =>
        steps((s) => s.drops.forEach((d) => r.observe(d.count, d.attributes))),
      "sluice.step.send_backpressure.rejections": (r) =>
        steps((s) => r.observe(s.sendRejections, s.attributes)),
      "sluice.step.send_backpressure.time": episodeTime("send"),
      "sluice.step.receive_backpressure.rejections": (r) =>
        steps((s) => r.observe(s.receiveRejections, s.attributes)),
      "sluice.step.receive_backpressure.time": episodeTime("receive"),
      "sluice.consumer.assigned_partitions": (o) => {
        for (const s of this.#series.values()) {
          if (s.consumers.size === 0) continue;
          let n = 0;
          for (const c of s.consumers) n += c.assignedCount;
          o.observe(n, s.attributes);
        }
      },
      "sluice.consumer.lag": (o) =>
        consumers((c) => c.observeLag((lag, attrs) => o.observe(lag, attrs))),
      "sluice.consumer.stalled_time": (o) =>
        consumers((c) => c.observeStalls((ms, attrs) => o.observe(ms * S_PER_MS, attrs))),
    };
  }

  /**
   * Observes each of `totals` summed per series (live processors plus retired totals),
   * times `scale`, with the attributes it adds.
   */
  #sum(totals: ReadonlyArray<readonly [Total, Attributes?]>, scale: number): Observe {
    return (o) => {
      for (const [t, extra] of totals) {
        const read = TOTALS[t];
        this.#perSeries(o, (c) => read(c) * scale, (r) => r[t] * scale, extra);
      }
    };
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
}

function hasRetired(r: Retired): boolean {
  return r.iterations > 0 || r.assigns > 0 || r.messages > 0;
}
