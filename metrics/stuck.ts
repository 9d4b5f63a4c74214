/**
 * The stuck detector: notices when a loop has not advanced for a while and says what it
 * was doing. It watches a progress counter (no clock read on the loop's hot path) from a
 * timer of its own.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import { ConfigurationError } from "../errors.ts";

/** Options of a {@link StuckDetector}. */
export interface StuckDetectorOptions {
  /** Clock for the checks. */
  clock: Clock;
  /** The loop counts as stuck when `progress()` has not changed for this long (ms, > 0). */
  timeoutMs: number;
  /** A number that changes whenever the loop advances (e.g. its iteration count). */
  progress: () => number;
  /** What the loop is doing now, for the report. */
  describe: () => string;
  /** Called once per stuck episode with how long it has been stuck and what it was doing. */
  onStuck: (stuckForMs: number, doing: string) => void;
  /**
   * How often to check, in milliseconds.
   * @default a quarter of the timeout, at most 1000
   */
  checkEveryMs?: number;
}

/**
 * Checks every `checkEveryMs` whether `progress()` moved; reports once per stuck episode
 * when it has not for `timeoutMs`, and again only after the loop advanced in between.
 *
 * @example Warn when the loop stops advancing
 * ```ts
 * import { ManualClock } from "@sluice/sluice";
 * import { StuckDetector } from "./stuck.ts";
 * const clock = new ManualClock(0);
 * let iterations = 0;
 * const detector = new StuckDetector({
 *   clock,
 *   timeoutMs: 1000,
 *   progress: () => iterations,
 *   describe: () => "polling the consumer",
 *   onStuck: (ms, doing) => console.warn(`stuck for ${ms} ms while ${doing}`),
 * });
 * detector.start();
 * await clock.advance(1250); // logs "stuck for 1000 ms while polling the consumer"
 * detector.stop();
 * ```
 */
export class StuckDetector {
  readonly #options: StuckDetectorOptions;
  readonly #checkEveryMs: number;
  #stop: AbortController | undefined;
  #last = NaN;
  #since = 0;
  #reported = false;

  /** Creates the detector; throws {@link ConfigurationError} on a bad timeout. */
  constructor(options: StuckDetectorOptions) {
    const t = options.timeoutMs;
    if (typeof t !== "number" || !Number.isFinite(t) || t <= 0) {
      throw new ConfigurationError(
        `stuckTimeoutMs must be a finite number of milliseconds > 0, got ${String(t)}; ` +
          `leave it unset to disable the stuck detector`,
      );
    }
    this.#options = options;
    this.#checkEveryMs = options.checkEveryMs ?? Math.min(1000, Math.max(1, t / 4));
  }

  /** True while a stuck episode has been reported and the loop has not advanced since. */
  get stuck(): boolean {
    return this.#reported;
  }

  /** Starts checking (idempotent). */
  start(): void {
    if (this.#stop !== undefined) return;
    const stop = this.#stop = new AbortController();
    this.#last = this.#options.progress();
    this.#since = this.#options.clock.now();
    this.#reported = false;
    this.#loop(stop.signal);
  }

  /** Stops checking. */
  stop(): void {
    this.#stop?.abort();
    this.#stop = undefined;
  }

  /** Runs one check now (the timer does this on its own). */
  check(): void {
    const o = this.#options;
    const now = o.clock.now();
    const p = o.progress();
    if (p !== this.#last) {
      this.#last = p;
      this.#since = now;
      this.#reported = false;
      return;
    }
    if (!this.#reported && now - this.#since >= o.timeoutMs) {
      this.#reported = true;
      o.onStuck(now - this.#since, o.describe());
    }
  }

  async #loop(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.#options.clock.sleep(this.#checkEveryMs, signal);
      if (signal.aborted) return;
      try {
        this.check();
      } catch (e) {
        console.error("sluice: the stuck detector's report failed:", e);
      }
    }
  }
}
