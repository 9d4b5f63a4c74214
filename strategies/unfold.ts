/**
 * `Unfold`: turns one message into any number of messages.
 *
 * @module
 */
import {
  BrokerValue,
  type Committable,
  EMPTY_COMMITTABLE,
  FILTERED_PAYLOAD,
  InvalidMessage,
  type Message,
  type Partition,
  StepError,
  Value,
} from "../types.ts";
import { ConfigurationError, MessageRejected } from "../errors.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { HOLD, type StepOptions, StreamStep } from "./stream_step.ts";
import { isThenable } from "./thenable.ts";

/** True when `a` (or `also`) commits at least as far as `b` on every partition of `b`. */
function covers(a: Committable, b: Committable, also: Committable | undefined): boolean {
  for (const [p, o] of b) {
    const mine = Math.max(a.get(p) ?? -1, also?.get(p) ?? -1);
    if (mine < o) return false;
  }
  return true;
}

/**
 * Runs `fn` once per message; every element of the iterable it returns (a generator, an
 * array...) becomes its own message, handed on in order.
 *
 * - Only the *last* child carries the input's offsets, so nothing is committed before
 *   every child of the message has been processed. Earlier children carry none.
 * - A message whose iterable is empty still hands its offsets on, as a filtered marker,
 *   so it gets committed. Filtered input passes through untouched.
 * - The iterable is walked lazily, one element ahead. When the next step rejects, the
 *   step keeps the child and the iterator, and continues when the next step has room (on
 *   its `ready`, or at the next `poll()`); `fn` never runs twice for one message.
 * - `fn` may throw `MessageRejected` *before producing its first element* to hold the
 *   message until the next `poll()`; `InvalidMessage` reports the message (children
 *   produced before it are handed on; they carry no offsets, so nothing is committed
 *   past it, and the input's offsets follow once the processor has dealt with it).
 * - Other errors surface in `poll()` as a `StepError` naming the step and the message.
 * - `fn` may be `async` (return a promise of an iterable, say an array of rows fetched
 *   for the message): it is awaited before anything of the message is handed on, and
 *   before the next message's `fn` runs; a rejection is handled like a throw. An async
 *   iterable (an `async function*`), or an element that is a promise, fails the step with
 *   a `TypeError` cause: return a promise of an array instead.
 *
 * @example One message per line
 * ```ts
 * import { CommitOffsets, type Message, Unfold } from "@sluice/sluice";
 *
 * // One message per line of each payload.
 * const lines = new Unfold(
 *   (m: Message<string>) => m.payload.split("\n"),
 *   new CommitOffsets(() => {}),
 * );
 *
 * // A generator works too, and is consumed lazily.
 * const repeat = new Unfold(
 *   function* (m: Message<number>) {
 *     for (let i = 0; i < m.payload; i++) yield i;
 *   },
 *   new CommitOffsets(() => {}),
 * );
 * ```
 */
export class Unfold<TIn, TOut> extends StreamStep<TIn, TOut> {
  readonly #fn: (message: Message<TIn>) => Iterable<TOut> | PromiseLike<Iterable<TOut>>;
  /** Children handed on so far (filtered markers not counted). */
  children = 0;
  /** Highest offsets carried by the current input's earlier children (when they carry any). */
  #carried: Map<Partition, number> | undefined;

  /** Creates the step. `fn` returns an iterable of payloads, or a promise of one. */
  constructor(
    fn: (message: Message<TIn>) => Iterable<TOut> | PromiseLike<Iterable<TOut>>,
    next: ProcessingStrategy<TOut>,
    options?: StepOptions,
  ) {
    super("unfold", next, options);
    if (typeof fn !== "function") {
      throw new ConfigurationError(
        `step "${this.name}": fn must be a function (message) => iterable of payloads`,
      );
    }
    if (next === undefined || next === null) {
      throw new ConfigurationError(`step "${this.name}": a next step is required`);
    }
    this.#fn = fn;
  }

  /**
   * Turns one element of the iterable into a child message. The default wraps the payload
   * in a `Value` with the input's timestamp, carrying the input's offsets when it is the
   * `last` child and none otherwise.
   */
  protected child(item: unknown, input: Message<TIn>, last: boolean): Message<TOut> {
    return new Value(item as TOut, last ? input.committable : EMPTY_COMMITTABLE, input.timestamp);
  }

  /** Unfolds one chunk of messages; returns a promise while a child waits for the next step. */
  protected process(batch: Message<TIn>[]): void | Promise<void> {
    for (let i = 0; i < batch.length; i++) {
      const r = this.#start(batch[i]);
      if (r !== undefined) return this.#slow(batch, i, r);
    }
  }

  async #slow(
    batch: Message<TIn>[],
    i: number,
    r: Promise<void | typeof HOLD> | typeof HOLD,
  ): Promise<void> {
    for (;;) {
      if (r === HOLD) {
        await this.waitForPoll();
        if (this.abandoned) return;
        const again = this.#start(batch[i]);
        if (again !== undefined) {
          r = again;
          continue;
        }
      } else {
        const again = await r;
        if (this.abandoned) return;
        if (again === HOLD) {
          r = HOLD;
          continue;
        }
      }
      for (i++; i < batch.length; i++) {
        const next = this.#start(batch[i]);
        if (next !== undefined) {
          r = next;
          break;
        }
      }
      if (i >= batch.length) return;
    }
  }

  /**
   * Starts unfolding `m` and hands on as much as the next step takes synchronously.
   * Returns undefined when done, HOLD when `fn` asked to hold the message, or a promise
   * of the rest.
   */
  #start(m: Message<TIn>): Promise<void | typeof HOLD> | typeof HOLD | undefined {
    if (m.filtered) {
      const passed = m as unknown as Message<TOut>;
      return this.emit(passed) ? undefined : this.emitWhenRoom(passed);
    }
    let out: Iterable<TOut> | PromiseLike<Iterable<TOut>>;
    try {
      out = this.#fn(m);
    } catch (e) {
      if (e instanceof MessageRejected) return HOLD;
      if (e instanceof InvalidMessage) return this.reportInvalid(e, m);
      throw this.wrapError(e, m);
    }
    if (isThenable(out)) return this.#awaitIterable(out, m);
    return this.#begin(m, out);
  }

  /**
   * Awaits the promised iterable of an `async` function, then unfolds it. Resolves to HOLD
   * when it rejected with `MessageRejected`; other rejections are handled as throws.
   */
  async #awaitIterable(
    pending: PromiseLike<Iterable<TOut>>,
    m: Message<TIn>,
  ): Promise<void | typeof HOLD> {
    let out: Iterable<TOut>;
    try {
      out = await pending;
    } catch (e) {
      if (e instanceof MessageRejected) return HOLD;
      if (e instanceof InvalidMessage) return this.reportInvalid(e, m);
      throw this.wrapError(e, m);
    }
    if (this.abandoned) return;
    return this.#begin(m, out);
  }

  /** Unfolds the iterable `fn` returned for `m`. */
  #begin(m: Message<TIn>, out: unknown): Promise<void | typeof HOLD> | typeof HOLD | undefined {
    let it: Iterator<unknown>;
    let first: IteratorResult<unknown>;
    try {
      it = this.#iterable(out)[Symbol.iterator]();
      first = it.next();
    } catch (e) {
      if (e instanceof MessageRejected) return HOLD;
      if (e instanceof InvalidMessage) return this.reportInvalid(e, m);
      throw this.wrapError(e, m);
    }
    this.#carried = undefined;
    if (first.done) {
      const marker = new Value(FILTERED_PAYLOAD as unknown as TOut, m.committable, m.timestamp);
      return this.emit(marker) ? undefined : this.emitWhenRoom(marker);
    }
    return this.#walk(m, it, first);
  }

  /** Hands on children from `cur`, synchronously until the next step rejects. */
  #walk(
    m: Message<TIn>,
    it: Iterator<unknown>,
    cur: IteratorResult<unknown>,
  ): Promise<void> | undefined {
    for (;;) {
      const next = this.#advance(m, it);
      const last = !(next instanceof InvalidMessage) && next.done === true;
      const child = this.#child(cur.value, m, last);
      if (next instanceof InvalidMessage) return this.#report(child, next, m);
      if (next.done) return this.#emitLast(child, m);
      if (!this.emit(child)) return this.#walkSlow(m, it, child, next);
      this.children++;
      cur = next;
    }
  }

  async #walkSlow(
    m: Message<TIn>,
    it: Iterator<unknown>,
    child: Message<TOut>,
    next: IteratorResult<unknown>,
  ): Promise<void> {
    for (;;) {
      await this.emitWhenRoom(child);
      if (this.abandoned) return;
      this.children++;
      let cur = next;
      for (;;) {
        const n = this.#advance(m, it);
        const last = !(n instanceof InvalidMessage) && n.done === true;
        child = this.#child(cur.value, m, last);
        if (n instanceof InvalidMessage) return this.#report(child, n, m);
        if (n.done) return this.#emitLast(child, m);
        next = n;
        if (!this.emit(child)) break;
        this.children++;
        cur = n;
      }
    }
  }

  /** Hands on the child produced before the iterator threw `error`, then reports it. */
  async #report(child: Message<TOut>, error: InvalidMessage, m: Message<TIn>): Promise<void> {
    this.#carried = undefined;
    await this.emitWhenRoom(child);
    if (this.abandoned) return;
    this.children++;
    await this.reportInvalid(error, m);
  }

  #iterable(out: unknown): Iterable<unknown> {
    if (
      out !== null && typeof out === "object" && !(Symbol.iterator in out) &&
      Symbol.asyncIterator in out
    ) {
      throw new TypeError(
        "the function returned an async iterable (an async generator?); return an array, " +
          "or a promise of one, from an async function instead",
      );
    }
    if (out === null || typeof out !== "object" || !(Symbol.iterator in out)) {
      throw new TypeError(
        `the function must return an iterable (an array or a generator), got ${
          out === null ? "null" : typeof out
        }`,
      );
    }
    return out as Iterable<unknown>;
  }

  /** The next element; an `InvalidMessage` the iterator threw is returned, other errors thrown. */
  #advance(m: Message<TIn>, it: Iterator<unknown>): IteratorResult<unknown> | InvalidMessage {
    try {
      return it.next();
    } catch (e) {
      if (e instanceof InvalidMessage) return e;
      if (e instanceof MessageRejected) {
        throw new StepError(
          this.name,
          m,
          new Error(
            "MessageRejected was thrown after the first element was produced; children already " +
              "handed on cannot be taken back, so throw it before yielding anything",
          ),
        );
      }
      throw this.wrapError(e, m);
    }
  }

  #child(item: unknown, m: Message<TIn>, last: boolean): Message<TOut> {
    let child: Message<TOut>;
    try {
      if (isThenable(item)) {
        throw new TypeError(
          "an element of the iterable is a promise; await the values in an async function " +
            "and return them as an array, so no promise is handed on as a payload",
        );
      }
      child = this.child(item, m, last);
    } catch (e) {
      throw this.wrapError(e, m);
    }
    const v = child.source;
    if (v instanceof BrokerValue) {
      // (no `committable` getter here: it would allocate a Map per child)
      const carried = this.#carried ??= new Map();
      if ((carried.get(v.partition) ?? -1) <= v.offset) carried.set(v.partition, v.offset + 1);
    } else if (v.committable.size > 0 && !last) {
      const carried = this.#carried ??= new Map();
      for (const [p, o] of v.committable) if ((carried.get(p) ?? -1) < o) carried.set(p, o);
    }
    return child;
  }

  /** The last child takes the input's offsets (or is followed by a marker carrying them). */
  #emitLast(child: Message<TOut>, m: Message<TIn>): Promise<void> | undefined {
    const input = m.committable;
    const carried = this.#carried;
    this.#carried = undefined;
    this.children++;
    let marker: Message<TOut> | undefined;
    if (child.committable !== input && !covers(child.committable, input, carried)) {
      if (child.committable.size === 0) {
        child = new Value(child.payload, input, child.timestamp ?? m.timestamp);
      } else {
        marker = new Value(FILTERED_PAYLOAD as unknown as TOut, input, m.timestamp);
      }
    }
    if (marker === undefined) return this.emit(child) ? undefined : this.emitWhenRoom(child);
    const r = this.emitAll([child, marker]);
    return r === undefined ? undefined : r;
  }
}
