/**
 * The stream processor's instrumentation in plain numbers: where the loop spends its time
 * (polling, processing, waiting under backpressure, joining), commits, rebalances, and per
 * partition the committed offset (for lag) and sampled message timestamps (for
 * end-to-end latency). The OpenTelemetry binding reads it when metrics are collected.
 *
 * @module
 */
import type { Attributes } from "@opentelemetry/api";
import type { Clock } from "../clock.ts";
import type { Committable, Partition } from "../types.ts";
import type { HistogramBuffer } from "./buffer.ts";
import type { SeriesAttributes } from "./attributes.ts";

/**
 * What the processor loop is doing; time is accounted to the current phase. The processor's
 * own state, defined here because the processor imports it from metrics (a leaf: metrics
 * imports neither processing/ nor strategies/).
 */
export const Phase: {
  readonly Idle: 0;
  readonly Poll: 1;
  readonly Process: 2;
  readonly Backpressure: 3;
  readonly Join: 4;
} = {
  /** Not running (before `run`, after shutdown). Not reported. */
  Idle: 0,
  /** Waiting in `consumer.poll`. */
  Poll: 1,
  /** `strategy.poll()` and `submit` calls. */
  Process: 2,
  /** Holding a rejected message, waiting for `ready` or the backoff timer. */
  Backpressure: 3,
  /** Closing and joining the pipeline (revoke, shutdown). */
  Join: 4,
};

/** One of the {@link Phase} values. */
export type Phase = typeof Phase[keyof typeof Phase];

/** Human-readable phase descriptions, for the stuck detector's log line. */
export const PHASE_DESCRIPTIONS: readonly string[] = [
  "idle",
  "polling the consumer",
  "polling and submitting to the pipeline",
  "waiting for the pipeline to accept a rejected message (backpressure)",
  "closing and joining the pipeline (revoke or shutdown)",
];

/** The processor's counters the metrics read (a subset of `ProcessorStats`). */
export interface ConsumerCounters {
  /** Loop iterations. */
  readonly iterations: number;
  /** Messages received from the consumer. */
  readonly messagesPolled: number;
  /** Times all partitions were paused for backpressure. */
  readonly pauses: number;
  /** Times they were resumed. */
  readonly resumes: number;
  /** Milliseconds spent in finished backpressure episodes. */
  readonly backpressureMs: number;
  /** Invalid messages reported by the pipeline. */
  readonly invalidMessages: number;
  /** Messages whose dead-letter delivery was confirmed (when a DLQ is configured). */
  readonly deadLettered?: number;
  /** Invalid messages dropped by the DLQ policy, counted. */
  readonly dlqDropped?: number;
  /** Raw messages evicted from the DLQ buffer because it was full. */
  readonly dlqBufferEvicted?: number;
}

/** What the lag gauge needs from a consumer: its optional `endOffset`. */
export interface EndOffsets {
  /** The next offset to be written to `partition`, or undefined when unknown. */
  endOffset?(partition: Partition): number | undefined;
}

/** A message as far as latency sampling cares. */
export interface TimestampedOffset {
  /** Partition read from. */
  readonly partition: Partition;
  /** Offset in it. */
  readonly offset: number;
  /** Broker timestamp, epoch milliseconds. */
  readonly timestamp: number;
}

/** Progress of one assigned partition (see {@link ConsumerMeter.partitions}). */
export interface PartitionProgress {
  /** The partition. */
  readonly partition: Partition;
  /** Its committed offset (the next offset to read), as this processor last committed it. */
  readonly committed: number;
  /** End offset minus committed offset; undefined when the consumer cannot tell. */
  readonly lag: number | undefined;
  /**
   * Milliseconds it has had lag while its committed offset did not move (0 when it moves
   * or has no lag). Refreshed by the processor's loop about once a second.
   */
  readonly stalledMs: number;
}

/** Most timestamp samples kept per partition. */
const MAX_SAMPLES = 64;
/** Batches are sampled for latency at most this often (ms, by the time of the last phase switch). */
const SAMPLE_EVERY_MS = 10;

/** How often the loop refreshes partition progress ({@link ConsumerMeter.track}), in ms. */
export const PROGRESS_CHECK_MS = 1000;

interface PartitionState {
  readonly partition: Partition;
  readonly attributes: Attributes;
  committed: number;
  /** Last time the committed offset moved, or the partition was seen with no lag. */
  progressAt: number;
  /** Sampled offsets and timestamps, oldest first (parallel arrays, offsets increasing). */
  offsets: number[];
  timestamps: number[];
  latency: HistogramBuffer | undefined;
}

/**
 * Plain-number instrumentation of one stream processor.
 *
 * @example Time the loop's phases
 * ```ts
 * import { ManualClock } from "@sluice/sluice";
 * import { ConsumerMeter, Phase } from "./consumer.ts";
 * const clock = new ManualClock(0);
 * const stats = { iterations: 0, messagesPolled: 0, pauses: 0, resumes: 0, backpressureMs: 0, invalidMessages: 0 };
 * const meter = new ConsumerMeter(clock, stats, {});
 * meter.enter(Phase.Poll);
 * await clock.advance(100);
 * meter.enter(Phase.Process);
 * console.log(meter.phaseMs(Phase.Poll)); // 100
 * ```
 */
export class ConsumerMeter {
  /** The processor's counters. */
  readonly counters: ConsumerCounters;
  /** Commits that succeeded. */
  commitsOk = 0;
  /** Commits that failed. */
  commitsFailed = 0;
  /** Times the stuck detector fired. */
  stuck = 0;
  /** Assignment callbacks. */
  assigns = 0;
  /** Revocation callbacks. */
  revokes = 0;
  /** Partitions assigned, summed over assignments. */
  partitionsAssigned = 0;
  /** Partitions revoked, summed over revocations. */
  partitionsRevoked = 0;
  /** Durations of commits, in milliseconds (set by the binding). */
  commitDurations: HistogramBuffer | undefined;
  /**
   * Builds the latency buffer of a partition (set by the binding).
   * @internal An OpenTelemetry type, for Sluice's metrics binding only.
   */
  latencyBuffer: ((attributes: Attributes) => HistogramBuffer) | undefined;

  readonly #clock: Clock;
  readonly #source: EndOffsets;
  readonly #openBackpressureSince: () => number | undefined;
  readonly #phaseMs = [0, 0, 0, 0, 0];
  #phase: Phase = Phase.Idle;
  #mark: number;
  #lastSample = -Infinity;
  readonly #partitions = new Map<Partition, PartitionState>();
  #trackedAt = -Infinity;
  /** The series' attributes (`messaging.*`), on every point this meter reports. */
  readonly attributes: SeriesAttributes;

  /**
   * Creates the meter. `openBackpressureSince` returns the open episode's start, if any;
   * `attributes` (the processor's `messaging.*` ones) go on every point it reports.
   */
  constructor(
    clock: Clock,
    counters: ConsumerCounters,
    source: EndOffsets,
    openBackpressureSince: () => number | undefined = () => undefined,
    attributes: SeriesAttributes = {},
  ) {
    this.attributes = attributes;
    this.#clock = clock;
    this.counters = counters;
    this.#source = source;
    this.#openBackpressureSince = openBackpressureSince;
    this.#mark = clock.now();
  }

  /** The clock in use. */
  get clock(): Clock {
    return this.#clock;
  }

  /** The current phase. */
  get phase(): Phase {
    return this.#phase;
  }

  /**
   * Accounts the time since the last call to the current phase, then switches to `phase`.
   * `now` is a reading of this meter's clock the caller has just taken, to save a second
   * one (it must not be earlier than the previous switch); by default the clock is read.
   * Returns the reading used, for the caller to reuse in turn.
   */
  enter(phase: Phase, now: number = this.#clock.now()): number {
    this.#phaseMs[this.#phase] += now - this.#mark;
    this.#mark = now;
    this.#phase = phase;
    return now;
  }

  /** Milliseconds spent in `phase` so far, including the current stretch. */
  phaseMs(phase: Phase): number {
    const t = this.#phaseMs[phase];
    return phase === this.#phase ? t + (this.#clock.now() - this.#mark) : t;
  }

  /** Milliseconds spent holding rejected messages, including an open episode. */
  backpressureMs(): number {
    const since = this.#openBackpressureSince();
    const open = since === undefined ? 0 : Math.max(0, this.#clock.now() - since);
    return this.counters.backpressureMs + open;
  }

  /** Partitions were assigned, each starting at (committed) `offsets`. */
  assigned(offsets: ReadonlyMap<Partition, number>): void {
    this.assigns++;
    this.partitionsAssigned += offsets.size;
    const now = this.#clock.now();
    for (const [p, o] of offsets) {
      const existing = this.#partitions.get(p);
      if (existing !== undefined) {
        existing.committed = o;
        existing.progressAt = now;
        continue;
      }
      const attributes: Attributes = {
        ...this.attributes,
        "messaging.destination.name": p.topic.name,
        "messaging.destination.partition.id": String(p.index),
      };
      this.#partitions.set(p, {
        partition: p,
        attributes,
        committed: o,
        progressAt: now,
        offsets: [],
        timestamps: [],
        latency: this.latencyBuffer?.(attributes),
      });
    }
  }

  /** Partitions were revoked: their lag and latency are no longer this consumer's. */
  revoked(partitions: readonly Partition[]): void {
    this.revokes++;
    this.partitionsRevoked += partitions.length;
    for (const p of partitions) {
      const s = this.#partitions.get(p);
      if (s === undefined) continue;
      s.latency?.flush();
      this.#partitions.delete(p);
    }
  }

  /** Partitions currently assigned. */
  get assignedCount(): number {
    return this.#partitions.size;
  }

  /**
   * Samples the timestamps of a polled batch: its first and last message only (messages
   * of a partition are contiguous in a batch), so the cost does not grow with its size;
   * and at most one batch every 10 ms (by the time of the last {@link ConsumerMeter.enter},
   * so no clock read either).
   */
  sample(batch: readonly TimestampedOffset[]): void {
    const n = batch.length;
    if (n === 0 || this.#mark - this.#lastSample < SAMPLE_EVERY_MS) return;
    this.#lastSample = this.#mark;
    this.#sampleOne(batch[0]);
    if (n > 1) this.#sampleOne(batch[n - 1]);
  }

  #sampleOne(m: TimestampedOffset): void {
    const s = this.#partitions.get(m.partition);
    if (s === undefined) return;
    const offsets = s.offsets;
    if (offsets.length > 0 && offsets[offsets.length - 1] >= m.offset) return;
    if (offsets.length >= MAX_SAMPLES) {
      offsets.shift();
      s.timestamps.shift();
    }
    offsets.push(m.offset);
    s.timestamps.push(m.timestamp);
  }

  /** A commit of `offsets` that started at `startedAt` succeeded. */
  committed(offsets: Committable, startedAt: number): void {
    const now = this.#clock.now();
    this.commitsOk++;
    this.commitDurations?.push(Math.max(0, now - startedAt));
    for (const [p, o] of offsets) {
      const s = this.#partitions.get(p);
      if (s === undefined) continue;
      if (o > s.committed) {
        s.committed = o;
        s.progressAt = now;
      }
      // The newest sampled message the commit covers gives this commit's latency.
      const offsets = s.offsets;
      let k = 0;
      while (k < offsets.length && offsets[k] < o) k++;
      if (k === 0) continue;
      const ts = s.timestamps[k - 1];
      offsets.splice(0, k);
      s.timestamps.splice(0, k);
      s.latency?.push(Math.max(0, now - ts));
    }
  }

  /** A commit that started at `startedAt` failed. */
  commitFailed(startedAt: number): void {
    this.commitsFailed++;
    this.commitDurations?.push(Math.max(0, this.#clock.now() - startedAt));
  }

  /**
   * Calls `observe(lag, attributes)` for every assigned partition whose end offset the
   * consumer knows: end offset minus committed offset.
   * @internal An OpenTelemetry type, for Sluice's metrics binding only.
   */
  observeLag(observe: (lag: number, attributes: Attributes) => void): void {
    for (const s of this.#partitions.values()) {
      const lag = this.#lag(s);
      if (lag !== undefined) observe(lag, s.attributes);
    }
  }

  /**
   * Calls `observe(ms, attributes)` for every assigned partition: how long it has had lag
   * while its committed offset did not move (0 when it moves or has no lag). Partitions
   * whose lag is unknown report 0.
   * @internal An OpenTelemetry type, for Sluice's metrics binding only.
   */
  observeStalls(observe: (stalledMs: number, attributes: Attributes) => void): void {
    const now = this.#clock.now();
    for (const s of this.#partitions.values()) observe(this.#stalledMs(s, now), s.attributes);
  }

  /**
   * Refreshes partition progress (a partition seen with no lag counts as progressing) at
   * most once per {@link PROGRESS_CHECK_MS}; the processor calls it every iteration with a
   * clock reading it has, or none (the meter reads the clock).
   */
  track(now?: number): void {
    if (now === undefined) now = this.#clock.now();
    if (now - this.#trackedAt < PROGRESS_CHECK_MS && now >= this.#trackedAt) return;
    this.#trackedAt = now;
    for (const s of this.#partitions.values()) {
      if (this.#lag(s) === 0) s.progressAt = now;
    }
  }

  /** Per assigned partition: committed offset, lag (undefined when unknown), stalled time. */
  partitions(): PartitionProgress[] {
    const now = this.#clock.now();
    const out: PartitionProgress[] = [];
    for (const s of this.#partitions.values()) {
      out.push({
        partition: s.partition,
        committed: s.committed,
        lag: this.#lag(s),
        stalledMs: this.#stalledMs(s, now),
      });
    }
    return out;
  }

  #stalledMs(s: PartitionState, now: number): number {
    const lag = this.#lag(s);
    if (lag === undefined || lag === 0) return 0;
    return Math.max(0, now - s.progressAt);
  }

  #lag(s: PartitionState): number | undefined {
    const endOffset = this.#source.endOffset;
    if (typeof endOffset !== "function") return undefined;
    let end: number | undefined;
    try {
      end = endOffset.call(this.#source, s.partition);
    } catch {
      return undefined; // a backend that cannot answer now reports no lag rather than fail
    }
    return typeof end === "number" && Number.isFinite(end)
      ? Math.max(0, end - s.committed)
      : undefined;
  }

  /** Records the buffered latency samples. */
  flush(): void {
    this.commitDurations?.flush();
    for (const s of this.#partitions.values()) s.latency?.flush();
  }
}
