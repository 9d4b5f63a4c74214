/**
 * Backpressure episodes in plain numbers. An episode starts at the first rejection and
 * ends on whichever path ends the pressure (accepted submit, room made in `poll`, close,
 * revoke, shutdown); consecutive rejections do not restart it.
 *
 * @module
 */
import type { Attributes } from "@opentelemetry/api";
import type { HistogramBuffer } from "./buffer.ts";

/**
 * Totals of the episodes of one step, one side (sending or receiving backpressure) and one
 * origin. Every number is cumulative. Time is split by origin: when the origin of an open
 * episode changes, the time so far stays with the old origin (so each origin's time only
 * grows), and the episode's duration is reported with the origin it ended with.
 *
 * @example Record one episode
 * ```ts
 * import { EpisodeStats, EpisodeTracker } from "./episode.ts";
 * const stats = new EpisodeStats({ step: "sink", origin: "sink" });
 * const episode = new EpisodeTracker();
 * episode.begin(1000, stats);
 * episode.end(1250);
 * console.log(stats.episodes, stats.timeMs(2000)); // 1 250
 * ```
 */
export class EpisodeStats {
  /** Episodes that ended with this origin. */
  episodes = 0;
  /** Time attributed to this origin in ended stretches, in milliseconds. */
  closedMs = 0;
  /** Stretches currently open with this origin. */
  open = 0;
  /** Sum of the start times of the open stretches (so open time needs no list). */
  openStartSum = 0;

  /**
   * Attributes these totals are reported with (`step`, `origin`).
   * @internal An OpenTelemetry type, for Sluice's metrics binding only.
   */
  readonly attributes: Attributes;
  /** Where each ended episode's duration goes (buffered histogram), if anywhere. */
  readonly durations?: HistogramBuffer;

  /** Creates the totals; `durations` receives one sample per episode ended with this origin. */
  constructor(attributes: Attributes, durations?: HistogramBuffer) {
    this.attributes = attributes;
    this.durations = durations;
  }

  /** Milliseconds attributed to this origin, open stretches included up to `now`. */
  timeMs(now: number): number {
    return this.closedMs + (this.open * now - this.openStartSum);
  }
}

/**
 * One side of one step's backpressure: at most one open episode at a time.
 *
 * @example Begin and end an episode
 * ```ts
 * import { EpisodeStats, EpisodeTracker } from "./episode.ts";
 * const self = new EpisodeStats({ step: "a", origin: "a" });
 * const sink = new EpisodeStats({ step: "a", origin: "sink" });
 * const t = new EpisodeTracker();
 * t.begin(0, self);
 * t.begin(5, self); // ignored: already open
 * t.reattribute(10, sink); // from now on the pressure comes from "sink"
 * console.log(t.end(40)); // 40, reported with origin "sink"
 * console.log(self.timeMs(40), sink.timeMs(40)); // 10 30
 * console.log(t.end(50)); // -1: nothing was open
 * ```
 */
export class EpisodeTracker {
  #start = 0;
  #segmentStart = 0;
  #stats: EpisodeStats | undefined;

  /** True while an episode is open. */
  get open(): boolean {
    return this.#stats !== undefined;
  }

  /** When the open episode started (meaningless when none is open). */
  get start(): number {
    return this.#start;
  }

  /** The totals the open episode counts into now, if one is open. */
  get stats(): EpisodeStats | undefined {
    return this.#stats;
  }

  /** Opens an episode at `now` counting into `stats`, unless one is open already. */
  begin(now: number, stats: EpisodeStats): void {
    if (this.#stats !== undefined) return;
    this.#start = now;
    this.#segmentStart = now;
    this.#stats = stats;
    stats.open++;
    stats.openStartSum += now;
  }

  /**
   * The open episode's origin changed at `now`: time so far stays with the old totals,
   * time from now on (and the episode itself, when it ends) goes to `stats`.
   */
  reattribute(now: number, stats: EpisodeStats): void {
    const s = this.#stats;
    if (s === undefined || s === stats) return;
    this.#close(s, now);
    this.#segmentStart = now;
    this.#stats = stats;
    stats.open++;
    stats.openStartSum += now;
  }

  /** Ends the open episode at `now`; returns its duration, or -1 when none was open. */
  end(now: number): number {
    const s = this.#stats;
    if (s === undefined) return -1;
    this.#stats = undefined;
    this.#close(s, now);
    const d = now > this.#start ? now - this.#start : 0;
    s.episodes++;
    s.durations?.push(d);
    return d;
  }

  #close(s: EpisodeStats, now: number): void {
    s.open--;
    s.openStartSum -= this.#segmentStart;
    s.closedMs += now > this.#segmentStart ? now - this.#segmentStart : 0;
  }
}
