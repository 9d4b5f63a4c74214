/**
 * `FilterStep`: drops messages a predicate rejects, still committing their offsets.
 *
 * @module
 */
import {
  BrokerValue,
  FILTERED_PAYLOAD,
  InvalidMessage,
  type Message,
  type Partition,
  Value,
} from "../types.ts";
import { MessageRejected } from "../errors.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { HOLD, type StepOptions } from "./stream_step.ts";
import { MapStep, SKIP, type TransformResult } from "./map_step.ts";
import { isThenable } from "./thenable.ts";

/**
 * Forwards the messages for which `predicate` returns true. Dropped messages are counted
 * (`dropped`) and their offsets are still carried forward (as one filtered marker per
 * chunk), so a fully filtered stream keeps committing.
 *
 * `predicate` may be `async` (a lookup, say): the step awaits it before it tests the next
 * message, keeping input order, and holds upstream back meanwhile. A rejection fails the
 * step with a `StepError` naming the message (`MessageRejected` holds the message and
 * `InvalidMessage` reports it, as when thrown).
 *
 * @example Keep some messages, synchronously or not
 * ```ts
 * import { CommitOffsets, FilterStep, type Message } from "@sluice/sluice";
 * const blocklist = { has: async (id: string): Promise<boolean> => id === "spam" }; // a service
 *
 * const even = new FilterStep(
 *   (m: Message<number>) => m.payload % 2 === 0,
 *   new CommitOffsets(() => {}),
 *   { name: "even-only" },
 * );
 * const allowed = new FilterStep(
 *   async (m: Message<string>) => !(await blocklist.has(m.payload)),
 *   new CommitOffsets(() => {}),
 * );
 * ```
 */
export class FilterStep<T> extends MapStep<T, T> {
  readonly #predicate: (message: Message<T>) => boolean | PromiseLike<boolean>;
  #carried = new Map<Partition, number>();
  /** Messages dropped by the predicate so far (also the `sluice.step.dropped` metric). */
  dropped = 0;
  #droppedInChunk = 0;

  /** Creates the step. `predicate` returns a boolean or a promise of one. */
  constructor(
    predicate: (message: Message<T>) => boolean | PromiseLike<boolean>,
    next: ProcessingStrategy<T>,
    options?: StepOptions,
  ) {
    super("filter", next, options);
    this.#predicate = predicate;
  }

  /** Keeps a message when the predicate holds; else records its offset as dropped. */
  protected transform(m: Message<T>): TransformResult<T> {
    if (m.filtered) return this.#decide(m, false);
    let keep: boolean | PromiseLike<boolean>;
    try {
      keep = this.#predicate(m);
    } catch (e) {
      if (e instanceof MessageRejected) return HOLD;
      if (e instanceof InvalidMessage) return e;
      throw this.wrapError(e, m);
    }
    if (isThenable(keep)) return this.settle(keep, m, (k) => this.#decide(m, k, true));
    if (!keep) {
      this.dropped++;
      this.#droppedInChunk++;
    }
    return this.#decide(m, keep);
  }

  #decide(m: Message<T>, keep: boolean, count = false): Message<T> | typeof SKIP {
    if (count && !keep) {
      this.dropped++;
      this.#droppedInChunk++;
    }
    const v = m.source;
    if (keep) {
      if (this.#carried.size > 0) {
        if (v instanceof BrokerValue) this.#carried.delete(v.partition);
        else for (const p of v.committable.keys()) this.#carried.delete(p);
      }
      return m;
    }
    if (v instanceof BrokerValue) this.#carried.set(v.partition, v.offset + 1);
    else for (const [p, o] of v.committable) this.#carried.set(p, o);
    return SKIP;
  }

  /** Counts the chunk's dropped messages and hands their offsets on as a filtered marker. */
  protected override endOfBatch(): Message<T> | undefined {
    if (this.#droppedInChunk > 0) {
      this.countDropped(this.#droppedInChunk, "filtered");
      this.#droppedInChunk = 0;
    }
    if (this.#carried.size === 0) return undefined;
    const offsets = this.#carried;
    this.#carried = new Map();
    return new Value(FILTERED_PAYLOAD as unknown as T, offsets);
  }
}
