/**
 * `Noop`: a terminal step that accepts messages and does nothing with them.
 *
 * @module
 */
import type { Message } from "../types.ts";
import { type StepOptions, StreamStep } from "./stream_step.ts";

/**
 * Accepts and discards every message; commits nothing. Useful as a placeholder next step
 * in tests, or for a pipeline whose last step commits by other means.
 *
 * @example End a pipeline without committing
 * ```ts
 * import { Noop, RunTask } from "@sluice/sluice";
 * const step = new RunTask((m: { payload: number }) => m.payload + 1, new Noop());
 * ```
 */
export class Noop<T = unknown> extends StreamStep<T, never> {
  /** Creates the step. */
  constructor(options?: StepOptions) {
    super("noop", undefined, options);
  }

  /** Messages accepted so far. */
  count = 0;

  /** Counts the messages and drops them. */
  protected process(batch: Message<T>[]): void {
    this.count += batch.length;
  }
}
