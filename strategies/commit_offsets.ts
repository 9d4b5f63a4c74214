/**
 * `CommitOffsets`: the terminal step that asks the processor to commit.
 *
 * @module
 */
import {
  BrokerValue,
  type Committable,
  EMPTY_COMMITTABLE,
  type Message,
  type Partition,
} from "../types.ts";
import type { Commit } from "./abstract.ts";
import { type StepOptions, StreamStep } from "./stream_step.ts";

/**
 * Commits the offsets of every message that reaches it (once per chunk, highest offset
 * per partition). `poll()` lets the commit policy commit staged offsets on time even when
 * the topic is idle; `join()` forces a final commit.
 *
 * @example End a pipeline by committing
 * ```ts
 * import { CommitOffsets, type ProcessingStrategyFactory } from "@sluice/sluice";
 * const factory: ProcessingStrategyFactory<unknown> = {
 *   createWithPartitions: (commit) => new CommitOffsets(commit),
 * };
 * ```
 */
export class CommitOffsets<T = unknown> extends StreamStep<T, never> {
  readonly #commit: Commit;

  /** Creates the step around the processor's `commit` callback. */
  constructor(commit: Commit, options?: StepOptions) {
    super("commit_offsets", undefined, options);
    this.#commit = commit;
  }

  /** Asks the processor to commit the highest offset per partition of the chunk. */
  protected process(batch: Message<T>[]): void {
    this.#commit(highestOffsets(batch));
  }

  /** Lets the commit policy commit on time even when no message arrives. */
  protected override onPoll(): void {
    this.#commit(EMPTY_COMMITTABLE);
  }

  /** Forces a commit of everything received (the pipeline is being joined). */
  protected override onDrained(): void {
    this.#commit(EMPTY_COMMITTABLE, true);
  }
}

/** The highest committable offset per partition over `batch`. */
export function highestOffsets(batch: readonly Message<unknown>[]): Committable {
  const out = new Map<Partition, number>();
  let lastP: Partition | undefined;
  let lastO = -1;
  for (let i = 0; i < batch.length; i++) {
    const v = batch[i].source;
    if (v instanceof BrokerValue) {
      if (v.partition === lastP) {
        if (v.offset + 1 > lastO) lastO = v.offset + 1;
        continue;
      }
      if (lastP !== undefined && (out.get(lastP) ?? -1) < lastO) out.set(lastP, lastO);
      lastP = v.partition;
      lastO = Math.max(v.offset + 1, out.get(lastP) ?? -1);
    } else {
      for (const [p, o] of v.committable) if ((out.get(p) ?? -1) < o) out.set(p, o);
    }
  }
  if (lastP !== undefined && (out.get(lastP) ?? -1) < lastO) out.set(lastP, lastO);
  return out;
}
