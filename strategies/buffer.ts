/**
 * `BufferStep`: accumulates messages in a user-supplied buffer and hands on one message per
 * flush. It is the core that `Reduce` and `BatchStep` are built on.
 *
 * @module
 */
import {
  BrokerValue,
  FILTERED_PAYLOAD,
  InvalidMessage,
  type Message,
  type Partition,
  StepError,
  Value,
} from "../types.ts";
import { ConfigurationError, MessageRejected } from "../errors.ts";
import { requireNonNegative } from "../_validate.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { HOLD, type StepOptions, StreamStep } from "./stream_step.ts";
import { isThenable } from "./thenable.ts";

/** Where a {@link BufferStep} is stuck: an append being awaited, a hold, or an invalid message. */
type Pending =
  | Promise<true | typeof HOLD | InvalidMessage>
  | typeof HOLD
  | InvalidMessage
  | undefined;

/**
 * Throws a `TypeError` when a buffer callback that must be synchronous returned a promise,
 * rather than treat the promise as a truthy flag or hand it on as a payload.
 */
function notThenable<T>(value: T, what: string, returns: string): T {
  if (isThenable(value)) {
    throw new TypeError(
      `${what} returned a promise; it must return ${returns} synchronously. Do asynchronous ` +
        "work in append() (awaited) or in a RunTask after this step (awaited too)",
    );
  }
  return value;
}

/**
 * What a {@link BufferStep} accumulates into. The step owns offsets, timestamps and
 * timing; the protocol owns the payload.
 *
 * @example Accumulate lines of text
 * ```ts
 * import type { BufferProtocol, Message } from "@sluice/sluice";
 * class Lines implements BufferProtocol<string, string> {
 *   #lines: string[] = [];
 *   append(m: Message<string>): void {
 *     this.#lines.push(m.payload);
 *   }
 *   isReady(): boolean {
 *     return this.#lines.length >= 100;
 *   }
 *   flush(): string {
 *     const text = this.#lines.join("\n");
 *     this.#lines = [];
 *     return text;
 *   }
 * }
 * ```
 */
export interface BufferProtocol<TIn, TOut> {
  /**
   * Adds one message (never a filtered one). May throw `MessageRejected` to hold the
   * message until the next `poll()`, or `InvalidMessage` for a message that can never be
   * added (the step then flushes what it holds before reporting it). May return a promise:
   * the step awaits it before it adds the next message (a rejection counts as a throw).
   */
  append(message: Message<TIn>): void | PromiseLike<void>;
  /**
   * True when the buffer should be flushed now (full, say). Checked after every append and
   * on `poll()`. Synchronous: a promise fails the step.
   */
  isReady(): boolean;
  /**
   * Returns the payload to hand on and resets the buffer to empty. Synchronous: a promise
   * fails the step (do the I/O in a `RunTask` after this step, which awaits it).
   */
  flush(): TOut;
  /**
   * True when there is nothing to flush. Default: no message was appended since the last
   * flush. When it says empty although messages were appended, their offsets are still
   * handed on, as a filtered marker.
   */
  isEmpty?(): boolean;
}

/**
 * Options of a {@link BufferStep}.
 *
 * @example Flush at least every 500 ms
 * ```ts
 * import { type BufferOptions, type BufferProtocol, BufferStep } from "@sluice/sluice";
 * import { type Message, Noop } from "@sluice/sluice";
 *
 * class Count implements BufferProtocol<string, number> {
 *   n = 0;
 *   append(_m: Message<string>): void {
 *     this.n++;
 *   }
 *   isReady(): boolean {
 *     return this.n >= 100;
 *   }
 *   flush(): number {
 *     const n = this.n;
 *     this.n = 0;
 *     return n;
 *   }
 * }
 * const options: BufferOptions = { maxBufferTimeMs: 500, name: "count" };
 * new BufferStep(new Count(), new Noop(), options).terminate();
 * ```
 */
export interface BufferOptions extends StepOptions {
  /**
   * Flush at the latest this many milliseconds after the first message of the batch was
   * added, from `poll()` even when no new message arrives.
   * @default undefined (no time limit)
   */
  maxBufferTimeMs?: number;
}

/**
 * Accumulates messages in `buffer` and hands on `new Value(buffer.flush(), offsets,
 * newestTimestamp)` whenever the buffer is ready, when `maxBufferTimeMs` has
 * passed since the batch's first message, and in `join`. This is Arroyo's `Buffer` step;
 * it is called `BufferStep` here so that importing it never shadows the global `Buffer` of
 * Node, Bun and Deno's Node compatibility.
 *
 * - The batch message carries the highest offset per partition of everything folded into
 *   it, filtered messages included, and the newest timestamp.
 * - Filtered messages are folded into the pending batch's offsets; they never overtake it
 *   (passing them ahead would commit past messages still held in the batch). When nothing
 *   is pending, their offsets are handed on as one filtered marker per chunk.
 * - When the next step rejects a batch, the batch is kept and retried (`append` never runs
 *   twice for one message); the step's queue fills and upstream is rejected.
 * - `append` may return a promise: it is awaited before the next message is added (input
 *   order kept, upstream held back by the queue meanwhile); a rejection counts as a throw.
 *   `isReady`, `isEmpty` and `flush` must be synchronous: a promise fails the step.
 * - Errors thrown by `append`, `isReady` or `flush` surface in `poll()` as a `StepError`
 *   naming the step and the message.
 *
 * Memory: the queue's high-water mark, plus what the buffer holds, plus at most one
 * batch waiting for the next step.
 *
 * @example Write CSV files of 1000 rows
 * ```ts
 * import { BufferStep, type BufferProtocol, CommitOffsets, type Message } from "@sluice/sluice";
 *
 * class Csv implements BufferProtocol<string, string> {
 *   #rows: string[] = [];
 *   append(m: Message<string>): void {
 *     this.#rows.push(m.payload);
 *   }
 *   isReady(): boolean {
 *     return this.#rows.length >= 1000;
 *   }
 *   flush(): string {
 *     const csv = this.#rows.join("\n");
 *     this.#rows = [];
 *     return csv;
 *   }
 * }
 *
 * const step = new BufferStep(new Csv(), new CommitOffsets(() => {}), { maxBufferTimeMs: 500 });
 * ```
 */
export class BufferStep<TIn, TOut> extends StreamStep<TIn, TOut> {
  readonly #buffer: BufferProtocol<TIn, TOut>;
  readonly #maxTime: number | undefined;
  #offsets = new Map<Partition, number>();
  #count = 0;
  #timestamp: number | undefined;
  #startedAt = 0;
  #last: Message<TIn> | undefined;
  /** A flushed message the next step rejected; handed on before anything else. */
  #held: Message<TOut> | undefined;
  /** True while `process` waits: only it may touch `#held` then. */
  #busy = false;
  /** Batches handed on so far (filtered markers not counted). */
  flushes = 0;

  /** Creates the step around `buffer`. */
  constructor(
    buffer: BufferProtocol<TIn, TOut>,
    next: ProcessingStrategy<TOut>,
    options: BufferOptions = {},
  ) {
    super("buffer", next, options);
    if (
      buffer === null || typeof buffer !== "object" || typeof buffer.append !== "function" ||
      typeof buffer.isReady !== "function" || typeof buffer.flush !== "function" ||
      (buffer.isEmpty !== undefined && typeof buffer.isEmpty !== "function")
    ) {
      throw new ConfigurationError(
        `step "${this.name}": buffer must implement append(message), isReady() and flush() ` +
          `(and optionally isEmpty())`,
      );
    }
    if (next === undefined || next === null) {
      throw new ConfigurationError(`step "${this.name}": a next step is required`);
    }
    this.#buffer = buffer;
    this.#maxTime = options.maxBufferTimeMs === undefined
      ? undefined
      : requireNonNegative(`step "${this.name}": maxBufferTimeMs`, options.maxBufferTimeMs);
  }

  /** Messages (not filtered) folded into the batch being built. */
  get pendingMessages(): number {
    return this.#count;
  }

  /** Folds one chunk of messages; returns a promise while a batch waits for the next step. */
  protected process(batch: Message<TIn>[]): void | Promise<void> {
    if (this.#held !== undefined) return this.#slow(batch, 0, undefined);
    return this.#run(batch, 0);
  }

  /** Folds `batch` from `i` synchronously; goes async at the first rejection or hold. */
  #run(batch: Message<TIn>[], i: number): void | Promise<void> {
    const stuck = this.#runUntilStuck(batch, i);
    if (stuck !== undefined) return this.#slow(batch, stuck.i, stuck.pending);
  }

  async #slow(
    batch: Message<TIn>[],
    i: number,
    pending: Pending,
  ): Promise<void> {
    this.#busy = true;
    try {
      for (;;) {
        const held = this.#held;
        if (held !== undefined) {
          await this.emitWhenRoom(held);
          if (this.abandoned) return;
          this.#held = undefined;
        }
        if (pending instanceof Promise) {
          // An asynchronous append of batch[i]: nothing after it is added until it settles.
          const r = await pending;
          if (this.abandoned) return;
          if (r === true) {
            pending = undefined;
            // A batch this flushes and the next step rejects is in #held: handed on above.
            this.#appended(batch[i++], this.clock.now());
          } else pending = r;
          continue;
        }
        if (pending === HOLD) {
          await this.waitForPoll();
          if (this.abandoned) return;
          // A long hold must not keep a batch that is due by time.
          if (this.#count > 0 && this.#due(this.clock.now())) {
            await this.emitWhenRoom(this.#take()!);
            if (this.abandoned) return;
          }
        } else if (pending !== undefined) {
          // Hand on what the batch holds first, so the invalid message's offset (forwarded
          // after the processor took the error) never overtakes earlier messages.
          const out = this.#take();
          if (out !== undefined) {
            await this.emitWhenRoom(out);
            if (this.abandoned) return;
          }
          await this.reportInvalid(pending, batch[i]);
          if (this.abandoned) return;
          i++;
        }
        pending = undefined;
        // Continue synchronously; a new rejection or hold comes back here through the
        // returned promise, which only exists when the run went async again.
        const r = this.#runUntilStuck(batch, i);
        if (r === undefined) return;
        i = r.i;
        pending = r.pending;
      }
    } finally {
      this.#busy = false;
    }
  }

  /**
   * Folds messages from `i` synchronously. Returns where it got stuck (a rejected batch is
   * then in `#held`, or the message at `i` is held or invalid), or undefined when done.
   */
  #runUntilStuck(
    batch: Message<TIn>[],
    i: number,
  ): { i: number; pending: Pending } | undefined {
    const now = this.clock.now();
    const maxTime = this.#maxTime;
    for (; i < batch.length; i++) {
      const m = batch[i];
      if (maxTime !== undefined && this.#count > 0 && now - this.#startedAt >= maxTime) {
        const out = this.#take()!;
        if (!this.emit(out)) {
          this.#held = out;
          return { i, pending: undefined };
        }
      }
      if (m.filtered) {
        this.#merge(m);
        continue;
      }
      let r: void | PromiseLike<void>;
      try {
        r = this.#buffer.append(m);
      } catch (e) {
        if (e instanceof MessageRejected) return { i, pending: HOLD };
        if (e instanceof InvalidMessage) return { i, pending: e };
        throw this.wrapError(e, m);
      }
      if (r !== undefined && isThenable(r)) return { i, pending: this.#settle(r, m) };
      if (this.#appended(m, now)) return { i: i + 1, pending: undefined };
    }
    if (this.#offsets.size > 0 && this.#isEmpty()) {
      const out = this.#take()!;
      if (!this.emit(out)) {
        this.#held = out;
        return { i: batch.length, pending: undefined };
      }
    }
    return undefined;
  }

  /**
   * Records `m` as added to the batch; flushes when due. True when the flushed batch was
   * rejected by the next step (it is in `#held`).
   */
  #appended(m: Message<TIn>, now: number): boolean {
    this.#merge(m);
    const t = m.timestamp;
    if (t !== undefined && (this.#timestamp === undefined || t > this.#timestamp)) {
      this.#timestamp = t;
    }
    this.#last = m;
    if (this.#count++ === 0) this.#startedAt = now;
    if (this.#due(now)) {
      const out = this.#take()!;
      if (!this.emit(out)) {
        this.#held = out;
        return true;
      }
    }
    return false;
  }

  /**
   * Awaits an asynchronous append: true once done, HOLD or the `InvalidMessage` it
   * rejected with; any other rejection fails the step. Never rejects.
   */
  #settle(r: PromiseLike<void>, m: Message<TIn>): Promise<true | typeof HOLD | InvalidMessage> {
    return Promise.resolve(r).then(
      () => true as const,
      (e) => {
        if (e instanceof MessageRejected) return HOLD;
        if (e instanceof InvalidMessage) return e;
        this.fail(this.wrapError(e, m));
        return HOLD;
      },
    );
  }

  /** Time-based and readiness flushes while no message arrives. */
  protected override onPoll(): void {
    if (this.#busy || this.abandoned) return;
    try {
      if (this.#held !== undefined) {
        if (!this.emit(this.#held)) return;
        this.#held = undefined;
      }
      if (this.#count > 0 && this.#due(this.clock.now())) {
        const out = this.#take()!;
        if (!this.emit(out)) this.#held = out;
      }
    } catch (e) {
      this.fail(e);
      throw e;
    }
  }

  /** `join`: hands on the held batch, then flushes the partial one. */
  protected override async onDrained(): Promise<void> {
    if (this.abandoned) return; // failed or terminated: nothing more is handed on
    const held = this.#held;
    if (held !== undefined) {
      await this.emitWhenRoom(held);
      if (this.abandoned) return;
      this.#held = undefined;
    }
    let out: Message<TOut> | undefined;
    try {
      out = this.#take();
    } catch (e) {
      this.fail(e);
      return;
    }
    if (out !== undefined) await this.emitWhenRoom(out);
  }

  #due(now: number): boolean {
    if (this.#maxTime !== undefined && now - this.#startedAt >= this.#maxTime) return true;
    try {
      return notThenable(this.#buffer.isReady(), "isReady()", "a boolean");
    } catch (e) {
      throw this.#batchError(e);
    }
  }

  #isEmpty(): boolean {
    if (this.#buffer.isEmpty === undefined) return this.#count === 0;
    try {
      return notThenable(this.#buffer.isEmpty(), "isEmpty()", "a boolean");
    } catch (e) {
      throw this.#batchError(e);
    }
  }

  #merge(m: Message<TIn>): void {
    const v = m.source;
    const offsets = this.#offsets;
    if (v instanceof BrokerValue) {
      const o = v.offset + 1;
      const cur = offsets.get(v.partition);
      if (cur === undefined || cur < o) offsets.set(v.partition, o);
    } else {
      for (const [p, o] of v.committable) {
        const cur = offsets.get(p);
        if (cur === undefined || cur < o) offsets.set(p, o);
      }
    }
  }

  /**
   * Takes the batch (or, when the buffer is empty, a filtered marker carrying the folded
   * offsets) and resets; undefined when there is nothing at all.
   */
  #take(): Message<TOut> | undefined {
    let out: Message<TOut>;
    if (!this.#isEmpty()) {
      let payload: TOut;
      try {
        payload = notThenable(this.#buffer.flush(), "flush()", "the payload");
      } catch (e) {
        throw this.#batchError(e);
      }
      out = new Value(payload, this.#offsets, this.#timestamp);
      this.flushes++;
    } else if (this.#offsets.size > 0) {
      out = new Value(FILTERED_PAYLOAD as unknown as TOut, this.#offsets);
    } else {
      this.#count = 0;
      return undefined;
    }
    this.#offsets = new Map();
    this.#count = 0;
    this.#timestamp = undefined;
    this.#last = undefined;
    return out;
  }

  #batchError(e: unknown): unknown {
    if (e instanceof StepError || e instanceof InvalidMessage) return e;
    const last = this.#last;
    return new StepError(
      this.name,
      last === undefined ? "(empty batch)" : `batch of ${this.#count} message(s) ending at ${last}`,
      e,
    );
  }
}
