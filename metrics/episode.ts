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
 * origin. Every number is cumulative; `timeMs(now)` includes episodes still open.
 *
 * @example
 * ```ts
 * import { EpisodeStats, EpisodeTracker } from "@sluice/sluice";
 * const stats = new EpisodeStats({ step: "sink", origin: "sink" });
 * const episode = new EpisodeTracker();
 * episode.begin(1000, stats);
 * episode.reject();
 * episode.end(1250);
 * console.log(stats.episodes, stats.totalMs); // 1 250
 * ```
 */
export class EpisodeStats {
  /** Rejections counted while an episode was open. */
  rejections = 0;
  /** Episodes that ended. */
  episodes = 0;
  /** Total duration of the episodes that ended, in milliseconds. */
  totalMs = 0;
  /** Episodes currently open. */
  open = 0;
  /** Sum of the start times of the open episodes (so open time needs no list). */
  openStartSum = 0;

  /** Creates the totals; `durations` receives one sample per ended episode. */
  constructor(
    /** Attributes these totals are reported with (`step`, `origin`). */
    readonly attributes: Attributes,
    /** Where each ended episode's duration goes (buffered histogram), if anywhere. */
    readonly durations?: HistogramBuffer,
  ) {}

  /** Milliseconds spent in episodes, ended ones plus the open ones up to `now`. */
  timeMs(now: number): number {
    return this.totalMs + (this.open * now - this.openStartSum);
  }
}

/**
 * One side of one step's backpressure: at most one open episode at a time.
 *
 * @example
 * ```ts
 * import { EpisodeStats, EpisodeTracker } from "@sluice/sluice";
 * const t = new EpisodeTracker();
 * t.begin(0, new EpisodeStats({ step: "a", origin: "a" }));
 * t.begin(5, new EpisodeStats({ step: "a", origin: "b" })); // ignored: already open
 * console.log(t.end(40)); // 40
 * console.log(t.end(50)); // -1: nothing was open
 * ```
 */
export class EpisodeTracker {
  #start = 0;
  #stats: EpisodeStats | undefined;

  /** True while an episode is open. */
  get open(): boolean {
    return this.#stats !== undefined;
  }

  /** When the open episode started (meaningless when none is open). */
  get start(): number {
    return this.#start;
  }

  /** The totals the open episode counts into, if one is open. */
  get stats(): EpisodeStats | undefined {
    return this.#stats;
  }

  /** Opens an episode at `now` counting into `stats`, unless one is open already. */
  begin(now: number, stats: EpisodeStats): void {
    if (this.#stats !== undefined) return;
    this.#start = now;
    this.#stats = stats;
    stats.open++;
    stats.openStartSum += now;
  }

  /** Counts one rejection in the open episode (no-op when none is open). */
  reject(): void {
    const s = this.#stats;
    if (s !== undefined) s.rejections++;
  }

  /** Ends the open episode at `now`; returns its duration, or -1 when none was open. */
  end(now: number): number {
    const s = this.#stats;
    if (s === undefined) return -1;
    this.#stats = undefined;
    const d = now > this.#start ? now - this.#start : 0;
    s.open--;
    s.openStartSum -= this.#start;
    s.episodes++;
    s.totalMs += d;
    s.durations?.push(d);
    return d;
  }
}
