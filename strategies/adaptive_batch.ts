/**
 * `AdaptiveBatch`: batches for a sink whose best batch size is not known ahead, sized
 * towards a target processing time per batch.
 *
 * @module
 */
import {
  BrokerValue,
  FILTERED_PAYLOAD,
  type Message,
  type Partition,
  StepError,
  Value,
} from "../types.ts";
import { ConfigurationError } from "../errors.ts";
import { requireNonNegative, requirePositiveInteger } from "../_validate.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { type StepOptions, StreamStep } from "./stream_step.ts";

/**
 * Options of an {@link AdaptiveBatch}.
 *
 * @example Bulk inserts aiming at 200 ms each
 * ```ts
 * import { AdaptiveBatch, type AdaptiveBatchOptions, Noop } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const options: AdaptiveBatchOptions = {
 *   targetMs: 200,
 *   minSize: 10,
 *   maxSize: 5_000,
 *   maxWaitMs: 500,
 * };
 * const step = new AdaptiveBatch((rows: string[]) => rows.length, new Noop(), options);
 * assertEquals(step.targetMs, 200);
 * ```
 */
export interface AdaptiveBatchOptions extends StepOptions {
  /** The processing time to aim for per batch, in milliseconds. Required, > 0. */
  targetMs: number;
  /**
   * Smallest batch size.
   * @default 1
   */
  minSize?: number;
  /**
   * Largest batch size.
   * @default 10000
   */
  maxSize?: number;
  /**
   * Size of the first batch.
   * @default 10, clamped to [minSize, maxSize]
   */
  initialSize?: number;
  /**
   * Longest a partial batch waits for more messages (from its first message), in
   * milliseconds; then it is processed as it is.
   * @default 1000
   */
  maxWaitMs?: number;
  /**
   * No change while a batch's time is within this fraction of `targetMs` (0.1 = ±10%),
   * so the size settles instead of oscillating.
   * @default 0.1
   */
  tolerance?: number;
  /**
   * Largest factor the size may grow or shrink by after one batch.
   * @default 2
   */
  maxStep?: number;
}

/**
 * One processed batch, as recorded in {@link AdaptiveBatch.history}.
 *
 * @example Read the history after a run
 * ```ts
 * import { AdaptiveBatch, type BatchRecord, BrokerValue, Noop, Partition } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const step = new AdaptiveBatch((rows: string[]) => rows.length, new Noop(), {
 *   targetMs: 100,
 *   initialSize: 2,
 * });
 * const p = Partition.of("t", 0);
 * const messages = ["a", "b", "c"].map((s, i) => new BrokerValue(s, p, i, 0));
 * await ReadableStream.from(messages).pipeTo(step.writable);
 * const first: BatchRecord = step.history[0];
 * assertEquals([first.size, first.full], [2, true]);
 * ```
 */
export interface BatchRecord {
  /** Messages in the batch. */
  size: number;
  /** Its processing time, in milliseconds on the step's clock. */
  elapsedMs: number;
  /** The batch size chosen for the next batches. */
  nextSize: number;
  /** True when the batch was full (false: flushed by time or at the end). */
  full: boolean;
  /** When it finished, on the step's clock. */
  at: number;
}

const HISTORY_KEPT = 1000;

/**
 * Collects messages into batches and calls `fn` once per batch (a bulk insert, say),
 * timing each call on the step's clock. After a full batch that finished early the size
 * grows; after any batch that finished late it shrinks — proportionally to how far off
 * the target it was, at most by `maxStep`, within `[minSize, maxSize]`, and not at all
 * within `tolerance` of the target. For a sink whose time grows with the batch size, the
 * size converges on the largest batch that still fits the target time.
 *
 * `fn(payloads, messages, signal)`: `signal` aborts when the step is terminated, its
 * `join` gives up or it fails. `fn`'s result is forwarded as one message whose committable covers the whole batch
 * (offsets of filtered messages in between included). While `fn` runs the step holds its
 * queue, so a slow sink backpressures the consumer. A partial batch is processed after
 * `maxWaitMs`, and on `join`. `batchSize` is the current size; `history` the recent
 * batches (size, time, next size).
 *
 * @example Bulk inserts sized to take about 200 ms
 * ```ts
 * import { AdaptiveBatch, CommitOffsets } from "@sluice/sluice";
 * const insert = async (rows: string[]) => {
 *   // await db.insertMany(rows);
 *   return rows.length;
 * };
 * const pipeline = new AdaptiveBatch(insert, new CommitOffsets(() => {}), {
 *   targetMs: 200, // aim for 200 ms per bulk insert
 *   minSize: 10,
 *   maxSize: 5_000,
 * });
 * ```
 */
export class AdaptiveBatch<TIn, TOut> extends StreamStep<TIn, TOut> {
  /** The target processing time per batch, in milliseconds. */
  readonly targetMs: number;
  /** Smallest batch size. */
  readonly minSize: number;
  /** Largest batch size. */
  readonly maxSize: number;
  /** Batches processed so far. */
  batches = 0;
  /** The most recent batches (up to 1000), oldest first. */
  readonly history: BatchRecord[] = [];

  readonly #fn: (
    payloads: TIn[],
    messages: Message<TIn>[],
    signal: AbortSignal,
  ) => TOut | Promise<TOut>;
  readonly #maxWaitMs: number;
  readonly #tolerance: number;
  readonly #maxStep: number;
  #size: number;
  #batch: Message<TIn>[] = [];
  #offsets = new Map<Partition, number>();
  #runPartition: Partition | undefined;
  #runOffset = 0;
  #lastTimestamp: number | undefined;
  #startedAt = 0;
  #busy: Promise<void> | undefined;

  /** Creates the step: `fn` processes one batch, `next` receives its result. */
  constructor(
    fn: (
      payloads: TIn[],
      messages: Message<TIn>[],
      signal: AbortSignal,
    ) => TOut | Promise<TOut>,
    next: ProcessingStrategy<TOut>,
    options: AdaptiveBatchOptions,
  ) {
    super("adaptive_batch", next, options);
    if (typeof fn !== "function") {
      throw new ConfigurationError(
        `step "${this.name}": fn must be a function (payloads) => result`,
      );
    }
    this.#fn = fn;
    const n = this.name;
    const { targetMs } = options ?? {};
    if (typeof targetMs !== "number" || !(targetMs > 0) || !isFinite(targetMs)) {
      throw new ConfigurationError(
        `step "${n}": targetMs must be a finite number > 0, got ${
          String(targetMs)
        }; it is the processing time to aim for per batch, in milliseconds`,
      );
    }
    this.targetMs = targetMs;
    this.minSize = requirePositiveInteger(`step "${n}": minSize`, options.minSize ?? 1);
    this.maxSize = requirePositiveInteger(`step "${n}": maxSize`, options.maxSize ?? 10_000);
    if (this.maxSize < this.minSize) {
      throw new ConfigurationError(
        `step "${n}": maxSize (${this.maxSize}) must be >= minSize (${this.minSize})`,
      );
    }
    const initial = requirePositiveInteger(
      `step "${n}": initialSize`,
      options.initialSize ?? Math.min(this.maxSize, Math.max(this.minSize, 10)),
    );
    if (initial < this.minSize || initial > this.maxSize) {
      throw new ConfigurationError(
        `step "${n}": initialSize ${initial} is outside [minSize ${this.minSize}, maxSize ${this.maxSize}]`,
      );
    }
    this.#size = initial;
    this.#maxWaitMs = requireNonNegative(`step "${n}": maxWaitMs`, options.maxWaitMs ?? 1000);
    const tolerance = options.tolerance ?? 0.1;
    if (!(tolerance >= 0 && tolerance < 1)) {
      throw new ConfigurationError(`step "${n}": tolerance must be in [0, 1), got ${tolerance}`);
    }
    this.#tolerance = tolerance;
    const maxStep = options.maxStep ?? 2;
    if (!(maxStep > 1 && isFinite(maxStep))) {
      throw new ConfigurationError(
        `step "${n}": maxStep must be a finite number > 1, got ${maxStep}`,
      );
    }
    this.#maxStep = maxStep;
  }

  /** The batch size in use now. */
  get batchSize(): number {
    return this.#size;
  }

  /** Adds messages to the batch, processing it whenever it reaches the current size. */
  protected process(chunk: Message<TIn>[]): void | Promise<void> {
    if (this.#busy !== undefined) return this.#after(this.#busy, chunk, 0);
    for (let i = 0; i < chunk.length; i++) {
      this.#add(chunk[i]);
      if (this.#batch.length >= this.#size) {
        const r = this.#flush(true);
        if (r !== undefined) return this.#after(r, chunk, i + 1);
      }
    }
  }

  /** Processes a partial batch that has waited `maxWaitMs`. */
  protected override onPoll(): void {
    if (this.#busy !== undefined || this.#empty()) return;
    if (this.clock.now() - this.#startedAt < this.#maxWaitMs) return;
    let r: Promise<void> | undefined;
    try {
      r = this.#flush(false);
    } catch (e) {
      this.fail(e);
      throw e;
    }
    if (r !== undefined) {
      const busy: Promise<void> = this.#busy = r.then(
        () => {
          if (this.#busy === busy) this.#busy = undefined;
        },
        (e) => {
          if (this.#busy === busy) this.#busy = undefined;
          this.fail(e);
        },
      );
    }
  }

  /** On `join`, processes the partial batch. */
  protected override async onDrained(): Promise<void> {
    while (this.#busy !== undefined && !this.abandoned) await this.#busy;
    if (!this.#empty() && !this.abandoned) await this.#flush(false);
  }

  async #after(wait: Promise<void>, chunk: Message<TIn>[], i: number): Promise<void> {
    await wait;
    while (this.#busy !== undefined && !this.abandoned) await this.#busy;
    for (; i < chunk.length; i++) {
      if (this.abandoned) return;
      this.#add(chunk[i]);
      if (this.#batch.length >= this.#size) await this.#flush(true);
    }
  }

  #add(m: Message<TIn>): void {
    if (this.#empty()) this.#startedAt = this.clock.now();
    const v = m.source;
    if (v instanceof BrokerValue) {
      // Consecutive messages of one partition: one map update per run, at its end.
      const p = v.partition;
      if (p !== this.#runPartition) {
        this.#endRun();
        this.#runPartition = p;
        this.#runOffset = v.offset + 1;
      } else if (v.offset + 1 > this.#runOffset) this.#runOffset = v.offset + 1;
    } else {
      this.#endRun();
      for (const [p, o] of v.committable) {
        if ((this.#offsets.get(p) ?? -1) < o) this.#offsets.set(p, o);
      }
    }
    const t = v.timestamp;
    if (t !== undefined) this.#lastTimestamp = t;
    if (!m.filtered) this.#batch.push(m);
  }

  /** True when nothing (no message, no offset) is waiting in the batch. */
  #empty(): boolean {
    return this.#runPartition === undefined && this.#offsets.size === 0;
  }

  /** Folds the current partition run into the batch's offsets. */
  #endRun(): void {
    const p = this.#runPartition;
    if (p === undefined) return;
    this.#runPartition = undefined;
    if ((this.#offsets.get(p) ?? -1) < this.#runOffset) this.#offsets.set(p, this.#runOffset);
  }

  /** Processes the current batch; synchronous (undefined) when `fn` is and the next step accepts. */
  #flush(full: boolean): Promise<void> | undefined {
    this.#endRun();
    const batch = this.#batch;
    const offsets = this.#offsets;
    const timestamp = this.#lastTimestamp;
    this.#batch = [];
    this.#offsets = new Map();
    this.#lastTimestamp = undefined;
    if (batch.length === 0) {
      const marker = new Value(FILTERED_PAYLOAD as unknown as TOut, offsets, timestamp);
      return this.emit(marker) ? undefined : this.emitWhenRoom(marker);
    }
    const start = this.clock.now();
    let result: TOut | Promise<TOut>;
    try {
      result = this.#fn(batch.map((m) => m.payload), batch, this.signal);
    } catch (e) {
      throw this.#wrap(e, batch);
    }
    const finish = (out: TOut): Promise<void> | undefined => {
      this.#record(batch.length, this.clock.now() - start, full);
      const m = new Value(out, offsets, timestamp);
      return this.emit(m) ? undefined : this.emitWhenRoom(m);
    };
    if (result instanceof Promise) {
      return result.then(finish, (e) => {
        throw this.#wrap(e, batch);
      });
    }
    return finish(result);
  }

  #wrap(e: unknown, batch: Message<TIn>[]): unknown {
    if (e instanceof StepError) return e;
    const last = batch[batch.length - 1];
    return new StepError(this.name, `batch of ${batch.length} (${batch[0]} .. ${last})`, e);
  }

  #record(n: number, elapsed: number, full: boolean): void {
    const target = this.targetMs;
    let size = this.#size;
    if (elapsed > target * (1 + this.#tolerance)) {
      size = Math.floor(n * Math.max(1 / this.#maxStep, target / elapsed));
    } else if (full && elapsed < target * (1 - this.#tolerance)) {
      const ratio = elapsed > 0 ? Math.min(this.#maxStep, target / elapsed) : this.#maxStep;
      size = Math.max(n + 1, Math.floor(n * ratio));
    }
    this.#size = Math.min(this.maxSize, Math.max(this.minSize, size));
    this.batches++;
    this.history.push({
      size: n,
      elapsedMs: elapsed,
      nextSize: this.#size,
      full,
      at: this.clock.now(),
    });
    if (this.history.length > HISTORY_KEPT) this.history.shift();
  }
}
