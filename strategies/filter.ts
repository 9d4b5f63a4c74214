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
  MessageRejected,
  type Partition,
  Value,
} from "../types.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { HOLD, MapStep, SKIP, type StepOptions, type TransformResult } from "./bridge.ts";

/**
 * Forwards the messages for which `predicate` returns true. Dropped messages are counted
 * (`dropped`) and their offsets are still carried forward (as one filtered marker per
 * chunk), so a fully filtered stream keeps committing.
 *
 * @example
 * ```ts
 * import { CommitOffsets, FilterStep } from "@sluice/sluice";
 * const step = new FilterStep(
 *   (m: { payload: number }) => m.payload % 2 === 0,
 *   new CommitOffsets(() => {}),
 *   { name: "even-only" },
 * );
 * ```
 */
export class FilterStep<T> extends MapStep<T, T> {
  readonly #predicate: (message: Message<T>) => boolean;
  #carried = new Map<Partition, number>();
  /** Messages dropped by the predicate so far (also the `sluice.step.dropped` metric). */
  dropped = 0;
  #droppedInChunk = 0;

  /** Creates the step. */
  constructor(
    predicate: (message: Message<T>) => boolean,
    next: ProcessingStrategy<T>,
    options?: StepOptions,
  ) {
    super("filter", next, options);
    this.#predicate = predicate;
  }

  /** Keeps a message when the predicate holds; else records its offset as dropped. */
  protected transform(m: Message<T>): TransformResult<T> {
    let keep: boolean;
    if (m.filtered) keep = false;
    else {
      try {
        keep = this.#predicate(m);
      } catch (e) {
        if (e instanceof MessageRejected) return HOLD;
        if (e instanceof InvalidMessage) return e;
        throw this.wrapError(e, m);
      }
      if (!keep) {
        this.dropped++;
        this.#droppedInChunk++;
      }
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
