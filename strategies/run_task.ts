/**
 * `RunTask`: runs a synchronous user function on every message.
 *
 * @module
 */
import { InvalidMessage, type Message, MessageRejected } from "../types.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { HOLD, MapStep, type StepOptions, type TransformResult } from "./bridge.ts";

/**
 * Runs `fn` once per message and forwards `message.replacePayload(result)`.
 *
 * - Filtered messages pass through; `fn` never sees them.
 * - When the next step rejects, the *result* is held and handed on later: `fn` never runs
 *   twice for one message.
 * - `fn` may throw `MessageRejected` to hold the message back (for example while an
 *   external system asks you to pause). It is retried after a backoff on the step's clock
 *   (10 ms doubling up to `maxBackoffMs`, default 1 s); the queue fills, upstream is
 *   rejected, and the processor pauses the consumer. Once the step is closed (revoke,
 *   shutdown) the message is tried once more, then given up: it and what follows are not
 *   committed and are read again, so shutdown does not wait `joinTimeoutMs` for it.
 * - `fn` may throw `InvalidMessage` for a message that can never be processed.
 * - Any other error fails the step; `poll()` rethrows it naming the message.
 *
 * @example
 * ```ts
 * import { CommitOffsets, RunTask } from "@sluice/sluice";
 * const step = new RunTask(
 *   (m: { payload: string }) => m.payload.toUpperCase(),
 *   new CommitOffsets(() => {}),
 *   { name: "upper", highWaterMark: 500 },
 * );
 * ```
 */
export class RunTask<TIn, TOut> extends MapStep<TIn, TOut> {
  readonly #fn: (message: Message<TIn>) => TOut;

  /** Creates the step. */
  constructor(
    fn: (message: Message<TIn>) => TOut,
    next: ProcessingStrategy<TOut>,
    options?: StepOptions,
  ) {
    super("run_task", next, options);
    this.#fn = fn;
  }

  /** Applies `fn` to one message; filtered markers pass through. */
  protected transform(m: Message<TIn>): TransformResult<TOut> {
    if (m.filtered) return m as unknown as Message<TOut>;
    try {
      return m.replacePayload(this.#fn(m));
    } catch (e) {
      if (e instanceof MessageRejected) return HOLD;
      if (e instanceof InvalidMessage) return e;
      throw this.wrapError(e, m);
    }
  }
}
