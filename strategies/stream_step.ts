/**
 * `StreamStep`, the web-stream base of every built-in strategy: its input queue is a WHATWG
 * `WritableStream`, and `submit` is a synchronous front door onto it that throws
 * `MessageRejected` exactly when the queue's desired size is used up.
 *
 * Messages submitted in one turn of the event loop are written as one chunk (an array),
 * and the stream's `size()` counts the messages in it (or their bytes), so the high-water
 * mark keeps its meaning while the per-chunk promise cost is paid once per batch rather
 * than once per message. `chunkSize: 1` writes one message per chunk instead.
 *
 * @module
 */
import { type Clock, sleepUnless, systemClock } from "../clock.ts";
import { FILTERED_PAYLOAD, InvalidMessage, type Message, StepError } from "../types.ts";
import { ClosedError, ConfigurationError, MESSAGE_REJECTED, MessageRejected } from "../errors.ts";
import { requirePositiveInteger } from "../_validate.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { requireSync } from "./thenable.ts";
import { Waiters } from "./_waiters.ts";
import type { SluiceMetrics } from "../metrics/otel.ts";
import { type StepMeter, stepMeterFor } from "../metrics/step.ts";

/**
 * What a step's writable stream accepts: one message, or an array of them.
 *
 * @example Write one chunk of two messages, then one message
 * ```ts
 * import { BrokerValue, type Chunk, Noop, Partition, RunTask } from "@sluice/sluice";
 *
 * const p = Partition.of("t", 0);
 * const step = new RunTask((m: { payload: string }) => m.payload.length, new Noop());
 * const writer: WritableStreamDefaultWriter<Chunk<string>> = step.writable.getWriter();
 * await writer.write([new BrokerValue("a", p, 0, 0), new BrokerValue("b", p, 1, 0)]);
 * await writer.write(new BrokerValue("c", p, 2, 0));
 * await writer.close(); // joins the step
 * ```
 */
export type Chunk<T> = Message<T> | Message<T>[];

/**
 * Options shared by every built-in step.
 *
 * @example A step whose queue holds at most 16 MiB of payloads
 * ```ts
 * import { byteLength, Noop, RunTask, type StepOptions } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const options: StepOptions = {
 *   name: "parse",
 *   highWaterMark: 16 * 1024 * 1024,
 *   size: byteLength,
 *   maxBackoffMs: 5_000,
 * };
 * const step = new RunTask((m: { payload: string }) => JSON.parse(m.payload), new Noop(), options);
 * assertEquals(step.name, "parse");
 * ```
 */
export interface StepOptions {
  /** A name for logs, errors and metrics (attribute `step`). Defaults to the strategy's kind. */
  name?: string;
  /**
   * How much the step's input queue holds before `submit` rejects: in messages, or in the
   * unit of `size()` when given (for example bytes).
   * @default 1024
   */
  highWaterMark?: number;
  /**
   * Size of one message in the high-water mark's unit, for byte-bounded queues, e.g.
   * `(m) => m.payload.byteLength`. Synchronous: a promise from it is a
   * `ConfigurationError` thrown by `submit`.
   * @default every message counts 1
   */
  // deno-lint-ignore no-explicit-any
  size?: (message: Message<any>) => number;
  /**
   * Most messages written to the stream as one chunk; 1 = a chunk per message.
   * @default 256
   */
  chunkSize?: number;
  /**
   * Clock for time-based behaviour and join timeouts.
   * @default systemClock
   */
  clock?: Clock;
  /**
   * Longest wait, on `clock`, between retries of a message the step's function holds back
   * (throws `MessageRejected`): the wait starts at 10 ms and doubles up to this. When the
   * first `poll()` during a wait comes once a quarter of it has passed (as from a paused
   * processor, which polls rarely), the retry runs then: the processor's wake serves it
   * too, instead of a timer of its own shortly before or after. Once the
   * step is closed (revoke or shutdown) a held message is tried once more, then given up:
   * it and what follows are not handed on, so not committed, and are read again.
   * @default 1000
   */
  maxBackoffMs?: number;
  /**
   * Where the step reports backpressure metrics. Default: the processor's metrics when the
   * step is built by a factory of a `StreamProcessor` with a `meterProvider`; else none.
   */
  metrics?: SluiceMetrics;
}

/** Default high-water mark of a step's input queue, in messages. */
export const DEFAULT_HIGH_WATER_MARK = 1024;
/** Default most messages per chunk written to a step's stream. */
export const DEFAULT_CHUNK_SIZE = 256;
/** How often a waiting `join` re-kicks held work, in milliseconds. */
const JOIN_TICK_MS = 10;
/** Default {@link StepOptions.maxBackoffMs}. */
export const DEFAULT_MAX_BACKOFF_MS = 1000;
/** First wait before a held message is tried again. */
const FIRST_BACKOFF_MS = 10;

/**
 * Module-private: `emitAll` for an array the caller gives up (a {@link MapStep}'s chunk,
 * rewritten in place with its outputs), and the next step's side of it, which may take
 * that array as a chunk instead of copying it (and process it at once when its queue is
 * empty: a step's hand-over to a waiting next step skips the stream's write machinery).
 */
/** Marks a chunk a step may hand on without copying (shared with `map_step.ts`; not public). */
export const EMIT_OWNED: unique symbol = Symbol("sluice.emitOwned");
const SUBMIT_OWNED: unique symbol = Symbol("sluice.submitOwned");

/**
 * Returned by a transform to say "the user function asked to hold this message": the step
 * tries it again after a backoff (10 ms, doubling up to `maxBackoffMs`; or at the wait's
 * first `poll()`, when that comes after a quarter of it).
 *
 * @example A gate that holds messages while closed
 * ```ts
 * import { HOLD, MapStep, type Message, Noop, type ProcessingStrategy } from "@sluice/sluice";
 * import type { TransformResult } from "@sluice/sluice";
 *
 * class Gate extends MapStep<string, string> {
 *   open = true;
 *   constructor(next: ProcessingStrategy<string>) {
 *     super("gate", next);
 *   }
 *   protected transform(message: Message<string>): TransformResult<string> {
 *     return this.open ? message : HOLD;
 *   }
 * }
 * const gate = new Gate(new Noop());
 * gate.terminate();
 * ```
 */
export const HOLD: unique symbol = Symbol("hold");

/**
 * Base class of the built-in strategies. Subclasses implement {@link StreamStep.process},
 * which receives the messages of one chunk and hands results on with
 * {@link StreamStep.emit}; a returned promise keeps the chunk in the queue (and so holds
 * back upstream) until it settles.
 *
 * @example A step that hands every message on twice
 * ```ts
 * import { BrokerValue, type Message, Noop, Partition, RunTask } from "@sluice/sluice";
 * import { type ProcessingStrategy, StreamStep } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * class Twice<T> extends StreamStep<T> {
 *   constructor(next: ProcessingStrategy<T>) {
 *     super("twice", next);
 *   }
 *   protected process(batch: Message<T>[]): void | Promise<void> {
 *     return this.emitAll(batch.flatMap((m) => [m, m])); // waits if the next step is full
 *   }
 * }
 * const seen: string[] = [];
 * const step = new Twice(new RunTask((m: Message<string>) => seen.push(m.payload), new Noop()));
 * await ReadableStream.from([new BrokerValue("a", Partition.of("t", 0), 0, 0)]).pipeTo(step.writable);
 * assertEquals(seen, ["a", "a"]);
 * ```
 */
export abstract class StreamStep<TIn, TOut = TIn> implements ProcessingStrategy<TIn> {
  /** The step's name, used in errors and metrics. */
  readonly name: string;
  /** The next step, if any. */
  protected readonly next: ProcessingStrategy<TOut> | undefined;
  /** The clock in use. */
  protected readonly clock: Clock;

  /** The input queue; `submit` writes to it through `#writer`, which it holds for life. */
  readonly #queue: WritableStream<Chunk<TIn>>;
  readonly #writer: WritableStreamDefaultWriter<Chunk<TIn>>;
  /** The public `writable`, made on first use. */
  #input: WritableStream<Chunk<TIn>> | undefined;
  // deno-lint-ignore no-explicit-any
  readonly #sizeOf: ((message: Message<any>) => number) | undefined;
  readonly #chunkSize: number;
  #pending: Message<TIn>[] = [];
  #pendingSize = 0;
  /**
   * A lower bound of the writer's `desiredSize`, so `submit` need not ask the stream every
   * time: it is exact after each of our writes (the stream subtracts the same chunk size),
   * and the stream's own value only grows in between (when chunks finish). When the bound
   * shows room the stream has room; when it shows none, `submit` re-reads the stream.
   */
  #room = 0;
  #flushScheduled = false;
  readonly #maxBackoffMs: number;
  /** Aborted when the step is closed or abandoned: ends a backoff early. */
  #stopBackoff: AbortController | undefined;
  #closed = false;
  #abandoned = false;
  /** Aborted when the step is abandoned (see {@link StreamStep.signal}). */
  readonly #abort = new AbortController();
  #terminated = false;
  #error: unknown = undefined;
  #invalid: InvalidMessage | undefined;
  #closing: Promise<void> | undefined;
  #joinedNext = false;
  #drained: Promise<void> | undefined;
  /** Woken at every `poll()` (or join tick) and when the step is abandoned. */
  readonly #waiters = new Waiters();
  /** Backpressure instrumentation; undefined (and free) without metrics. */
  readonly #metrics: StepMeter | undefined;
  /** Chunks written to the queue whose processing has not finished (see `#writeChunk`). */
  #inQueue = 0;
  /** True while `process` runs (synchronously): a chunk submitted meanwhile is queued. */
  #processing = false;
  /** A chunk processed at once whose processing goes on (`#running`), on its way into the queue. */
  #runningChunk: Message<TIn>[] | undefined;
  #running: Promise<void> | undefined;
  readonly #leftQueue = () => {
    this.#inQueue--;
  };
  readonly #flushTask = () => {
    this.#flushScheduled = false;
    this.#flush();
  };

  /** Sets up the queue. `kind` is the default name. */
  protected constructor(
    kind: string,
    next: ProcessingStrategy<TOut> | undefined,
    options: StepOptions = {},
  ) {
    this.name = options.name ?? kind;
    if (typeof this.name !== "string" || this.name.length === 0) {
      throw new ConfigurationError(`step name must be a non-empty string, got ${options.name}`);
    }
    this.next = next;
    this.clock = options.clock ?? systemClock;
    const hwm = options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK;
    if (typeof hwm !== "number" || !(hwm > 0) || !Number.isFinite(hwm)) {
      throw new ConfigurationError(
        `step "${this.name}": highWaterMark must be a finite number > 0, got ${String(hwm)}`,
      );
    }
    if (options.size === undefined) {
      requirePositiveInteger(`step "${this.name}": highWaterMark`, hwm);
    } else if (typeof options.size !== "function") {
      throw new ConfigurationError(
        `step "${this.name}": size must be a function (message) => number`,
      );
    } else if (options.highWaterMark === undefined) {
      throw new ConfigurationError(
        `step "${this.name}": a size() function needs an explicit highWaterMark in the same ` +
          `unit (e.g. bytes: { size: byteLength, highWaterMark: 16 * 1024 * 1024 })`,
      );
    }
    const maxBackoff = options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS;
    if (typeof maxBackoff !== "number" || !(maxBackoff > 0) || !Number.isFinite(maxBackoff)) {
      throw new ConfigurationError(
        `step "${this.name}": maxBackoffMs must be a finite number > 0, got ${String(maxBackoff)}`,
      );
    }
    this.#maxBackoffMs = maxBackoff;
    this.#chunkSize = requirePositiveInteger(
      `step "${this.name}": chunkSize`,
      options.chunkSize ?? DEFAULT_CHUNK_SIZE,
    );
    const userSize = options.size;
    // A size() that returns a promise would count as NaN: stop at the first one instead.
    const sizeOf = this.#sizeOf = userSize === undefined ? undefined : (m: Message<unknown>) => {
      const n = userSize(m);
      if (typeof n === "number") return n;
      return requireSync(this.name, "size()", "a number", "Measure the payload as it is.", n);
    };
    const chunkSizeOf = sizeOf
      ? (c: Chunk<TIn>) => {
        if (!Array.isArray(c)) return sizeOf(c);
        let s = 0;
        for (let i = 0; i < c.length; i++) s += sizeOf(c[i]);
        return s;
      }
      : (c: Chunk<TIn>) => Array.isArray(c) ? c.length : 1;
    this.#queue = new WritableStream<Chunk<TIn>>(
      { write: (chunk) => this.#write(chunk) },
      { highWaterMark: hwm, size: chunkSizeOf },
    );
    this.#writer = this.#queue.getWriter();
    this.#room = this.#writer.desiredSize ?? 0;
    this.#metrics = stepMeterFor(
      options.metrics,
      this.name,
      options.name !== undefined,
      this.clock,
      next !== undefined && #metrics in next ? next.#metrics : undefined,
      next === undefined ? undefined : stepLabel(next),
    );
  }

  /**
   * The step's input as a standard `WritableStream` of messages (or arrays of them) that
   * other code can `pipeTo` or write to, e.g. `source.pipeTo(step.writable)`.
   *
   * - It feeds the same queue as `submit`, with the same high-water mark: a write resolves
   *   once the step's queue has taken the message, so `writer.ready` (and a pipe) waits
   *   while the queue is full, and a source piped in is not pulled meanwhile. What the
   *   stream itself holds on top is one chunk.
   * - While a write waits for room it polls the step every few milliseconds (nobody else
   *   polls a step fed by a pipe), so held work and the next steps move on.
   * - A step failure rejects the write (a pipe then cancels its source); closing the stream
   *   closes the step and joins it and the steps after it, so `await source.pipeTo(step.writable)`
   *   resolves once everything piped in was processed and handed on (and, through
   *   `CommitOffsets`, committed). Aborting it terminates the step.
   * - Use either this stream or `submit` (a processor) to feed one step, not both at once.
   *
   * @example Pipe a stream of messages into a step
   * ```ts
   * import { CommitOffsets, type Message, RunTask } from "@sluice/sluice";
   * import { LocalBroker } from "@sluice/sluice/local";
   *
   * const broker = new LocalBroker<string>();
   * broker.createTopic("t", 1);
   * const sent = await broker.produce("t", "hello");
   * const messages = ReadableStream.from([sent]);
   * const step = new RunTask((m: Message<string>) => m.payload.length, new CommitOffsets(() => {}));
   * await messages.pipeTo(step.writable);
   * ```
   */
  get writable(): WritableStream<Chunk<TIn>> {
    return this.#input ??= new WritableStream<Chunk<TIn>>({
      write: (chunk) => this.#accept(chunk),
      close: () => this.join(),
      abort: () => this.terminate(),
    });
  }

  /** A chunk written to `writable`: submitted message by message, waiting for room. */
  #accept(chunk: Chunk<TIn>): void | Promise<void> {
    const batch = Array.isArray(chunk) ? chunk : [chunk];
    let i = 0;
    try {
      for (; i < batch.length; i++) this.submit(batch[i]);
      return;
    } catch (e) {
      if (!(e instanceof MessageRejected)) throw e;
    }
    return this.#acceptSlow(batch, i);
  }

  async #acceptSlow(batch: Message<TIn>[], i: number): Promise<void> {
    while (i < batch.length) {
      this.poll(); // rethrows a failure of this step or the next ones
      await sleepUnless(this.clock, JOIN_TICK_MS, this.ready);
      try {
        for (; i < batch.length; i++) this.submit(batch[i]);
      } catch (e) {
        if (!(e instanceof MessageRejected)) throw e;
      }
    }
  }

  /**
   * Room left in the input queue: the stream's `desiredSize` minus messages submitted this
   * turn and not yet written. `submit` rejects when this is `<= 0`.
   */
  get desiredSize(): number {
    return (this.#writer.desiredSize ?? 0) - this.#pendingSize;
  }

  /** The stream writer's `ready` promise: resolves when the queue has room again. */
  get ready(): Promise<void> {
    return this.#writer.ready;
  }

  /** True once `close` or `terminate` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** True when the step's work was abandoned (terminate, or a join timeout). */
  protected get abandoned(): boolean {
    return this.#abandoned;
  }

  /**
   * Aborts when the step gives up on its work: on `terminate`, when `join` runs out of time
   * with work left, and when the step fails (or gives up a held message at close), that is
   * when {@link StreamStep.abandoned} becomes true. A subclass that starts asynchronous
   * work (a `fetch`, a query) passes it on, so that work stops when nobody waits for it.
   *
   * @example Stop a lookup when the step gives up
   * ```ts
   * import { CommitOffsets, type Message, type ProcessingStrategy, StreamStep } from "@sluice/sluice";
   *
   * async function lookup(id: string, signal: AbortSignal): Promise<number> {
   *   const res = await fetch(`https://example.com/users/${id}`, { signal });
   *   await res.body?.cancel();
   *   return res.status;
   * }
   *
   * class Lookup extends StreamStep<string, number> {
   *   constructor(next: ProcessingStrategy<number>) {
   *     super("lookup", next);
   *   }
   *   protected async process(batch: Message<string>[]): Promise<void> {
   *     for (const m of batch) {
   *       const found = await lookup(m.payload, this.signal); // stops when the step gives up
   *       await this.emitWhenRoom(m.replacePayload(found));
   *     }
   *   }
   * }
   * const step = new Lookup(new CommitOffsets(() => {}));
   * step.terminate(); // aborts the signal: lookups in flight stop
   * ```
   */
  protected get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Queues a message; throws `MessageRejected` when the queue is full. */
  submit(message: Message<TIn>): void {
    if (this.#closed) {
      throw new ClosedError(
        `step "${this.name}" is closed: submit() was called after close() or terminate(); ` +
          `create a new pipeline for new messages`,
      );
    }
    if (this.#error !== undefined) throw this.#error;
    if (this.#room - this.#pendingSize <= 0) {
      this.#room = this.#writer.desiredSize ?? 0;
      if (this.#room - this.#pendingSize <= 0) {
        this.#flush();
        this.#metrics?.rejectedUpstream(this.#writer.ready);
        throw MESSAGE_REJECTED;
      }
    }
    const meter = this.#metrics;
    if (meter !== undefined && meter.sending) meter.relieveUpstream();
    // Sized first: a `size` that throws must not leave the message queued.
    const size = this.#sizeOf ? this.#sizeOf(message) : 1;
    this.#pending.push(message);
    this.#pendingSize += size;
    if (this.#pending.length >= this.#chunkSize) this.#flush();
    else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flushTask);
    }
  }

  /**
   * Submits `messages[from..]` in order until the queue is full, writing whole chunks
   * straight from the array; returns the index of the first message not taken. Same
   * outcome as calling `submit` for each, without its per-message bookkeeping. A subclass
   * that overrides `submit` gets exactly that: its `submit`, message by message.
   */
  submitMany(messages: readonly Message<TIn>[], from: number): number {
    const n = messages.length;
    if (from >= n) return from;
    if (this.submit !== StreamStep.prototype.submit) return this.#submitEach(messages, from);
    if (this.#closed) this.submit(messages[from]); // throws the ClosedError
    if (this.#error !== undefined) throw this.#error;
    let i = from;
    while (i < n) {
      // A chunk written below may have been processed at once and failed the step: take
      // nothing more (the caller's next submit throws the failure).
      if (this.#error !== undefined) break;
      if (this.#room - this.#pendingSize <= 0) {
        this.#room = this.#writer.desiredSize ?? 0;
        if (this.#room - this.#pendingSize <= 0) {
          this.#flush();
          this.#metrics?.rejectedUpstream(this.#writer.ready);
          break;
        }
      }
      if (i === from) {
        // Taking a message ends a send-side episode, as in `submit`.
        const meter = this.#metrics;
        if (meter !== undefined && meter.sending) meter.relieveUpstream();
      }
      const sizeOf = this.#sizeOf;
      if (sizeOf !== undefined) {
        // Sized messages: as `submit` does, one at a time (each may use several units). A
        // `size` that throws is thrown for the first message; after that, the caller's next
        // submit of messages[i] throws it, so nothing taken is ever handed back.
        let size: number;
        try {
          size = sizeOf(messages[i]);
        } catch (e) {
          if (i > from) break;
          throw e;
        }
        this.#pending.push(messages[i++]);
        this.#pendingSize += size;
        if (this.#pending.length >= this.#chunkSize) this.#flush();
        continue;
      }
      const take = Math.min(
        n - i,
        this.#room - this.#pendingSize,
        this.#chunkSize - this.#pending.length,
      );
      if (this.#pending.length === 0 && take === this.#chunkSize) {
        // A whole chunk: written as a slice of the caller's array.
        this.#enqueue(take === 1 ? messages[i] : messages.slice(i, i + take), take);
      } else {
        for (let k = 0; k < take; k++) this.#pending.push(messages[i + k]);
        this.#pendingSize += take;
        if (this.#pending.length >= this.#chunkSize) this.#flush();
      }
      i += take;
    }
    if (this.#pending.length > 0 && !this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flushTask);
    }
    return i;
  }

  /**
   * `submitMany(messages, 0)` for an array its caller gives up: when it all fits in one
   * chunk and nothing is pending, the array itself is the chunk (no copy), processed at
   * once when the queue holds nothing (see `#writeChunk`), else written to the queue.
   */
  [SUBMIT_OWNED](messages: Message<TIn>[]): number {
    const n = messages.length;
    if (
      n > 1 && n <= this.#chunkSize && this.#pending.length === 0 && this.#sizeOf === undefined &&
      this.#room >= n && this.#error === undefined && !this.#closed &&
      this.submit === StreamStep.prototype.submit
    ) {
      const meter = this.#metrics;
      if (meter !== undefined && meter.sending) meter.relieveUpstream();
      this.#writeChunk(messages, n);
      return n;
    }
    return this.submitMany(messages, 0);
  }

  /** `submitMany` through an overridden `submit`, one message at a time. */
  #submitEach(messages: readonly Message<TIn>[], from: number): number {
    let i = from;
    try {
      for (; i < messages.length; i++) this.submit(messages[i]);
    } catch (e) {
      // A failure after some were taken surfaces on the caller's next submit of messages[i].
      if (e instanceof MessageRejected || i > from) return i;
      throw e;
    }
    return i;
  }

  /** Rethrows failures, wakes held work, runs the step's timers, then polls the next step. */
  poll(): void {
    if (this.#error !== undefined) throw this.#error;
    const invalid = this.#invalid;
    if (invalid !== undefined) {
      this.#invalid = undefined;
      this.#waiters.wake();
      throw invalid;
    }
    this.#waiters.wake();
    const meter = this.#metrics;
    if (meter !== undefined && meter.sending && this.desiredSize > 0) meter.relieveUpstream();
    this.onPoll();
    this.next?.poll();
  }

  /** Stops accepting messages; queued ones are still processed. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopBackoff?.abort();
    this.#flush();
    this.#closing = this.#writer.close();
    this.#metrics?.relieveUpstream();
  }

  /**
   * Waits for queued work to be processed and handed on, then closes and joins the next
   * step, all within `timeoutMs`. Work left when time runs out is abandoned.
   */
  async join(timeoutMs?: number): Promise<void> {
    if (this.#terminated) return; // abandoned: nothing to finish, nothing to commit
    this.close();
    const deadline = timeoutMs === undefined ? Infinity : this.clock.now() + timeoutMs;
    const drained = await this.#waitUntil(
      this.#drained ??= this.#closing!.then(() => this.onDrained()),
      deadline,
    );
    if (!drained) this.#abandon();
    if (this.#error !== undefined) {
      this.next?.terminate();
      throw this.#error;
    }
    if (!this.next) return;
    if (!this.#joinedNext) {
      this.#joinedNext = true;
      this.next.close();
    }
    const remaining = deadline === Infinity ? undefined : Math.max(0, deadline - this.clock.now());
    await this.next.join(remaining);
  }

  /** Abandons queued and held work and terminates the next step. */
  terminate(): void {
    this.#closed = true;
    this.#terminated = true;
    this.#pending = [];
    this.#pendingSize = 0;
    this.#abandon();
    this.next?.terminate();
  }

  /** Processes one chunk's messages. Return a promise to hold the chunk until it settles. */
  protected abstract process(batch: Message<TIn>[]): void | Promise<void>;

  /** Called on every `poll()` before the next step is polled (timers, time-based flushes). */
  protected onPoll(): void {}

  /**
   * Called in `join` once every queued chunk has been processed: flush what the step
   * holds (a partial batch, say). May wait, using {@link StreamStep.emitAll}.
   */
  protected onDrained(): void | Promise<void> {}

  /**
   * Hands `message` to the next step. Returns false when the next step rejected it: the
   * caller keeps it and retries after {@link StreamStep.waitForRoom}.
   */
  protected emit(message: Message<TOut>): boolean {
    try {
      this.next!.submit(message);
    } catch (e) {
      if (e instanceof MessageRejected) {
        this.#metrics?.rejectedDownstream();
        return false;
      }
      throw e;
    }
    const meter = this.#metrics;
    if (meter !== undefined && meter.receiving) meter.acceptedDownstream();
    return true;
  }

  /**
   * Emits every message of `out` from index `from`, waiting for room whenever the next
   * step rejects. Synchronous (returns undefined) when nothing was rejected.
   */
  protected emitAll(out: Message<TOut>[], from = 0): void | Promise<void> {
    const next = this.next!;
    if (next.submitMany === undefined) {
      for (let i = from; i < out.length; i++) {
        if (!this.emit(out[i])) return this.#emitSlow(out, i);
      }
      return;
    }
    if (from >= out.length) return;
    // One call for the lot; the same outcome as `emit` one by one.
    const taken = next.submitMany(out, from);
    const meter = this.#metrics;
    if (meter !== undefined) {
      if (taken > from && meter.receiving) meter.acceptedDownstream();
      if (taken < out.length) meter.rejectedDownstream();
    }
    if (taken < out.length) return this.#emitSlow(out, taken, true);
  }

  /** {@link StreamStep.emitAll} of an array nobody uses afterwards (see `EMIT_OWNED`). */
  [EMIT_OWNED](out: Message<TOut>[]): void | Promise<void> {
    const next = this.next!;
    if (!(SUBMIT_OWNED in next)) return this.emitAll(out);
    if (out.length === 0) return;
    const taken = (next as unknown as StreamStep<TOut>)[SUBMIT_OWNED](out);
    const meter = this.#metrics;
    if (meter !== undefined) {
      if (taken > 0 && meter.receiving) meter.acceptedDownstream();
      if (taken < out.length) meter.rejectedDownstream();
    }
    if (taken < out.length) return this.#emitSlow(out, taken, true);
  }

  async #emitSlow(out: Message<TOut>[], i: number, rejected = false): Promise<void> {
    if (rejected) {
      // out[i] was just rejected: wait for room before trying again.
      await this.waitForRoom();
      if (this.#abandoned) return;
    }
    while (i < out.length) {
      if (this.emit(out[i])) i++;
      else {
        await this.waitForRoom();
        if (this.#abandoned) return;
      }
    }
  }

  /**
   * For a step that hands results on from its own loop: emits `message` and returns true
   * when the next step took it. Returns false when it did not: either the next step failed
   * (the step is failed with that error, and `abandoned` is true) or it is full, and then
   * `whenRoom` runs once there is room.
   */
  protected emitOrWhenRoom(message: Message<TOut>, whenRoom: () => void): boolean {
    let accepted: boolean;
    try {
      accepted = this.emit(message);
    } catch (e) {
      this.fail(e);
      return false;
    }
    if (!accepted) this.waitForRoom().then(whenRoom);
    return accepted;
  }

  /** Emits one message, waiting for room as long as needed (or until abandoned). */
  protected async emitWhenRoom(message: Message<TOut>): Promise<void> {
    while (!this.emit(message)) {
      await this.waitForRoom();
      if (this.#abandoned) return;
    }
  }

  /** Resolves when the next step signals room, at the next `poll()`, or when abandoned. */
  protected waitForRoom(): Promise<void> {
    const ready = this.next?.ready;
    const poll = this.waitForPoll();
    return ready ? Promise.race([ready, poll]) : poll;
  }

  /**
   * Waits before held work is tried again (`attempt` 0, 1, 2...): 10 ms doubling up to
   * `maxBackoffMs`, on the step's clock, or until the wait's first `poll()` when it comes
   * once a quarter of that has passed (see {@link StepOptions.maxBackoffMs}). Resolves at
   * once when the step is closed or abandoned: after `close` the caller tries once more
   * and, held again, calls {@link StreamStep.giveUpHeld}.
   */
  protected backoff(attempt: number): Promise<void> {
    if (this.#closed || this.#abandoned) return Promise.resolve();
    const stop = this.#stopBackoff ??= new AbortController();
    const ms = Math.min(this.#maxBackoffMs, FIRST_BACKOFF_MS * 2 ** Math.min(attempt, 30));
    return this.#sleepOrLatePoll(ms, stop.signal);
  }

  /**
   * Sleeps `ms` on the step's clock, or less: until the first `poll()` of the wait when it
   * comes once a quarter of `ms` has passed (a paused processor's wake then serves the
   * retry too: one wake-up instead of two unaligned ones), until `stop` aborts, or until
   * the step is abandoned.
   */
  async #sleepOrLatePoll(ms: number, stop: AbortSignal): Promise<void> {
    const clock = this.clock;
    const early = clock.now() + ms / 4;
    const over = new AbortController();
    const end = () => over.abort();
    stop.addEventListener("abort", end, { once: true });
    const timer = clock.sleep(ms, over.signal).then(end);
    try {
      // Only the first poll of the wait counts: a busy loop polling every few milliseconds
      // polls early in it, and the retry then waits for the timer, as it always did.
      await Promise.race([timer, this.waitForPoll()]);
      if (!this.#abandoned && clock.now() < early) await timer;
    } finally {
      end();
      stop.removeEventListener("abort", end);
    }
  }

  /**
   * The step was closed while `message` is held and it was held again on its last try:
   * the step stops there. Work handed on before it is joined and committed as usual;
   * `message` and everything after it are not handed on (nor committed) and are read
   * again by whoever consumes the partition next.
   */
  protected giveUpHeld(message: Message<TIn>): void {
    if (this.#abandoned) return;
    console.warn(
      `sluice: step "${this.name}" stopped retrying ${message} at close (its function ` +
        `still throws MessageRejected); it and the messages after it are not committed and ` +
        `will be read again`,
    );
    this.#abandon();
  }

  /** Resolves at the next `poll()` (or join tick), or when the step is abandoned. */
  protected waitForPoll(): Promise<void> {
    if (this.#abandoned) return Promise.resolve();
    return this.#waiters.wait();
  }

  /**
   * Sleeps on the step's clock until the time `at`, or less when the step is abandoned
   * (looked at on every `poll()`). The caller checks {@link StreamStep.abandoned} after.
   */
  protected async sleepUntil(at: number): Promise<void> {
    while (!this.#abandoned) {
      const left = at - this.clock.now();
      if (left <= 0) return;
      await sleepUnless(this.clock, left, this.waitForPoll());
    }
  }

  /**
   * Reports an invalid message to the processor (through `poll` or `join`) and waits until
   * it has been taken; then forwards a filtered marker so its offset can be committed once
   * the processor allows it. Returns when the marker has been handed on.
   */
  protected async reportInvalid(error: InvalidMessage, message: Message<TIn>): Promise<void> {
    error.step ??= this.name;
    this.#invalid = error;
    while (this.#invalid === error && !this.#abandoned) await this.waitForPoll();
    if (this.#abandoned) return;
    await this.emitWhenRoom(message.replacePayload(FILTERED_PAYLOAD) as unknown as Message<TOut>);
  }

  /**
   * For a subclass whose own `submit` rejects for a reason other than a full queue (an open
   * circuit breaker, say): call it just before throwing `MessageRejected`, so the rejection
   * counts in the step's send-side backpressure metrics. The episode ends when `ready`
   * resolves or a submit is accepted. Free without metrics.
   */
  protected recordRejection(ready: Promise<void> = this.ready): void {
    this.#metrics?.rejectedUpstream(ready);
  }

  /**
   * Counts `n` messages this step dropped on purpose (filtered out, shed under load) in
   * the `sluice.step.dropped` metric, attribute `reason`. Free without metrics.
   */
  protected countDropped(n: number, reason: string): void {
    this.#metrics?.dropped(n, reason);
  }

  /** Wraps a user-function failure so the message is identified (invalid messages pass as-is). */
  protected wrapError(error: unknown, message: Message<TIn>): unknown {
    if (error instanceof InvalidMessage || error instanceof StepError) return error;
    return new StepError(this.name, message, error);
  }

  /** Records a failure: `poll`, `submit` and `join` rethrow it; remaining work is dropped. */
  protected fail(error: unknown): void {
    if (this.#error === undefined) this.#error = error ?? new Error("unknown failure");
    this.#abandon();
  }

  /** The sink's `write`: processes a chunk from the queue (or waits for one begun at once). */
  #write(chunk: Chunk<TIn>): void | Promise<void> {
    let running: Promise<void> | undefined;
    if (chunk === this.#runningChunk) {
      // Processed at once by #writeChunk, still working: wait for it here, in its place.
      running = this.#running;
      this.#runningChunk = this.#running = undefined;
    } else running = this.#run(Array.isArray(chunk) ? chunk : [chunk]);
    if (running === undefined) this.#inQueue--;
    else return running.then(this.#leftQueue);
  }

  /** Processes one chunk; returns a promise (that never rejects) while it works on it. */
  #run(batch: Message<TIn>[]): Promise<void> | undefined {
    if (this.#abandoned) return;
    this.#metrics?.count(batch.length);
    this.#processing = true;
    try {
      const r = this.process(batch);
      if (r !== undefined) return r.then(undefined, (e) => this.fail(e));
    } catch (e) {
      this.fail(e);
    } finally {
      this.#processing = false;
    }
  }

  #flush(): void {
    const n = this.#pending.length;
    if (n === 0) return;
    const chunk = n === 1 ? this.#pending[0] : this.#pending;
    const size = this.#pendingSize;
    this.#pending = [];
    this.#pendingSize = 0;
    this.#enqueue(chunk, size);
  }

  /**
   * Takes `chunk` (an array handed over by the previous step, of `size` units) into the
   * queue. When the queue holds nothing (no chunk queued or being processed) and the step
   * is not inside its own `process`, the chunk is processed at once instead, as the stream
   * does with a write to an idle queue, without the write, its promises and queue entry.
   * If `process` returns a promise (a hold, an awaited function), the chunk then takes its
   * place in the queue until the promise settles, so it counts against the high-water mark
   * and holds back upstream exactly as a written chunk does. Only the hand-over between
   * steps (`SUBMIT_OWNED`) comes here: `submit` and `submitMany` always write to the queue,
   * so what a producer can submit in one turn stays bounded by the high-water mark.
   */
  #writeChunk(chunk: Message<TIn>[], size: number): void {
    if (this.#inQueue === 0 && !this.#processing) {
      const running = this.#run(chunk);
      if (running === undefined) return;
      this.#runningChunk = chunk;
      this.#running = running;
    }
    this.#enqueue(chunk, size);
  }

  /** Writes `chunk` (of `size` units) to the queue. */
  #enqueue(chunk: Chunk<TIn>, size: number): void {
    this.#room -= size;
    this.#inQueue++;
    // The sink never rejects (failures are recorded instead), so the promise needs no handler.
    this.#writer.write(chunk);
  }

  /** The one place a step becomes abandoned; aborts {@link StreamStep.signal} last. */
  #abandon(): void {
    this.#abandoned = true;
    this.#stopBackoff?.abort();
    this.#metrics?.endAll();
    this.#waiters.wake();
    this.#abort.abort();
  }

  /**
   * Waits for `done`, re-kicking held work here and downstream every few milliseconds
   * (nobody else polls during a join). Returns false if the deadline passed first.
   */
  async #waitUntil(done: Promise<void>, deadline: number): Promise<boolean> {
    let finished = false;
    let failure: { error: unknown } | undefined;
    const settled = done.then(() => {
      finished = true;
    }, (error) => {
      failure = { error };
    });
    while (!finished) {
      if (this.#invalid !== undefined) {
        const invalid = this.#invalid;
        this.#invalid = undefined;
        this.#waiters.wake();
        throw invalid;
      }
      if (this.#error !== undefined) return true;
      const left = deadline - this.clock.now();
      if (left <= 0) return false;
      await sleepUnless(this.clock, Math.min(left, JOIN_TICK_MS), settled);
      if (failure !== undefined) throw failure.error;
      if (!finished) {
        this.#waiters.wake();
        try {
          this.next?.poll();
        } catch (e) {
          if (e instanceof InvalidMessage) throw e;
          this.fail(e);
        }
      }
    }
    return true;
  }
}

/** A strategy's name for metrics: its `name` when it has one, else its class name. */
function stepLabel(strategy: object): string {
  const name = (strategy as { name?: unknown }).name;
  return typeof name === "string" && name.length > 0 ? name : strategy.constructor.name;
}
