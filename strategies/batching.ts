/**
 * `BatchStep` and `UnbatchStep`: group messages into arrays, and split them again.
 *
 * @module
 */
import { Message } from "../types.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import type { StepOptions } from "./stream_step.ts";
import { Reduce } from "./reduce.ts";
import { Unfold } from "./unfold.ts";

/**
 * Options of a {@link BatchStep}: at least one of `maxBatchSize` and `maxBatchTimeMs`.
 *
 * @example Batches of at most 1 MiB of payload, or 1 second
 * ```ts
 * import { type BatchOptions, BatchStep, byteLength, Noop } from "@sluice/sluice";
 *
 * const options: BatchOptions<string> = {
 *   maxBatchSize: 1024 * 1024,
 *   maxBatchTimeMs: 1_000,
 *   computeBatchSize: byteLength,
 * };
 * const step = new BatchStep<string>(new Noop(), options);
 * step.terminate();
 * ```
 */
export interface BatchOptions<T> extends StepOptions {
  /** Hand on a batch once it holds this many messages (or units of `computeBatchSize`). */
  maxBatchSize?: number;
  /** Hand on a batch at the latest this many milliseconds after its first message. */
  maxBatchTimeMs?: number;
  /**
   * Size of one message in the unit of `maxBatchSize`.
   * @default () => 1
   */
  computeBatchSize?: (message: Message<T>) => number;
}

/**
 * Groups messages into arrays: a {@link Reduce} whose accumulator collects the original
 * messages (payload, partition, offset and timestamp intact). The batch message carries
 * the highest offset per partition of everything in it and the newest timestamp.
 * Filtered messages are not put in the array, but their offsets ride with the batch.
 *
 * @example Join payloads into text, 100 at a time
 * ```ts
 * import { BatchStep, CommitOffsets, type Message, RunTask } from "@sluice/sluice";
 *
 * const step = new BatchStep<string>(
 *   new RunTask(
 *     (batch: Message<Message<string>[]>) => batch.payload.map((m) => m.payload).join("\n"),
 *     new CommitOffsets(() => {}),
 *   ),
 *   { maxBatchSize: 100, maxBatchTimeMs: 1_000 },
 * );
 * ```
 */
export class BatchStep<T> extends Reduce<T, Message<T>[]> {
  /** Creates the step. */
  constructor(next: ProcessingStrategy<Message<T>[]>, options: BatchOptions<T>) {
    super(
      (acc: Message<T>[], m: Message<T>) => {
        acc.push(m);
        return acc;
      },
      () => [],
      next,
      { ...options, name: options?.name ?? "batch" },
    );
  }
}

/**
 * Splits a batch (an array of messages, as {@link BatchStep} builds) back into its
 * messages, in order. Each element keeps its own offsets, so each broker message commits
 * its own offset once it is processed; if the batch carried offsets beyond its last
 * element (filtered messages folded in), a filtered marker carrying them follows the last
 * element. When the next step rejects, the remaining elements are kept and handed on as
 * soon as it has room; the batch is never walked twice.
 *
 * @example Batch, then hand the messages on one by one
 * ```ts
 * import { BatchStep, CommitOffsets, UnbatchStep } from "@sluice/sluice";
 *
 * const pipeline = new BatchStep<string>(
 *   new UnbatchStep<string>(new CommitOffsets(() => {})),
 *   { maxBatchSize: 10 },
 * );
 * ```
 */
export class UnbatchStep<T> extends Unfold<Message<T>[], T> {
  /** Creates the step. */
  constructor(next: ProcessingStrategy<T>, options: StepOptions = {}) {
    super(
      (m: Message<Message<T>[]>) => m.payload as unknown as Iterable<T>,
      next,
      { ...options, name: options.name ?? "unbatch" },
    );
  }

  /** Elements are messages already: hand them on as they are. */
  protected override child(item: unknown): Message<T> {
    if (item instanceof Message) return item as Message<T>;
    throw new TypeError(
      `UnbatchStep expects a payload that is an array of messages (as BatchStep builds), ` +
        `found an element of type ${typeof item}`,
    );
  }
}
