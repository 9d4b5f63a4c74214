/**
 * The processor's backpressure bookkeeping (private to `processing/`): one episode from the
 * first rejection of a held message to its end on every path (accepted, dropped, revoked,
 * shut down), the pause of all assigned partitions once it lasts, and the waits between
 * retries, which never spin.
 *
 * @module
 */
import type { Consumer } from "../backends/abstract.ts";
import { type Clock, sleepUnless } from "../clock.ts";
import type { ProcessingStrategy } from "../strategies/abstract.ts";
import type { Partition } from "../types.ts";

/** A pipeline, as far as waiting for room goes. */
type Pipeline = ProcessingStrategy<unknown>;

/** First wait (ms) of an episode; it doubles up to the bound. */
const MIN_BACKOFF_MS = 1;

/**
 * Waits for room in a pipeline: for its `ready`, or at most a given time. A `ready` that
 * resolved while nothing could be submitted after it is not to be trusted: until something
 * is accepted again, the timer alone paces the retries (else the loop would spin on a
 * `ready` that keeps resolving at once).
 */
export class RoomWait {
  #readyWon = false;
  #progressSinceWait = true;

  /** Something was accepted since the last wait: `ready` is trusted again. */
  progressed(): void {
    this.#progressSinceWait = true;
  }

  /**
   * Sleeps `ms` on `clock`, or less when `strategy.ready` resolves first (no strategy: a
   * plain sleep), or when `also` settles (always trusted: it is not about room). A rejection
   * of `ready` that ends the wait is rethrown (the pipeline failed).
   */
  async wait(
    clock: Clock,
    ms: number,
    strategy?: Pick<Pipeline, "ready">,
    also?: Promise<void>,
  ): Promise<void> {
    const trustReady = strategy !== undefined && !(this.#readyWon && !this.#progressSinceWait);
    this.#readyWon = false;
    this.#progressSinceWait = false;
    if (!trustReady) return await sleepUnless(clock, ms, also);
    let failure: { error: unknown } | undefined;
    const woken = strategy.ready.then(
      () => void (this.#readyWon = true),
      (error) => void (failure = { error }),
    );
    await sleepUnless(clock, ms, also === undefined ? woken : Promise.race([woken, also]));
    if (failure !== undefined) throw failure.error;
  }
}

/** What a {@link Backpressure} counts, in the processor's stats. */
export interface BackpressureCounters {
  /** Times all partitions were paused for backpressure. */
  pauses: number;
  /** Times they were resumed. */
  resumes: number;
  /** Total milliseconds spent in finished backpressure episodes. */
  backpressureMs: number;
}

/** Timing of a {@link Backpressure}: see the processor's options of the same names. */
export interface BackpressureOptions {
  /** Continuous backpressure (ms) after which all assigned partitions are paused. */
  pauseAfterMs: number;
  /** Longest wait (ms) between retries while not paused. */
  maxBackoffMs: number;
  /** Longest wait (ms) between retries once paused. */
  pausedBackoffMs: number;
}

/**
 * Default `pausedBackoffMs` (ms) for a consumer with `onGroupEvent`: it wakes the paused
 * processor itself when a rebalance needs it, so the back-off only paces retries.
 */
export const PAUSED_BACKOFF_MS_WITH_EVENTS = 3000;
/** Default `pausedBackoffMs` (ms) for a consumer without `onGroupEvent` (one of the user's). */
export const PAUSED_BACKOFF_MS = 1000;

/**
 * One backpressure episode at a time: started by the first rejection, pausing the consumer
 * once it lasted `pauseAfterMs`, waiting with an exponential backoff between retries, and
 * ended (time accounted, partitions resumed) by {@link Backpressure.end}.
 */
export class Backpressure {
  readonly #consumer: Consumer<unknown>;
  readonly #clock: Clock;
  readonly #stats: BackpressureCounters;
  readonly #options: BackpressureOptions;
  readonly #room = new RoomWait();
  #since: number | undefined;
  #paused = false;
  #backoff = MIN_BACKOFF_MS;
  /** Removes the listener of the consumer's group events (none: it has no `onGroupEvent`). */
  readonly #stopListening: (() => void) | undefined;
  /** A group event came while no wait was going on: the next wait ends at once. */
  #groupEventMissed = false;
  /** Ends the current wait early: a group event, or {@link Backpressure.interrupt}. */
  #wakeOnGroupEvent: (() => void) | undefined;

  /** Creates the bookkeeping of `consumer`'s episodes, counting into `stats`. */
  constructor(
    consumer: Consumer<unknown>,
    clock: Clock,
    stats: BackpressureCounters,
    options: BackpressureOptions,
  ) {
    this.#consumer = consumer;
    this.#clock = clock;
    this.#stats = stats;
    this.#options = options;
    this.#stopListening = consumer.onGroupEvent?.(() => {
      const wake = this.#wakeOnGroupEvent;
      if (wake === undefined) this.#groupEventMissed = true;
      else wake();
    });
  }

  /** Ends the current wait, if any, at once (a shutdown was asked for). */
  interrupt(): void {
    this.#wakeOnGroupEvent?.();
  }

  /** Stops listening to the consumer's group events (the processor stopped). */
  close(): void {
    this.#stopListening?.();
  }

  /** When the current episode began, if one is going on. */
  get since(): number | undefined {
    return this.#since;
  }

  /** True while all assigned partitions are paused for backpressure. */
  get paused(): boolean {
    return this.#paused;
  }

  /**
   * A held message was rejected at `now`: starts an episode, or, once the episode lasted
   * `pauseAfterMs`, pauses all assigned partitions.
   */
  rejected(now: number): void {
    if (this.#since === undefined) {
      this.#since = now;
      this.#backoff = MIN_BACKOFF_MS;
      // Events before the episode are the poll's business; its first wait is short anyway.
      this.#groupEventMissed = false;
    } else if (!this.#paused && now - this.#since >= this.#options.pauseAfterMs) {
      const assigned = [...this.#consumer.tell().keys()];
      if (assigned.length > 0) {
        this.#consumer.pause(assigned);
        this.#paused = true;
        this.#stats.pauses++;
      }
    }
  }

  /** Partitions joining while paused wait with the others. */
  assigned(partitions: ReadonlyMap<Partition, number>): void {
    if (this.#paused && partitions.size > 0) this.#consumer.pause([...partitions.keys()]);
  }

  /** Messages were accepted: the pipeline's `ready` is trusted again. */
  progressed(): void {
    this.#room.progressed();
  }

  /**
   * Waits for room (the pipeline's `ready`), a group event of the consumer (a rebalance to
   * let through: see `Consumer.onGroupEvent`) or the backoff, whichever comes first, then
   * doubles the backoff up to its bound (`pausedBackoffMs` once paused). A group event that
   * came since the last wait ends this one at once.
   */
  async wait(strategy: Pick<Pipeline, "ready">): Promise<void> {
    if (this.#groupEventMissed) {
      this.#groupEventMissed = false;
      return;
    }
    const event = new Promise<void>((resolve) => this.#wakeOnGroupEvent = resolve);
    try {
      await this.#room.wait(this.#clock, this.#backoff, strategy, event);
    } finally {
      this.#wakeOnGroupEvent = undefined;
    }
    const { maxBackoffMs, pausedBackoffMs } = this.#options;
    const bound = this.#paused ? pausedBackoffMs : maxBackoffMs;
    this.#backoff = Math.min(this.#backoff * 2, Math.max(bound, MIN_BACKOFF_MS));
  }

  /**
   * Ends the episode, if any, on every path (the held message accepted or dropped, the
   * pipeline closed): its time is accounted and paused partitions resume.
   */
  end(): void {
    this.#room.progressed();
    if (this.#since === undefined) return;
    this.#stats.backpressureMs += this.#clock.now() - this.#since;
    this.#since = undefined;
    if (!this.#paused) return;
    // Partitions that stay assigned (a revoke of others, say) must not stay paused.
    this.#paused = false;
    const assigned = [...this.#consumer.tell().keys()];
    try {
      if (assigned.length > 0) this.#consumer.resume(assigned);
      this.#stats.resumes++;
    } catch { /* after a rebalance: the backend already reset its pause state */ }
  }
}
