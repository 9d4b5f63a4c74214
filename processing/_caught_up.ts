/**
 * `run({ untilCaughtUp: true })`'s targets (private to `processing/`): per partition, the
 * end offset it had when the processor first saw it assigned, and whether the work done
 * reached them all.
 *
 * @module
 */
import type { Consumer } from "../backends/abstract.ts";
import { ConsumerError } from "../errors.ts";
import type { Partition } from "../types.ts";

/** The end offsets to reach, learned from the consumer as partitions are first seen assigned. */
export class CatchUpTargets {
  readonly #consumer: Consumer<unknown>;
  /** Per partition, the end offset when first seen assigned. */
  readonly #targets = new Map<Partition, number>();

  /** Targets of `consumer`'s partitions (it must have `endOffsets()`). */
  constructor(consumer: Consumer<unknown>) {
    this.#consumer = consumer;
  }

  /**
   * True when every partition of `assigned` has been processed up to its target, by
   * `finished` (where a partition's finished work ends). Asks the consumer for the end
   * offsets it lacks; throws {@link ConsumerError} when it gives none.
   */
  async reached(
    assigned: Iterable<Partition>,
    finished: (partition: Partition) => number,
  ): Promise<boolean> {
    const partitions = [...assigned];
    const missing = partitions.filter((p) => !this.#targets.has(p));
    if (missing.length > 0) {
      const ends = await this.#consumer.endOffsets!(missing);
      for (const p of missing) {
        const end = ends.get(p);
        if (typeof end !== "number" || !(end >= 0)) {
          throw new ConsumerError(
            `endOffsets() gave no end offset for ${p} (got ${end}); untilCaughtUp cannot tell ` +
              "when it has caught up",
          );
        }
        this.#targets.set(p, end);
      }
    }
    return partitions.every((p) => finished(p) >= this.#targets.get(p)!);
  }
}
