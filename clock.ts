/**
 * Time, injectable. Everything in Sluice that waits or measures durations takes a
 * {@link Clock}, so tests can drive time with a {@link ManualClock} instead of sleeping.
 *
 * @module
 */

/**
 * A source of time and of waits.
 *
 * @example A step driven by a manual clock
 * ```ts
 * import { type Clock, CommitOffsets, ManualClock, RateLimit } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const clock: Clock = new ManualClock(1_000);
 * const step = new RateLimit(new CommitOffsets(() => {}), { ratePerSecond: 10, clock });
 * assertEquals(clock.now(), 1_000);
 * step.terminate();
 * ```
 */
export interface Clock {
  /** Milliseconds since the epoch (or any fixed origin for a manual clock). */
  now(): number;
  /** Resolves after `ms` milliseconds, or as soon as `signal` aborts (never rejects). */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/**
 * The real clock: `Date.now()` and timers.
 *
 * @example Sleep on the real clock
 * ```ts
 * import { systemClock } from "./clock.ts";
 * await systemClock.sleep(1);
 * ```
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(id);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const id = setTimeout(done, ms);
      signal?.addEventListener("abort", done, { once: true });
    });
  },
};

interface Sleeper {
  at: number;
  resolve: () => void;
}

/**
 * A clock that only moves when told to. `advance(ms)` wakes every sleeper whose deadline
 * has passed, in deadline order, letting each one's continuation run before the next.
 *
 * @example Drive time by hand in a test
 * ```ts
 * import { ManualClock } from "@sluice/sluice";
 * const clock = new ManualClock(0);
 * const woke = clock.sleep(100);
 * await clock.advance(100);
 * await woke;
 * console.log(clock.now()); // 100
 * ```
 */
export class ManualClock implements Clock {
  #now: number;
  #sleepers: Sleeper[] = [];

  /** Starts the clock at `start` milliseconds. */
  constructor(start = 0) {
    this.#now = start;
  }

  /** The current manual time. */
  now(): number {
    return this.#now;
  }

  /** Number of sleepers still waiting (useful to await "the code under test is waiting"). */
  get pending(): number {
    return this.#sleepers.length;
  }

  /** Resolves when the clock has been advanced by `ms`, or when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const sleeper: Sleeper = { at: this.#now + Math.max(0, ms), resolve };
      const onAbort = () => {
        const i = this.#sleepers.indexOf(sleeper);
        if (i >= 0) this.#sleepers.splice(i, 1);
        resolve();
      };
      sleeper.resolve = () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#sleepers.push(sleeper);
    });
  }

  /**
   * Moves time forward by `ms`, waking sleepers in deadline order. Each woken sleeper's
   * continuation gets a macrotask turn before time moves on.
   */
  async advance(ms: number): Promise<void> {
    const target = this.#now + ms;
    for (;;) {
      let next: Sleeper | undefined;
      for (const s of this.#sleepers) if (s.at <= target && (!next || s.at < next.at)) next = s;
      if (!next) break;
      this.#sleepers.splice(this.#sleepers.indexOf(next), 1);
      if (next.at > this.#now) this.#now = next.at;
      next.resolve();
      await macrotask();
    }
    this.#now = target;
    await macrotask();
  }
}

const setImmediateFn = (globalThis as { setImmediate?: (cb: () => void) => unknown })
  .setImmediate;

/**
 * Yields to the event loop (a macrotask turn) without the ~1–4 ms clamp of
 * `setTimeout(0)`: timers, I/O and signal handlers get to run.
 *
 * @example Yield to timers and I/O
 * ```ts
 * import { macrotask } from "./clock.ts";
 * await macrotask();
 * ```
 */
export function macrotask(): Promise<void> {
  return new Promise<void>((resolve) => {
    if (setImmediateFn) setImmediateFn(resolve);
    else setTimeout(resolve, 0);
  });
}

/** The abort reason of {@link sleepUnless}'s timer: a string, so aborting builds no stack. */
const WAKE_REASON = "woken";

/**
 * Sleeps `ms` on `clock`, or less when `unless` settles first, and never leaves a timer
 * behind: whichever comes first, the sleep is cancelled. `unless` may be undefined (a plain
 * sleep). A rejection of `unless` ends the wait like a resolution and is not rethrown: the
 * caller looks at the state it was waiting for. This is the one place Sluice waits "for
 * this, or at most that long".
 *
 * @param clock The clock to sleep on (a {@link ManualClock} in tests).
 * @param ms Longest wait, in the clock's milliseconds.
 * @param unless What ends the wait early.
 * @returns A promise that resolves when either happened.
 *
 * @example Wait for a promise, at most a while
 * ```ts
 * import { ManualClock, sleepUnless } from "./clock.ts";
 * import { assertEquals } from "@std/assert";
 * const clock = new ManualClock();
 * await sleepUnless(clock, 1_000, Promise.resolve()); // woken at once, at time 0
 * assertEquals([clock.now(), clock.pending], [0, 0]); // and no sleeper left behind
 * ```
 */
export async function sleepUnless(
  clock: Clock,
  ms: number,
  unless: Promise<unknown> | undefined,
): Promise<void> {
  if (unless === undefined) return clock.sleep(ms);
  const stop = new AbortController();
  try {
    await Promise.race([clock.sleep(ms, stop.signal), unless.then(noop, noop)]);
  } finally {
    stop.abort(WAKE_REASON);
  }
}

function noop(): void {}
