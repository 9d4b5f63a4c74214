/**
 * The messages the processor polled and the pipeline has not accepted yet (private to
 * `processing/`): held in order, handed to the pipeline as far as it takes them, and
 * dropped per partition when partitions are revoked or read again.
 *
 * @module
 */
import { MESSAGE_REJECTED } from "../errors.ts";
import type { ProcessingStrategy } from "../strategies/abstract.ts";
import type { BrokerValue, InvalidMessage, Partition } from "../types.ts";

/** Polled messages not yet accepted by the pipeline, oldest first. */
export class CarriedMessages<T> {
  /** The batch, of which `#index..` is still carried; undefined when nothing is. */
  #messages: BrokerValue<T>[] | undefined;
  #index = 0;

  /** True when nothing is carried. */
  get empty(): boolean {
    return this.#messages === undefined;
  }

  /** Messages carried. */
  get count(): number {
    return this.#messages ? this.#messages.length - this.#index : 0;
  }

  /** Carries a freshly polled batch (nothing is carried before). */
  carry(batch: BrokerValue<T>[]): void {
    this.#messages = batch;
    this.#index = 0;
  }

  /** Queues `batch` behind what is carried (in order). */
  append(batch: BrokerValue<T>[]): void {
    this.#messages = this.#messages === undefined
      ? batch
      : [...this.#messages.slice(this.#index), ...batch];
    this.#index = 0;
  }

  /**
   * Submits the carried messages, in order, as far as `strategy` takes them; the accepted
   * ones stop being carried. Returns undefined when all were taken, else what stopped the
   * submission (`MESSAGE_REJECTED` when `submitMany` took fewer).
   */
  submitTo(strategy: ProcessingStrategy<T>): unknown {
    const messages = this.#messages;
    if (messages === undefined) return undefined;
    let i = this.#index;
    try {
      if (strategy.submitMany !== undefined) {
        i = strategy.submitMany(messages, i);
        if (i < messages.length) return MESSAGE_REJECTED;
      } else {
        for (; i < messages.length; i++) strategy.submit(messages[i]);
      }
    } catch (e) {
      return e;
    } finally {
      this.#index = i;
    }
    this.#messages = undefined;
    this.#index = 0;
    return undefined;
  }

  /** Drops the first carried message if it is the one `error` is about. */
  dropInvalid(error: InvalidMessage): void {
    const m = this.#messages?.[this.#index];
    if (m === undefined || m.partition !== error.partition || m.offset !== error.offset) return;
    if (++this.#index >= this.#messages!.length) {
      this.#messages = undefined;
      this.#index = 0;
    }
  }

  /** The first carried offset of each partition with carried messages. */
  firstOffsets(): Map<Partition, number> {
    const first = new Map<Partition, number>();
    const messages = this.#messages;
    if (messages !== undefined) {
      for (let i = messages.length - 1; i >= this.#index; i--) {
        first.set(messages[i].partition, messages[i].offset);
      }
    }
    return first;
  }

  /** Drops the carried messages of `partitions` (their messages come again, or go elsewhere). */
  drop(partitions: { has(partition: Partition): boolean }): void {
    const messages = this.#messages;
    if (messages === undefined) return;
    const keep = messages.slice(this.#index).filter((m) => !partitions.has(m.partition));
    this.#messages = keep.length > 0 ? keep : undefined;
    this.#index = 0;
  }
}
