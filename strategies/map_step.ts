/**
 * `MapStep`: the base of every one-in, at-most-one-out step (`RunTask`, `FilterStep`,
 * `Decode`...), with `SKIP`, `TransformResult` and `SettledResult`. It runs on
 * {@link StreamStep}'s web-stream input (`stream_step.ts`).
 *
 * @module
 */
import { InvalidMessage, Message } from "../types.ts";
import { MessageRejected } from "../errors.ts";
import { EMIT_OWNED, HOLD, StreamStep } from "./stream_step.ts";

/** Module-private (not public): the slow path of a chunk from a hold, shared with `RunTask`. */
export const CONTINUE_SLOWLY: unique symbol = Symbol("sluice.continueSlowly");
/** Module-private (not public): the end of a chunk transformed at once, shared with `RunTask`. */
export const END_CHUNK: unique symbol = Symbol("sluice.endChunk");

/**
 * Returned by {@link MapStep.transform} for a message that produces no output.
 *
 * @example Drop empty payloads
 * ```ts
 * import { BrokerValue, MapStep, type Message, Noop, Partition, RunTask } from "@sluice/sluice";
 * import { type ProcessingStrategy, SKIP, type TransformResult } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * class NonEmpty extends MapStep<string, string> {
 *   constructor(next: ProcessingStrategy<string>) {
 *     super("non-empty", next);
 *   }
 *   protected transform(message: Message<string>): TransformResult<string> {
 *     return message.payload === "" ? SKIP : message;
 *   }
 * }
 * const seen: string[] = [];
 * const step = new NonEmpty(new RunTask((m: Message<string>) => seen.push(m.payload), new Noop()));
 * const p = Partition.of("t", 0);
 * await ReadableStream.from([new BrokerValue("", p, 0, 0), new BrokerValue("a", p, 1, 0)])
 *   .pipeTo(step.writable);
 * assertEquals(seen, ["a"]);
 * ```
 */
export const SKIP: unique symbol = Symbol("skip");

/**
 * What {@link MapStep.transform} may return, or a promise of it (awaited in input order).
 *
 * @example A transform that parses, skips or holds
 * ```ts
 * import { HOLD, MapStep, type Message, Noop, type ProcessingStrategy } from "@sluice/sluice";
 * import { SKIP, type TransformResult } from "@sluice/sluice";
 *
 * class ParseInt extends MapStep<string, number> {
 *   paused = false;
 *   constructor(next: ProcessingStrategy<number>) {
 *     super("parse-int", next);
 *   }
 *   protected transform(message: Message<string>): TransformResult<number> {
 *     if (this.paused) return HOLD;
 *     if (message.payload === "") return SKIP;
 *     return message.replacePayload(Number.parseInt(message.payload, 10));
 *   }
 * }
 * new ParseInt(new Noop()).terminate();
 * ```
 */
export type TransformResult<T> =
  | Message<T>
  | typeof HOLD
  | typeof SKIP
  | InvalidMessage
  | Promise<SettledResult<T>>;

/**
 * What a settled asynchronous transform gives: a {@link TransformResult} that is not a promise.
 *
 * @example An asynchronous transform through `settle`
 * ```ts
 * import { BrokerValue, MapStep, type Message, Noop, Partition, RunTask } from "@sluice/sluice";
 * import type { ProcessingStrategy, SettledResult, TransformResult } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const lookup = (id: string) => Promise.resolve(id.length); // your service
 * class Lookup extends MapStep<string, number> {
 *   constructor(next: ProcessingStrategy<number>) {
 *     super("lookup", next);
 *   }
 *   protected transform(m: Message<string>): TransformResult<number> {
 *     return this.settle(lookup(m.payload), m, (n): SettledResult<number> => m.replacePayload(n));
 *   }
 * }
 * const seen: number[] = [];
 * const step = new Lookup(new RunTask((m: Message<number>) => seen.push(m.payload), new Noop()));
 * await ReadableStream.from([new BrokerValue("abc", Partition.of("t", 0), 0, 0)]).pipeTo(step.writable);
 * assertEquals(seen, [3]);
 * ```
 */
export type SettledResult<T> = Message<T> | typeof HOLD | typeof SKIP | InvalidMessage;

/**
 * A step that turns each input message into at most one output, in order: `RunTask`,
 * `FilterStep` and friends. It handles the next step's rejections (holding the result,
 * never re-running the transform), holds (`HOLD`, retried after a backoff) and invalid
 * messages (reported, then their offsets forwarded as filtered). A transform that returns
 * a promise is awaited before the next message is transformed (the chunk stays in the
 * queue meanwhile, so upstream is held back by the high-water mark); the promise must not
 * reject: a failure is recorded with `fail` and the promise resolves.
 *
 * @example An upper-casing step
 * ```ts
 * import { BrokerValue, FILTERED_PAYLOAD, MapStep, type Message, Noop } from "@sluice/sluice";
 * import { Partition, type ProcessingStrategy, RunTask, type TransformResult } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * class Upper extends MapStep<string, string> {
 *   constructor(next: ProcessingStrategy<string>) {
 *     super("upper", next);
 *   }
 *   protected transform(message: Message<string>): TransformResult<string> {
 *     if ((message.payload as unknown) === FILTERED_PAYLOAD) return message; // offsets only
 *     return message.replacePayload(message.payload.toUpperCase());
 *   }
 * }
 * const seen: string[] = [];
 * const step = new Upper(new RunTask((m: Message<string>) => seen.push(m.payload), new Noop()));
 * await ReadableStream.from([new BrokerValue("hi", Partition.of("t", 0), 0, 0)]).pipeTo(step.writable);
 * assertEquals(seen, ["HI"]);
 * ```
 */
export abstract class MapStep<TIn, TOut> extends StreamStep<TIn, TOut> {
  /** Transforms one message. Filtered input should normally pass through unchanged. */
  protected abstract transform(message: Message<TIn>): TransformResult<TOut>;

  /**
   * Awaits a user function's promise (or other thenable) for `message`: `onValue` turns its
   * value into the result. A rejection goes to `onError` when given; by default
   * `MessageRejected` holds the message (`HOLD`: the function runs again after a backoff of
   * 10 ms doubling up to `maxBackoffMs`; once the step is closed it is tried once more, then
   * given up), `InvalidMessage` reports it, and anything else fails the step with a `StepError`
   * naming the message (as does anything `onValue` or `onError` throws). The returned
   * promise never rejects, so no rejection is ever unhandled.
   */
  protected settle<R>(
    pending: PromiseLike<R>,
    message: Message<TIn>,
    onValue: (value: R) => SettledResult<TOut>,
    onError?: (error: unknown) => SettledResult<TOut>,
  ): Promise<SettledResult<TOut>> {
    return Promise.resolve(pending).then(
      (value) => {
        try {
          return onValue(value);
        } catch (e) {
          return this.#failed(e, message);
        }
      },
      (e) => {
        if (onError !== undefined) {
          try {
            return onError(e);
          } catch (e2) {
            return this.#failed(e2, message);
          }
        }
        if (e instanceof MessageRejected) return HOLD;
        if (e instanceof InvalidMessage) return e;
        return this.#failed(e, message);
      },
    );
  }

  #failed(e: unknown, message: Message<TIn>): typeof SKIP {
    this.fail(this.wrapError(e, message));
    return SKIP;
  }

  /** Called after the last message of a chunk was handled; may return a final output. */
  protected endOfBatch(): Message<TOut> | undefined {
    return undefined;
  }

  /**
   * Transforms the chunk's messages, then hands the results on in one `emitAll`: the next
   * step takes them as whole chunks (`submitMany`) instead of one `submit` each. Results the
   * next step rejects are held and handed on when it has room; a transform is never re-run.
   */
  protected process(batch: Message<TIn>[]): void | Promise<void> {
    // The chunk's array is the step's own (the queue's writer made it): the outputs are
    // written over the inputs already transformed (k <= i), and the array is handed on.
    const outs = batch as unknown as Message<TOut>[];
    const n = batch.length;
    let k = 0;
    for (let i = 0; i < n; i++) {
      const out = this.transform(batch[i]);
      if (out === SKIP) continue;
      if (!(out instanceof Message)) return this[CONTINUE_SLOWLY](batch, k, i, out);
      outs[k++] = out;
    }
    if (k < n) outs.length = k;
    return this[END_CHUNK](outs);
  }

  /**
   * The end of a chunk transformed without a hold: `outs` (the chunk's own array, holding
   * only outputs now) gets the {@link MapStep.endOfBatch} output, if any, and is handed on
   * whole. Module-private (`END_CHUNK`), shared with `RunTask`'s loop.
   */
  [END_CHUNK](outs: Message<TOut>[]): void | Promise<void> {
    const last = this.endOfBatch();
    if (last !== undefined) outs.push(last);
    return this[EMIT_OWNED](outs);
  }

  /**
   * `batch[i]`'s transform answered `result`: a hold, an invalid message or a promise.
   * Hands on the `k` outputs written over `batch[0..k)`, then goes on one message at a time
   * from `batch[i]` (`#slow`). Module-private (`CONTINUE_SLOWLY`), shared with `RunTask`.
   */
  [CONTINUE_SLOWLY](
    batch: Message<TIn>[],
    k: number,
    i: number,
    result: Exclude<TransformResult<TOut>, Message<TOut> | typeof SKIP>,
  ): void | Promise<void> {
    const sent = this.emitAll((batch as unknown as Message<TOut>[]).slice(0, k));
    if (sent === undefined) return this.#slow(batch, i, result);
    return sent.then(() => this.abandoned ? undefined : this.#slow(batch, i, result));
  }

  /**
   * From `batch[i]`, which `transform` answered with a hold, an invalid message or a
   * promise: waits (hold), reports it (invalid) or awaits it (promise), then goes on one
   * message at a time.
   */
  async #slow(
    batch: Message<TIn>[],
    i: number,
    hold: Exclude<TransformResult<TOut>, Message<TOut> | typeof SKIP> | undefined,
  ): Promise<void> {
    let held: Message<TOut> | undefined;
    let holds = 0;
    for (;;) {
      if (held !== undefined) {
        await this.emitWhenRoom(held);
        if (this.abandoned) return;
        held = undefined;
      }
      if (hold instanceof Promise) {
        // An asynchronous transform of batch[i]: nothing after it runs until it settles.
        const out = await hold;
        if (this.abandoned) return;
        hold = undefined;
        if (out === SKIP) i++;
        else if (out instanceof Message) {
          i++;
          held = out;
        } else hold = out;
        continue;
      }
      if (hold === HOLD) {
        if (this.closed && holds > 0) return this.giveUpHeld(batch[i]);
        await this.backoff(holds++);
        if (this.abandoned) return;
      } else if (hold !== undefined) {
        await this.reportInvalid(hold, batch[i]);
        if (this.abandoned) return;
        i++;
      }
      hold = undefined;
      if (i >= batch.length) break;
      const out = this.transform(batch[i]);
      if (out !== HOLD) holds = 0;
      if (out === SKIP) i++;
      else if (out instanceof Message) {
        i++;
        held = out;
      } else hold = out;
    }
    const last = this.endOfBatch();
    if (last !== undefined) await this.emitWhenRoom(last);
  }
}
