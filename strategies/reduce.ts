/**
 * `Reduce`: folds messages into an accumulator and hands on one value per batch.
 *
 * @module
 */
import type { Message } from "../types.ts";
import { ConfigurationError } from "../errors.ts";
import { requireNonNegative, requirePositiveInteger } from "../_validate.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import type { StepOptions } from "./stream_step.ts";
import { isThenable } from "./thenable.ts";
import { type BufferProtocol, BufferStep } from "./buffer.ts";

/**
 * Options of a {@link Reduce} step: at least one of `maxBatchSize` and `maxBatchTimeMs`.
 *
 * @example Sum 500 messages, or what came within 200 ms
 * ```ts
 * import { type Message, Noop, Reduce, type ReduceOptions } from "@sluice/sluice";
 *
 * const options: ReduceOptions<number> = { maxBatchSize: 500, maxBatchTimeMs: 200 };
 * const sum = new Reduce((acc: number, m: Message<number>) => acc + m.payload, () => 0, new Noop(), options);
 * sum.terminate();
 * ```
 */
export interface ReduceOptions<TIn> extends StepOptions {
  /** Flush once the batch reaches this size (messages, or the unit of `computeBatchSize`). */
  maxBatchSize?: number;
  /**
   * Flush at the latest this many milliseconds after the batch's *first* message, from
   * `poll()` even when no new message arrives.
   */
  maxBatchTimeMs?: number;
  /**
   * Size of one message in the unit of `maxBatchSize` (bytes, rows...).
   * @default () => 1
   */
  computeBatchSize?: (message: Message<TIn>) => number;
}

/** The accumulator behind {@link Reduce}, as a {@link BufferProtocol}. */
class ReduceBuffer<TIn, TAcc> implements BufferProtocol<TIn, TAcc> {
  #acc: TAcc;
  #size = 0;

  readonly accumulator: (acc: TAcc, message: Message<TIn>) => TAcc | PromiseLike<TAcc>;
  readonly initialValue: () => TAcc;
  readonly maxBatchSize: number | undefined;
  readonly computeBatchSize: ((message: Message<TIn>) => number) | undefined;

  constructor(
    accumulator: (acc: TAcc, message: Message<TIn>) => TAcc | PromiseLike<TAcc>,
    initialValue: () => TAcc,
    maxBatchSize: number | undefined,
    computeBatchSize: ((message: Message<TIn>) => number) | undefined,
  ) {
    this.accumulator = accumulator;
    this.initialValue = initialValue;
    this.maxBatchSize = maxBatchSize;
    this.computeBatchSize = computeBatchSize;
    try {
      this.#acc = this.#initial();
    } catch (e) {
      if (!(e instanceof TypeError)) throw e;
      throw new ConfigurationError(e.message);
    }
  }

  append(message: Message<TIn>): void | Promise<void> {
    // Size first: if it throws, the accumulator has not seen the message yet.
    const n = this.computeBatchSize === undefined ? 1 : this.computeBatchSize(message);
    if (typeof n !== "number") {
      throw new TypeError(
        `computeBatchSize must return a number synchronously, got ${
          isThenable(n) ? "a promise" : typeof n
        }`,
      );
    }
    const acc = this.accumulator(this.#acc, message);
    if (isThenable(acc)) {
      // Awaited by the step before the next message is folded in.
      return Promise.resolve(acc).then((a) => {
        this.#acc = a;
        this.#size += n;
      });
    }
    this.#acc = acc;
    this.#size += n;
  }

  #initial(): TAcc {
    const acc = this.initialValue();
    if (isThenable(acc)) {
      throw new TypeError(
        "initialValue returned a promise; it must return a fresh accumulator synchronously " +
          "(e.g. () => 0 or () => new Map()); fold asynchronously in the accumulator instead",
      );
    }
    return acc;
  }

  isReady(): boolean {
    return this.maxBatchSize !== undefined && this.#size >= this.maxBatchSize;
  }

  flush(): TAcc {
    const out = this.#acc;
    this.#size = 0;
    this.#acc = this.#initial();
    return out;
  }
}

function reduceBuffer<TIn, TAcc>(
  accumulator: (acc: TAcc, message: Message<TIn>) => TAcc | PromiseLike<TAcc>,
  initialValue: () => TAcc,
  options: ReduceOptions<TIn>,
): ReduceBuffer<TIn, TAcc> {
  const what = `step "${options?.name ?? "reduce"}"`;
  if (typeof accumulator !== "function") {
    throw new ConfigurationError(`${what}: accumulator must be a function (acc, message) => acc`);
  }
  if (typeof initialValue !== "function") {
    throw new ConfigurationError(
      `${what}: initialValue must be a function returning a fresh accumulator, e.g. () => 0 ` +
        `or () => new Map() (a shared object would leak between batches)`,
    );
  }
  const { maxBatchSize, maxBatchTimeMs, computeBatchSize } = options ?? {};
  if (maxBatchSize === undefined && maxBatchTimeMs === undefined) {
    throw new ConfigurationError(
      `${what}: set maxBatchSize and/or maxBatchTimeMs, e.g. { maxBatchSize: 500, maxBatchTimeMs: 200 }`,
    );
  }
  if (maxBatchSize !== undefined) requirePositiveInteger(`${what}: maxBatchSize`, maxBatchSize);
  if (maxBatchTimeMs !== undefined) requireNonNegative(`${what}: maxBatchTimeMs`, maxBatchTimeMs);
  if (computeBatchSize !== undefined && typeof computeBatchSize !== "function") {
    throw new ConfigurationError(
      `${what}: computeBatchSize must be a function (message) => number`,
    );
  }
  return new ReduceBuffer(accumulator, initialValue, maxBatchSize, computeBatchSize);
}

/**
 * Folds messages with `accumulator`, starting each batch from `initialValue()`, and hands
 * on the result when the batch reaches `maxBatchSize` or `maxBatchTimeMs` has passed since
 * its first message, whichever comes first, and in `join`.
 *
 * - The result is a `Value` carrying the highest offset per partition of every message it
 *   folded (filtered ones included) and the newest timestamp; committing it commits the
 *   whole batch, and nothing of the batch is committed before.
 * - A batch due by time is flushed from `poll()` even when no new message arrives. The
 *   clock starts at the batch's first message, not when the previous batch was flushed.
 * - Filtered messages are folded into the pending batch's offsets, never passed ahead of it.
 * - The accumulator may be `async` (or return a promise of the new accumulator): it is
 *   awaited before the next message is folded in, in input order, and the queue holds
 *   upstream back meanwhile; a rejection fails the step with a `StepError` naming the
 *   message, and the batch is not handed on. `initialValue` and `computeBatchSize` must
 *   be synchronous (a promise from them fails the step with a `TypeError` cause).
 * - The accumulator runs once per message; when the next step rejects a result, the
 *   result is kept and retried. It may throw `MessageRejected` to hold a message until the
 *   next `poll()`, or `InvalidMessage` (the batch so far is flushed first).
 * - Other errors from `accumulator`, `initialValue` or `computeBatchSize` surface in
 *   `poll()` as a `StepError` naming the step and the message.
 *
 * @example Count per key
 * ```ts
 * import { CommitOffsets, type Message, Reduce } from "@sluice/sluice";
 *
 * // Counts per key, per batch of 500 messages or 200 ms, whichever comes first.
 * const counts = new Reduce(
 *   (acc: Map<string, number>, m: Message<string>) => acc.set(m.payload, (acc.get(m.payload) ?? 0) + 1),
 *   () => new Map<string, number>(),
 *   new CommitOffsets(() => {}),
 *   { maxBatchSize: 500, maxBatchTimeMs: 200 },
 * );
 * ```
 */
export class Reduce<TIn, TAcc> extends BufferStep<TIn, TAcc> {
  /** Creates the step. `accumulator` returns the new accumulator or a promise of it. */
  constructor(
    accumulator: (acc: TAcc, message: Message<TIn>) => TAcc | PromiseLike<TAcc>,
    initialValue: () => TAcc,
    next: ProcessingStrategy<TAcc>,
    options: ReduceOptions<TIn>,
  ) {
    super(reduceBuffer(accumulator, initialValue, options), next, {
      ...options,
      name: options?.name ?? "reduce",
      maxBufferTimeMs: options?.maxBatchTimeMs,
    });
  }
}
