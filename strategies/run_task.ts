/**
 * `RunTask`: runs a user function on every message, awaiting it when it returns a promise.
 *
 * @module
 */
import { FILTERED_PAYLOAD, InvalidMessage, type Message } from "../types.ts";
import { MessageRejected } from "../errors.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { HOLD, type StepOptions } from "./stream_step.ts";
import {
  CONTINUE_SLOWLY,
  END_CHUNK,
  MapStep,
  type SettledResult,
  type TransformResult,
} from "./map_step.ts";
import { isThenable } from "./thenable.ts";

/**
 * Runs `fn` once per message and forwards `message.replacePayload(result)`.
 *
 * - `fn` may be `async` (or return any promise): the step awaits it before it runs `fn`
 *   on the next message, and hands results on in input order, so an offset is committed
 *   only once the work of its message (and of every message before it) has finished.
 *   While it waits, the step's queue fills and upstream is held back (`highWaterMark`).
 *   One call at a time: for several calls in flight use `RunTaskAsync`. A synchronous
 *   `fn` pays nothing for this.
 * - Filtered messages pass through; `fn` never sees them.
 * - When the next step rejects, the *result* is held and handed on later: `fn` never runs
 *   twice for one message.
 * - `fn` may throw (or reject with) `MessageRejected` to hold the message back (for
 *   example while an external system asks you to pause). It is retried after a backoff on
 *   the step's clock (10 ms doubling up to `maxBackoffMs`, default 1 s); the queue fills,
 *   upstream is rejected, and the processor pauses the consumer. Once the step is closed
 *   (revoke, shutdown) the message is tried once more, then given up: it and what follows
 *   are not committed and are read again, so shutdown does not wait `joinTimeoutMs` for it.
 * - `fn` may throw (or reject with) `InvalidMessage` for a message that can never be
 *   processed.
 * - Any other error or rejection fails the step: `poll()` rethrows it as a `StepError`
 *   naming the message's partition and offset; nothing after it is handed on or committed.
 *
 * @example Synchronous and asynchronous functions
 * ```ts
 * import { CommitOffsets, type Message, RunTask } from "@sluice/sluice";
 * const db = { insert: async (_row: string): Promise<void> => {} }; // your database
 *
 * // Synchronous: the result is the new payload.
 * const upper = new RunTask(
 *   (m: Message<string>) => m.payload.toUpperCase(),
 *   new CommitOffsets(() => {}),
 *   { name: "upper", highWaterMark: 500 },
 * );
 *
 * // Asynchronous: awaited, one message at a time, before its offset can be committed.
 * const save = new RunTask(
 *   async (m: Message<string>) => {
 *     await db.insert(m.payload);
 *     return m.payload;
 *   },
 *   new CommitOffsets(() => {}),
 *   { name: "save" },
 * );
 * ```
 */
export class RunTask<TIn, TOut> extends MapStep<TIn, TOut> {
  readonly #fn: (message: Message<TIn>) => TOut | PromiseLike<TOut>;

  /**
   * Creates the step. `fn` returns the new payload, or a promise of it (awaited; the
   * payload type is what the promise resolves to).
   */
  constructor(
    fn: (message: Message<TIn>) => TOut | PromiseLike<TOut>,
    next: ProcessingStrategy<TOut>,
    options?: StepOptions,
  ) {
    super("run_task", next, options);
    this.#fn = fn;
  }

  /**
   * `MapStep.process` for RunTask's own `transform`, with it written into the loop: a
   * RunTask has one output per input, so output `i` is written over input `i` (the chunk's
   * array is the step's own) and no result needs sorting out. The first hold, invalid
   * message or promise goes to the same slow path as in `MapStep`, with the outputs before
   * it handed on. A subclass that overrides `transform` gets `MapStep.process`.
   */
  protected override process(batch: Message<TIn>[]): void | Promise<void> {
    if (this.transform !== RunTask.prototype.transform) return super.process(batch);
    const outs = batch as unknown as Message<TOut>[];
    const n = batch.length;
    for (let i = 0; i < n; i++) {
      const m = batch[i];
      // A filtered marker passes through: it is its own output, already at index i.
      if (m.payload === (FILTERED_PAYLOAD as unknown)) continue;
      let out: TOut | PromiseLike<TOut>;
      try {
        out = this.#fn(m);
      } catch (e) {
        return this[CONTINUE_SLOWLY](batch, i, i, this.#caught(e, m));
      }
      if (isThenable(out)) return this[CONTINUE_SLOWLY](batch, i, i, this.#settled(out, m));
      outs[i] = m.replacePayload(out);
    }
    return this[END_CHUNK](outs);
  }

  /** Applies `fn` to one message; filtered markers pass through; a promise is awaited. */
  protected transform(m: Message<TIn>): TransformResult<TOut> {
    if (m.filtered) return m as unknown as Message<TOut>;
    let out: TOut | PromiseLike<TOut>;
    try {
      out = this.#fn(m);
    } catch (e) {
      return this.#caught(e, m);
    }
    if (isThenable(out)) return this.#settled(out, m);
    return m.replacePayload(out);
  }

  /** What `fn` throwing `e` for `m` means: a hold, an invalid message, or a failure (thrown). */
  #caught(e: unknown, m: Message<TIn>): typeof HOLD | InvalidMessage {
    if (e instanceof MessageRejected) return HOLD;
    if (e instanceof InvalidMessage) return e;
    throw this.wrapError(e, m);
  }

  /** The promise `fn` returned for `m`, awaited: its value becomes the new payload. */
  #settled(pending: PromiseLike<TOut>, m: Message<TIn>): Promise<SettledResult<TOut>> {
    return this.settle(pending, m, (v) => m.replacePayload(v));
  }
}
