/**
 * The processing-strategy contract (Arroyo's, in TypeScript).
 *
 * @module
 */
import type { Committable, Message, Partition } from "../types.ts";

/**
 * Asks the processor to commit offsets (partition → next offset to read). The processor
 * stages them and commits according to its `CommitPolicy`, or at once when `force` is set.
 *
 * @example See what a pipeline asks to commit
 * ```ts
 * import { BrokerValue, type Commit, CommitOffsets, type Committable } from "@sluice/sluice";
 * import { Partition } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const asked: Committable[] = [];
 * const commit: Commit = (offsets) => asked.push(offsets);
 * const p = Partition.of("t", 0);
 * const step = new CommitOffsets(commit);
 * await ReadableStream.from([new BrokerValue("a", p, 0, 0)]).pipeTo(step.writable);
 * assertEquals(asked.some((offsets) => offsets.get(p) === 1), true); // next offset to read
 * ```
 */
export type Commit = (offsets: Committable, force?: boolean) => void;

/**
 * One step of a pipeline. Steps are chained: each one forwards its output to the next by
 * calling the next step's `submit`.
 *
 * @example A step typed by what it accepts
 * ```ts
 * import { CommitOffsets, Message, type ProcessingStrategy, RunTask } from "@sluice/sluice";
 * const step: ProcessingStrategy<string> = new RunTask(
 *   (m: Message<string>) => m.payload.length,
 *   new CommitOffsets(() => {}),
 * );
 * ```
 */
export interface ProcessingStrategy<T> {
  /**
   * Hands a message to the step. Synchronous; throws `MessageRejected` when the step cannot
   * take it now (the caller keeps the message and retries after `ready`). Returning does
   * not mean the message was processed.
   *
   * Declared as a property (not a method) on purpose: TypeScript then checks it
   * contravariantly, so a step that handles `Message<string>` is not accepted where
   * `Message<string | null>` will be submitted.
   */
  submit: (message: Message<T>) => void;
  /**
   * Optional: submits `messages[from]`, `messages[from + 1]`, ... in order, as `submit`
   * would one by one, and stops at the first one the step cannot take now. Returns the
   * index of the first message not taken (`messages.length` when all were). A full step
   * is not an error here: the caller keeps the rest and retries after `ready`. Other
   * errors are thrown as from `submit`, before any message is taken. The processor uses it
   * when present; the built-in steps have it.
   */
  submitMany?: (messages: readonly Message<T>[], from: number) => number;
  /** Non-blocking housekeeping: drives timers, forwards finished work, rethrows async failures. */
  poll(): void;
  /** No more messages will be submitted. Does not block. */
  close(): void;
  /**
   * Waits until everything submitted before `close` is processed and handed on (and the
   * next steps are joined), or until `timeoutMs` has passed; work not finished by then is
   * abandoned and not committed.
   */
  join(timeoutMs?: number): Promise<void>;
  /** Abandons all work at once; nothing more is committed. */
  terminate(): void;
  /** Resolves when `submit` would accept again. */
  readonly ready: Promise<void>;
  /**
   * Optional, for pipelines of an {@link ProcessingStrategyFactory.incremental} factory:
   * `partitions` (partition → first offset) joined the assignment; their messages follow.
   * Called on the first step only; a step that keeps per-partition state forwards it.
   */
  addPartitions?(partitions: ReadonlyMap<Partition, number>): void;
  /**
   * Optional, for pipelines of an {@link ProcessingStrategyFactory.incremental} factory:
   * `partitions` are being revoked. No more of their messages come; the step should finish
   * (flush) what it holds of them now, so that their work is committed before the
   * partitions are released. Called on the first step only.
   */
  removePartitions?(partitions: readonly Partition[]): void;
}

/**
 * Builds a pipeline for the partitions currently assigned. Called on every assignment;
 * the previous pipeline is closed and joined first.
 *
 * @example Build a pipeline per assignment
 * ```ts
 * import { CommitOffsets, type ProcessingStrategyFactory, RunTask } from "@sluice/sluice";
 * const factory: ProcessingStrategyFactory<string> = {
 *   createWithPartitions: (commit) => new RunTask((m) => m.payload, new CommitOffsets(commit)),
 * };
 * ```
 */
export interface ProcessingStrategyFactory<T> {
  /** Creates the pipeline; `partitions` maps each assigned partition to its next offset. */
  createWithPartitions(
    commit: Commit,
    partitions: ReadonlyMap<Partition, number>,
  ): ProcessingStrategy<T>;
  /** Called once when the processor stops, on success or failure. */
  shutdown?(): void | Promise<void>;
  /**
   * The pipeline follows a partial assignment change without being recreated (incremental,
   * or cooperative, rebalancing). Set it only when the pipeline (1) accepts messages of
   * partitions it was not created with and (2) finishes, and commits, the work of every
   * message it accepted without being closed (a time-bounded batch does; a batch that waits
   * for its size alone does not, unless it implements
   * {@link ProcessingStrategy.removePartitions}).
   *
   * With it, on a revoke of some partitions the processor stops handing out their messages,
   * waits (at most `joinTimeoutMs`) until their accepted work is committed, commits, and only
   * then lets them go, while the pipeline keeps processing the other partitions; newly
   * assigned partitions just join the running pipeline. Without it (the default, Arroyo's
   * contract), every assignment change closes, joins and recreates the pipeline. If the
   * wait times out, the processor falls back to that: the pipeline is closed, joined and
   * recreated, and kept partitions' unfinished work is read again.
   * @default false
   */
  incremental?: boolean;
}
