/**
 * Per-step backpressure instrumentation, in plain numbers. A {@link StepMeter} belongs to
 * one step instance; it counts into the {@link StepStats} of the step's name, which
 * outlive the instance (a new pipeline after a rebalance reuses them).
 *
 * Send side: the step rejected its upstream (its queue was full). Receive side: its
 * downstream rejected it. The origin of an episode is the step that was sending
 * backpressure while not itself receiving any: a step whose downstream is full reports
 * its downstream's origin, so one slow sink shows up as the origin on every step above it.
 *
 * This module imports neither strategies nor backends; steps find their meter through
 * {@link stepMeterFor}.
 *
 * @module
 */
import type { Attributes } from "@opentelemetry/api";
import type { Clock } from "../clock.ts";
import { EpisodeStats, EpisodeTracker } from "./episode.ts";

/** Which side of a step an episode is on. */
export type BackpressureSide = "send" | "receive";

/** Messages a step dropped for one reason (attribute `reason`). */
export interface DropCount {
  /**
   * `{ step, reason }`, created once.
   * @internal An OpenTelemetry type, for Sluice's metrics binding only.
   */
  readonly attributes: Attributes;
  /** Messages dropped so far. */
  count: number;
}

/**
 * Cumulative totals of every step instance that had one name.
 *
 * @example A step's counters
 * ```ts
 * import { systemClock } from "../clock.ts";
 * import { StepStats } from "./step.ts";
 * const stats = new StepStats("parse", systemClock);
 * console.log(stats.messages, stats.sendTimeMs(Date.now())); // 0 0
 * ```
 */
export class StepStats {
  /** Messages the step accepted (through its queue). */
  messages = 0;
  /** Times the step rejected a submit from its upstream. */
  sendRejections = 0;
  /** Times the step's downstream rejected a hand-off. */
  receiveRejections = 0;
  /** Messages the step dropped (filtered, shed...), by reason. */
  readonly drops: Map<string, DropCount> = new Map();
  /** Send-side totals by origin. */
  readonly send: Map<string, EpisodeStats> = new Map();
  /** Receive-side totals by origin. */
  readonly receive: Map<string, EpisodeStats> = new Map();
  /**
   * `{ ...base, step: name }`, created once.
   * @internal An OpenTelemetry type, for Sluice's metrics binding only.
   */
  readonly attributes: Attributes;
  readonly #base: Attributes;
  readonly #make: (side: BackpressureSide, attributes: Attributes) => EpisodeStats;

  /** The step's name (attribute `step`). */
  readonly name: string;
  /** The clock episodes are timed with (the step's). */
  clock: Clock;

  /**
   * Creates the totals. `make` builds the totals of one side and origin from their
   * attributes (the OpenTelemetry binding gives them a buffered histogram); by default
   * they only count. `base` attributes (the processor's `messaging.*` ones) go on every
   * series of this step.
   */
  constructor(
    name: string,
    clock: Clock,
    make?: (side: BackpressureSide, attributes: Attributes) => EpisodeStats,
    base: Attributes = {},
  ) {
    this.name = name;
    this.clock = clock;
    this.#base = base;
    this.attributes = { ...base, step: name };
    this.#make = make ?? ((_side, attributes) => new EpisodeStats(attributes));
  }

  /** The totals of `side` for episodes that originated at `origin` (created on first use). */
  episodes(side: BackpressureSide, origin: string): EpisodeStats {
    const map = side === "send" ? this.send : this.receive;
    let s = map.get(origin);
    if (s === undefined) {
      s = this.#make(side, { ...this.#base, step: this.name, origin });
      map.set(origin, s);
    }
    return s;
  }

  /** The drop counter of `reason` (created on first use). */
  dropCount(reason: string): DropCount {
    let d = this.drops.get(reason);
    if (d === undefined) {
      d = { attributes: { ...this.#base, step: this.name, reason }, count: 0 };
      this.drops.set(reason, d);
    }
    return d;
  }

  /** Milliseconds this step spent rejecting its upstream, all origins, up to `now`. */
  sendTimeMs(now: number): number {
    let t = 0;
    for (const s of this.send.values()) t += s.timeMs(now);
    return t;
  }

  /** Milliseconds this step spent rejected by its downstream, all origins, up to `now`. */
  receiveTimeMs(now: number): number {
    let t = 0;
    for (const s of this.receive.values()) t += s.timeMs(now);
    return t;
  }
}

/** Where steps get their {@link StepStats}: the OpenTelemetry binding, or a test double. */
export interface StepMetricsSource {
  /** The totals for steps named `name`, timed with `clock`. */
  stepStats(name: string, clock: Clock): StepStats;
}

/**
 * The instrumentation of one step instance. The step calls it at the few points where
 * pressure starts or ends; everything else is a field check.
 *
 * Origin rules: a send episode is the step's own (origin = its name) until the step's
 * downstream rejects it during the episode; from then on it carries the downstream's
 * origin, to the end of the episode (the backlog left by a stalled downstream is the
 * downstream's doing). A receive episode carries the origin of the downstream's open send
 * episode (or the downstream's name). Origin changes propagate upstream at once.
 *
 * @example Meter a rejection episode
 * ```ts
 * import { ManualClock } from "@sluice/sluice";
 * import { StepMeter, StepStats } from "./step.ts";
 * const clock = new ManualClock(0);
 * const meter = new StepMeter(new StepStats("sink", clock), clock);
 * meter.rejectedUpstream(new Promise(() => {}));
 * await clock.advance(30);
 * meter.relieveUpstream();
 * console.log(meter.stats.send.get("sink")?.timeMs(clock.now())); // 30
 * ```
 */
export class StepMeter {
  #stats: StepStats;
  readonly #clock: Clock;
  readonly #downstream: StepMeter | undefined;
  readonly #downstreamName: string;
  #upstream: StepMeter | undefined;
  readonly #send = new EpisodeTracker();
  readonly #receive = new EpisodeTracker();
  #sendOrigin = "";
  #receiveOrigin = "";
  #sendEpisode = 0;
  #sending = false;
  #receiving = false;
  /** The open send episode has seen downstream pressure (its origin follows the downstream). */
  #sendFollows = false;
  #lastDrop: DropCount | undefined;

  /**
   * Creates the meter. `downstream` is the next step's meter when the next step is
   * instrumented; otherwise `downstreamName` names it as the origin of what it rejects.
   */
  constructor(
    stats: StepStats,
    clock: Clock,
    downstream?: StepMeter,
    downstreamName = "downstream",
  ) {
    this.#stats = stats;
    this.#clock = clock;
    this.#downstream = downstream;
    this.#downstreamName = downstreamName;
    if (downstream !== undefined) downstream.#upstream = this;
  }

  /** The totals this instance counts into. */
  get stats(): StepStats {
    return this.#stats;
  }

  /** The step's name in metrics. */
  get name(): string {
    return this.#stats.name;
  }

  /**
   * @internal Moves this meter to other totals before it counted anything: a pipeline's
   * steps are named once all of them are built (see {@link withStepMetrics}).
   */
  rebind(stats: StepStats): void {
    this.#stats = stats;
  }

  /** True while the step's upstream is being rejected (send episode open). */
  get sending(): boolean {
    return this.#sending;
  }

  /** True while the step's downstream is rejecting it (receive episode open). */
  get receiving(): boolean {
    return this.#receiving;
  }

  /** Origin of the open send episode, or undefined when none is open. */
  get sendOrigin(): string | undefined {
    return this.#sending ? this.#sendOrigin : undefined;
  }

  /** Origin of the open receive episode, or undefined when none is open. */
  get receiveOrigin(): string | undefined {
    return this.#receiving ? this.#receiveOrigin : undefined;
  }

  /** Counts `n` messages accepted by the step. */
  count(n: number): void {
    this.#stats.messages += n;
  }

  /** Counts `n` messages the step dropped for `reason` (e.g. "filtered", "shed_oldest"). */
  dropped(n: number, reason: string): void {
    let d = this.#lastDrop;
    if (d === undefined || d.attributes.reason !== reason) {
      d = this.#lastDrop = this.#stats.dropCount(reason);
    }
    d.count += n;
  }

  /**
   * The step rejected a submit. Opens a send episode on the first rejection; it ends when
   * `ready` resolves (the queue has room again) or on another ending path.
   */
  rejectedUpstream(ready: Promise<void>): void {
    if (!this.#sending) {
      const follows = this.#receiving;
      const origin = follows ? this.#receiveOrigin : this.#stats.name;
      this.#sendOrigin = origin;
      this.#sendFollows = follows;
      this.#sending = true;
      this.#send.begin(this.#clock.now(), this.#stats.episodes("send", origin));
      const episode = ++this.#sendEpisode;
      const end = () => {
        if (this.#sendEpisode === episode) this.relieveUpstream();
      };
      ready.then(end, end);
      // An upstream already rejected by this step now sees this episode's origin.
      const up = this.#upstream;
      if (up !== undefined) up.#downstreamOriginChanged(origin);
    }
    this.#stats.sendRejections++;
  }

  /** The upstream is no longer held back: room in the queue, close, revoke or shutdown. */
  relieveUpstream(): void {
    if (!this.#sending) return;
    this.#sending = false;
    this.#sendFollows = false;
    this.#sendEpisode++;
    this.#send.end(this.#clock.now());
  }

  /** The downstream rejected a hand-off. Opens a receive episode on the first one. */
  rejectedDownstream(): void {
    if (!this.#receiving) {
      const d = this.#downstream;
      const origin = d === undefined ? this.#downstreamName : d.#currentOrigin();
      this.#receiveOrigin = origin;
      this.#receiving = true;
      this.#receive.begin(this.#clock.now(), this.#stats.episodes("receive", origin));
      if (this.#sending) {
        this.#sendFollows = true;
        this.#setSendOrigin(origin);
      }
    }
    this.#stats.receiveRejections++;
  }

  /** The downstream accepted a hand-off: the receive episode, if any, ends. */
  acceptedDownstream(): void {
    if (!this.#receiving) return;
    this.#receiving = false;
    this.#receive.end(this.#clock.now());
  }

  /** Ends both episodes (terminate, abandoned work, end of join). */
  endAll(): void {
    this.relieveUpstream();
    this.acceptedDownstream();
  }

  /** What this step's upstream should call the origin of a rejection from this step. */
  #currentOrigin(): string {
    return this.#sending ? this.#sendOrigin : this.#stats.name;
  }

  #setSendOrigin(origin: string): void {
    if (origin === this.#sendOrigin) return;
    this.#sendOrigin = origin;
    this.#send.reattribute(this.#clock.now(), this.#stats.episodes("send", origin));
    const up = this.#upstream;
    if (up !== undefined) up.#downstreamOriginChanged(origin);
  }

  #downstreamOriginChanged(origin: string): void {
    if (!this.#receiving || origin === this.#receiveOrigin) return;
    this.#receiveOrigin = origin;
    this.#receive.reattribute(this.#clock.now(), this.#stats.episodes("receive", origin));
    if (this.#sending && this.#sendFollows) this.#setSendOrigin(origin);
  }
}

interface Pending {
  readonly meter: StepMeter;
  readonly name: string;
  readonly named: boolean;
  readonly clock: Clock;
}

interface Scope {
  readonly source: StepMetricsSource;
  /** Meters of the steps built so far, in construction order (last step first). */
  readonly pending: Pending[];
}

let currentScope: Scope | undefined;

/** Totals that count nothing anywhere: a meter's stand-in until its pipeline is named. */
function unbound(name: string, clock: Clock): StepStats {
  return new StepStats(name, clock);
}

/**
 * Runs `build` (a factory's `createWithPartitions`) so that every step it constructs
 * without an explicit `metrics` option is instrumented with `source`. The processor does
 * this for every pipeline; with `source` undefined it just calls `build`.
 *
 * Steps are named once `build` returns, from the first step of the pipeline to the last
 * (steps are constructed last one first, since each takes its next step): unnamed steps
 * that share a default name get `#2`, `#3`... in pipeline order, so the first of two
 * `RunTask`s is `run_task` and the second `run_task#2`.
 *
 * @example Give the steps of a pipeline metrics
 * ```ts
 * import { CommitOffsets, RunTask } from "@sluice/sluice";
 * import { systemClock } from "../clock.ts";
 * import { StepStats, withStepMetrics } from "./step.ts";
 * const stats = new Map<string, StepStats>();
 * const source = {
 *   stepStats: (name: string) => stats.get(name) ?? stats.set(name, new StepStats(name, systemClock)).get(name)!,
 * };
 * withStepMetrics(source, () => new RunTask((m) => m.payload, new RunTask((m) => m.payload, new CommitOffsets(() => {}))));
 * console.log([...stats.keys()]); // ["run_task", "run_task#2", "commit_offsets"]
 * ```
 */
export function withStepMetrics<T>(source: StepMetricsSource | undefined, build: () => T): T {
  if (source === undefined) return build();
  const previous = currentScope;
  const scope: Scope = { source, pending: [] };
  currentScope = scope;
  let built: T;
  try {
    built = build();
  } finally {
    currentScope = previous;
  }
  nameSteps(scope);
  return built;
}

/** Binds the scope's meters to their totals, first step of the pipeline first. */
function nameSteps(scope: Scope): void {
  const pending = scope.pending;
  const seen = new Map<string, number>();
  for (let i = pending.length - 1; i >= 0; i--) {
    const p = pending[i];
    let name = p.name;
    if (!p.named) {
      const n = (seen.get(name) ?? 0) + 1;
      seen.set(name, n);
      if (n > 1) name = `${name}#${n}`;
    }
    p.meter.rebind(scope.source.stepStats(name, p.clock));
  }
}

/**
 * The meter for a step being constructed: from `explicit`, else from the enclosing
 * {@link withStepMetrics} (which names it once the whole pipeline is built), else none
 * (undefined: the step records nothing).
 *
 * @example No meter without metrics
 * ```ts
 * import { systemClock } from "../clock.ts";
 * import { StepStats, stepMeterFor } from "./step.ts";
 * console.log(stepMeterFor(undefined, "parse", true, systemClock)); // undefined
 * const source = { stepStats: (n: string) => new StepStats(n, systemClock) };
 * console.log(stepMeterFor(source, "parse", true, systemClock)?.name); // "parse"
 * ```
 */
export function stepMeterFor(
  explicit: StepMetricsSource | undefined,
  name: string,
  named: boolean,
  clock: Clock,
  downstream?: StepMeter,
  downstreamName?: string,
): StepMeter | undefined {
  if (explicit !== undefined) {
    return new StepMeter(explicit.stepStats(name, clock), clock, downstream, downstreamName);
  }
  const scope = currentScope;
  if (scope === undefined) return undefined;
  const meter = new StepMeter(unbound(name, clock), clock, downstream, downstreamName);
  scope.pending.push({ meter, name, named, clock });
  return meter;
}
