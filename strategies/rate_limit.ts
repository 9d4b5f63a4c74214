/**
 * `RateLimit`: a token bucket in front of the next step.
 *
 * @module
 */
import type { Message } from "../types.ts";
import { ConfigurationError, MessageRejected } from "../errors.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { DEFAULT_HIGH_WATER_MARK, type StepOptions, StreamStep } from "./stream_step.ts";
import { requireSync } from "./thenable.ts";

/**
 * Options of a {@link RateLimit}. Its queue's `highWaterMark` defaults to `capacity` (at
 * most 1024): about one burst waits in the step.
 *
 * @example A quota of 1 MB per second, in bursts of up to 256 KB
 * ```ts
 * import { byteLength, Noop, RateLimit, type RateLimitOptions } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const options: RateLimitOptions<string> = {
 *   ratePerSecond: 1_000_000,
 *   capacity: 256_000,
 *   cost: byteLength,
 * };
 * const step = new RateLimit(new Noop(), options);
 * assertEquals(step.capacity, 256_000);
 * step.terminate();
 * ```
 */
export interface RateLimitOptions<T> extends StepOptions {
  /** Tokens added per second: the long-run average rate. Required, > 0. */
  ratePerSecond: number;
  /**
   * Most tokens the bucket holds: the largest burst.
   * @default max(1, ratePerSecond)
   */
  capacity?: number;
  /**
   * Tokens one message costs (for example its byte length, for a bytes-per-second
   * quota). Filtered messages are free. A cost above `capacity` fails the step.
   * Synchronous: a promise fails the step with a `ConfigurationError`.
   * @default () => 1
   */
  cost?: (message: Message<T>) => number;
}

/**
 * Lets messages through to the next step no faster than a token bucket allows: up to
 * `capacity` at once (a burst), then `ratePerSecond` on average, so the calls downstream
 * stay under a quota.
 *
 * When the bucket is empty the step waits **on its clock** for the next token; its queue
 * fills, `submit` rejects, and the processor waits on `ready` — which resolves when the
 * waiting messages have been let through at the next tokens' times. Nothing spins and
 * nothing is lost: a waiting message is only delayed. Counters: `admitted`, `delayed`
 * (messages that had to wait for a token), `rejected` (submits refused while full) and
 * `waitedMs`.
 *
 * @example At most 50 calls per second
 * ```ts
 * import { CommitOffsets, RateLimit, RunTask } from "@sluice/sluice";
 * // At most 50 calls per second to the API, bursts of 10.
 * const pipeline = new RateLimit(
 *   new RunTask((m: { payload: string }) => m.payload, new CommitOffsets(() => {})),
 *   { ratePerSecond: 50, capacity: 10, highWaterMark: 100 },
 * );
 * ```
 */
export class RateLimit<T> extends StreamStep<T, T> {
  /** Tokens added per second. */
  readonly ratePerSecond: number;
  /** Bucket capacity (largest burst). */
  readonly capacity: number;
  /** Messages let through so far (filtered ones included). */
  admitted = 0;
  /** Messages that waited for a token. */
  delayed = 0;
  /** Times `submit` was refused because the queue was full. */
  rejected = 0;
  /** Total milliseconds spent waiting for tokens (on the step's clock). */
  waitedMs = 0;

  readonly #cost: ((message: Message<T>) => number) | undefined;
  #tokens: number;
  #refilledAt: number;

  /** Creates the step in front of `next`. */
  constructor(next: ProcessingStrategy<T>, options: RateLimitOptions<T>) {
    // Default queue: about one burst (the capacity, at most 1024 messages), so a slow rate
    // does not build a backlog of minutes inside the step.
    const burst = options?.capacity ?? Math.max(1, options?.ratePerSecond ?? 1);
    const queue = options?.highWaterMark === undefined && options?.size === undefined &&
        typeof burst === "number" && burst >= 1 && isFinite(burst)
      ? { ...options, highWaterMark: Math.min(DEFAULT_HIGH_WATER_MARK, Math.ceil(burst)) }
      : options;
    super("rate_limit", next, queue);
    const { ratePerSecond } = options ?? {};
    if (typeof ratePerSecond !== "number" || !(ratePerSecond > 0) || !isFinite(ratePerSecond)) {
      throw new ConfigurationError(
        `step "${this.name}": ratePerSecond must be a finite number > 0, got ${
          String(ratePerSecond)
        }; it is the average number of tokens (messages) per second`,
      );
    }
    const capacity = options.capacity ?? Math.max(1, ratePerSecond);
    if (typeof capacity !== "number" || !(capacity >= 1) || !isFinite(capacity)) {
      throw new ConfigurationError(
        `step "${this.name}": capacity must be a finite number >= 1, got ${
          String(capacity)
        }; it is the largest burst, in tokens`,
      );
    }
    if (options.cost !== undefined && typeof options.cost !== "function") {
      throw new ConfigurationError(
        `step "${this.name}": cost must be a function (message) => number`,
      );
    }
    this.ratePerSecond = ratePerSecond;
    this.capacity = capacity;
    this.#cost = options.cost;
    this.#tokens = capacity;
    this.#refilledAt = this.clock.now();
  }

  /** Tokens available now (fractional). */
  get tokens(): number {
    this.#refill();
    return this.#tokens;
  }

  /** Queues a message; throws `MessageRejected` (counted in `rejected`) when the queue is full. */
  override submit(message: Message<T>): void {
    try {
      super.submit(message);
    } catch (e) {
      if (e instanceof MessageRejected) this.rejected++;
      throw e;
    }
  }

  /** Lets each message through when a token is available, else waits on the clock. */
  protected process(batch: Message<T>[]): void | Promise<void> {
    this.#refill(); // once per chunk; the slow path refills again before it waits
    for (let i = 0; i < batch.length; i++) {
      const m = batch[i];
      const cost = this.#costOf(m);
      if (this.#tokens + 1e-9 < cost) return this.#slow(batch, i);
      this.#tokens = Math.max(0, this.#tokens - cost);
      this.admitted++;
      if (!this.emit(m)) return this.#slow(batch, i + 1, m);
    }
  }

  async #slow(batch: Message<T>[], i: number, held?: Message<T>): Promise<void> {
    if (held !== undefined) {
      await this.emitWhenRoom(held);
      if (this.abandoned) return;
    }
    for (; i < batch.length; i++) {
      const m = batch[i];
      const cost = this.#costOf(m);
      if (!this.#take(cost)) {
        this.delayed++;
        const start = this.clock.now();
        while (!this.#take(cost)) {
          await this.sleepUntil(this.#dueAt(cost));
          if (this.abandoned) return;
        }
        this.waitedMs += this.clock.now() - start;
      }
      this.admitted++;
      await this.emitWhenRoom(m);
      if (this.abandoned) return;
    }
  }

  #costOf(m: Message<T>): number {
    if (m.filtered || this.#cost === undefined) return m.filtered ? 0 : 1;
    const cost = requireSync(
      this.name,
      "cost()",
      "a number",
      "Compute the cost from the message itself.",
      this.#cost(m),
    );
    if (!(cost >= 0) || cost > this.capacity) {
      throw new ConfigurationError(
        `step "${this.name}": cost ${cost} of message ${m} is not between 0 and capacity ` +
          `${this.capacity}; raise capacity or lower the cost`,
      );
    }
    return cost;
  }

  #refill(): void {
    const now = this.clock.now();
    const elapsed = now - this.#refilledAt;
    if (elapsed > 0) {
      this.#tokens = Math.min(this.capacity, this.#tokens + elapsed * this.ratePerSecond / 1000);
      this.#refilledAt = now;
    }
  }

  #take(cost: number): boolean {
    this.#refill();
    // A tiny tolerance absorbs floating-point error: a token due at t is available at t.
    if (this.#tokens + 1e-9 < cost) return false;
    this.#tokens = Math.max(0, this.#tokens - cost);
    return true;
  }

  /** When `cost` tokens will be available, on the step's clock. */
  #dueAt(cost: number): number {
    return this.#refilledAt + Math.ceil((cost - this.#tokens) * 1000 / this.ratePerSecond);
  }
}
