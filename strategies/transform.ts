/**
 * `TransformStep`: any standard `TransformStream` (or readable/writable pair) as a step of
 * a pipeline, with offsets preserved and backpressure flowing through it.
 *
 * @module
 */
import { type Message, StepError } from "../types.ts";
import { ConfigurationError } from "../errors.ts";
import { requirePositiveInteger } from "../_validate.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import {
  DEFAULT_CHUNK_SIZE,
  DEFAULT_HIGH_WATER_MARK,
  type StepOptions,
  StreamStep,
} from "./stream_step.ts";

/**
 * Options of a {@link TransformStep}.
 *
 * @example At most 64 messages inside the transform
 * ```ts
 * import { Noop, TransformStep, type TransformStepOptions } from "@sluice/sluice";
 *
 * const options: TransformStepOptions = { maxInFlight: 64, name: "trim" };
 * const trim = new TransformStream<string, string>({
 *   transform: (s, controller) => controller.enqueue(s.trim()),
 * });
 * new TransformStep(trim, new Noop(), options).terminate();
 * ```
 */
export interface TransformStepOptions extends StepOptions {
  /**
   * Most messages inside the transform at once: written to it and not yet handed on.
   * @default the step's `highWaterMark` (256 when the queue is sized in bytes)
   */
  maxInFlight?: number;
}

/**
 * The pair a `TransformStream` is: what `pipeThrough` accepts.
 *
 * @example A hand-made pair (an identity stream) for a `TransformStep`
 * ```ts
 * import { Noop, type TransformPair, TransformStep } from "@sluice/sluice";
 *
 * const { writable, readable } = new TransformStream<string, string>();
 * const pair: TransformPair<string, string> = { writable, readable };
 * new TransformStep(pair, new Noop()).terminate();
 * ```
 */
export interface TransformPair<TIn, TOut> {
  /** Where payloads are written. */
  readonly writable: WritableStream<TIn>;
  /** Where their results are read, one per payload, in order. */
  readonly readable: ReadableStream<TOut>;
}

class Entry<TIn, TOut> {
  out: TOut | undefined = undefined;
  /** An output was read for it. */
  has = false;
  /** The transform's writable side finished taking its payload (`write()` resolved). */
  written = false;
  readonly message: Message<TIn>;
  readonly real: boolean;
  /** Position in the stream of messages, to order entries. */
  readonly seq: number;
  constructor(message: Message<TIn>, real: boolean, seq: number) {
    this.message = message;
    this.real = real;
    this.seq = seq;
  }
}

const ignore = () => {};

/**
 * Runs payloads through a standard `TransformStream` that yields **exactly one output per
 * input** (a decoder, a parser, a `TransformStream` you wrote), and hands on each output
 * with the offsets and timestamp of the message it came from, in order.
 *
 * - Payloads are written to the transform's `writable`; outputs are read from its
 *   `readable` and paired with the input messages first in, first out.
 * - Backpressure flows through: at most `maxInFlight` messages are inside the transform
 *   or waiting for the next step; beyond that the step's queue fills and upstream is
 *   rejected. A next step that rejects stops outputs from being handed on, not read.
 * - Filtered messages do not go through the transform; they keep their place among the
 *   real ones and are handed on in order.
 * - An error from the transform surfaces in `poll()` as a `StepError` naming the step and
 *   the oldest message still waiting for its output.
 * - An output is handed on only once the transform has finished taking its input (the
 *   `write` of that payload resolved) and no later input was given an output meanwhile:
 *   a transform that yields two outputs for one input fails the step, whatever
 *   `maxInFlight` is, before anything mispaired is handed on or committed, with a
 *   `StepError` naming that message (partition and offset). When `transform` is a
 *   `TransformStream`, an input it finishes without an output fails the step the same
 *   way (its outputs must be enqueued before `transform()` returns or settles). For
 *   another readable/writable pair (a `pipeThrough` chain, `TextDecoderStream`), whose
 *   outputs may lag behind, extra outputs are caught as soon as they are read, and a
 *   missing one only when the transform ends (in `join`). Use `Unfold` or `RunTask` for
 *   anything that is not one-to-one. `TextDecoderStream`, for example, yields nothing for
 *   an empty chunk.
 * - A `TransformStream` can be used once: build the step (and the stream) in
 *   `createWithPartitions`.
 *
 * Each message costs a `write` and a `read` promise: prefer `RunTask` for plain
 * synchronous functions, and use this step to reuse existing stream transforms.
 *
 * @example Parse JSON with a TransformStream
 * ```ts
 * import { CommitOffsets, TransformStep } from "@sluice/sluice";
 *
 * const decoder = new TextDecoder();
 * const parse = new TransformStream<Uint8Array, unknown>({
 *   transform(bytes, controller) {
 *     controller.enqueue(JSON.parse(decoder.decode(bytes)));
 *   },
 * });
 * const step = new TransformStep(parse, new CommitOffsets(() => {}), { name: "parse-json" });
 * ```
 */
export class TransformStep<TIn, TOut> extends StreamStep<TIn, TOut> {
  readonly #writer: WritableStreamDefaultWriter<TIn>;
  readonly #reader: ReadableStreamDefaultReader<TOut>;
  readonly #limit: number;
  #fifo: Entry<TIn, TOut>[] = [];
  #head = 0;
  /** Index in `#fifo` from which to look for the next real entry awaiting output. */
  #nextOut = 0;
  #pumping: Promise<void> | undefined;
  #space: (() => void) | undefined;
  readonly #reading: Promise<void>;
  /** The transform is a `TransformStream`: an input it finishes has its output already read. */
  readonly #strict: boolean;
  /** The last real message written, to name in an error once it left the queue. */
  #lastReal: Message<TIn> | undefined;
  #seq = 0;

  /** Creates the step around `transform` (a `TransformStream` or any readable/writable pair). */
  constructor(
    transform: TransformPair<TIn, TOut>,
    next: ProcessingStrategy<TOut>,
    options: TransformStepOptions = {},
  ) {
    super("transform", next, options);
    if (
      transform === null || typeof transform !== "object" ||
      !(transform.writable instanceof WritableStream) ||
      !(transform.readable instanceof ReadableStream)
    ) {
      throw new ConfigurationError(
        `step "${this.name}": transform must be a TransformStream (or { writable, readable })`,
      );
    }
    if (transform.writable.locked || transform.readable.locked) {
      throw new ConfigurationError(
        `step "${this.name}": the transform is already in use (its streams are locked); ` +
          `create a new TransformStream for each pipeline, inside createWithPartitions`,
      );
    }
    if (next === undefined || next === null) {
      throw new ConfigurationError(`step "${this.name}": a next step is required`);
    }
    this.#limit = requirePositiveInteger(
      `step "${this.name}": maxInFlight`,
      options.maxInFlight ??
        (options.size === undefined
          ? (options.highWaterMark ?? DEFAULT_HIGH_WATER_MARK)
          : DEFAULT_CHUNK_SIZE),
    );
    this.#strict = transform instanceof TransformStream;
    this.#writer = transform.writable.getWriter();
    this.#reader = transform.readable.getReader();
    this.#reading = this.#read();
  }

  /** Messages inside the transform or waiting for the next step. */
  get inFlight(): number {
    return this.#fifo.length - this.#head;
  }

  /** Writes one chunk into the transform; returns a promise while `maxInFlight` is reached. */
  protected process(batch: Message<TIn>[]): void | Promise<void> {
    for (let i = 0; i < batch.length; i++) {
      if (this.inFlight >= this.#limit) {
        this.#pump();
        return this.#processSlow(batch, i);
      }
      this.#push(batch[i]);
    }
    this.#pump();
  }

  async #processSlow(batch: Message<TIn>[], i: number): Promise<void> {
    while (i < batch.length) {
      if (this.inFlight >= this.#limit) {
        await Promise.race([
          new Promise<void>((resolve) => this.#space = resolve),
          this.waitForPoll(),
        ]);
        this.#space = undefined;
        if (this.abandoned) return;
        continue;
      }
      this.#push(batch[i++]);
    }
    this.#pump();
  }

  #push(m: Message<TIn>): void {
    const real = !m.filtered;
    const entry = new Entry<TIn, TOut>(m, real, this.#seq++);
    this.#fifo.push(entry);
    if (!real) return;
    this.#lastReal = m;
    // Write errors also error the readable side; the read loop reports them.
    this.#writer.write(m.payload).then(() => this.#written(entry), ignore);
  }

  /**
   * The transform finished taking `entry`'s payload. Whatever it made of it has been read
   * by now (a later input is only taken after this), so an output already paired with a
   * later entry is an extra one: `entry` (or one before it) yielded more than one.
   */
  #written(entry: Entry<TIn, TOut>): void {
    entry.written = true;
    if (this.abandoned) return;
    const last = this.#fifo[this.#nextOut - 1];
    if (last !== undefined && last.has && last.seq > entry.seq) {
      this.#failPairing(entry.message, "more than one output");
      return;
    }
    if (this.#strict && !entry.has) {
      this.#failPairing(entry.message, "no output");
      return;
    }
    this.#pump();
  }

  #failPairing(message: Message<TIn> | string, what: string): void {
    this.fail(
      new StepError(
        this.name,
        message,
        new Error(
          `the transform yielded ${what} for this message; a TransformStep needs exactly one ` +
            `output per input, enqueued while transform() runs (use Unfold for one-to-many, ` +
            `FilterStep or RunTask for fewer); nothing from this message on was handed on`,
        ),
      ),
    );
    this.#reader.cancel().catch(ignore);
    this.#writer.abort().catch(ignore);
  }

  async #read(): Promise<void> {
    try {
      for (;;) {
        const { value, done } = await this.#reader.read();
        if (done || this.abandoned) return;
        const fifo = this.#fifo;
        let i = Math.max(this.#nextOut, this.#head);
        while (i < fifo.length && !fifo[i].real) i++;
        if (i >= fifo.length) {
          // More outputs than inputs: name the first message not handed on yet.
          const first = this.#firstUnsent();
          this.#failPairing(first ?? this.#lastReal ?? "(none)", "more than one output");
          return;
        }
        fifo[i].out = value;
        fifo[i].has = true;
        this.#nextOut = i + 1;
        this.#pump();
      }
    } catch (e) {
      if (this.abandoned) return;
      const waiting = this.#firstWaiting();
      this.fail(new StepError(this.name, waiting ? waiting.message : "(unknown)", e));
    }
  }

  /** The oldest real message not handed on yet (its pairing is not confirmed). */
  #firstUnsent(): Message<TIn> | undefined {
    const fifo = this.#fifo;
    for (let i = this.#head; i < fifo.length; i++) if (fifo[i].real) return fifo[i].message;
    return undefined;
  }

  #firstWaiting(): Entry<TIn, TOut> | undefined {
    const fifo = this.#fifo;
    for (let i = Math.max(this.#head, this.#nextOut); i < fifo.length; i++) {
      if (fifo[i].real && !fifo[i].has) return fifo[i];
    }
    return undefined;
  }

  /** Hands on finished entries from the head, in order, until one is not ready or rejected. */
  #pump(): void {
    if (this.#pumping !== undefined || this.abandoned) return;
    try {
      while (this.#head < this.#fifo.length) {
        const e = this.#fifo[this.#head];
        // A real output waits until its input was fully taken (see #written).
        if (e.real && !(e.has && e.written)) break;
        const out = e.real
          ? e.message.replacePayload(e.out as TOut)
          : e.message as unknown as Message<TOut>;
        if (!this.emit(out)) {
          this.#pumping = this.#pumpSlow(out);
          return;
        }
        this.#shift();
      }
    } catch (e) {
      this.fail(e);
      return;
    }
    this.#space?.();
  }

  async #pumpSlow(out: Message<TOut>): Promise<void> {
    try {
      await this.emitWhenRoom(out);
    } catch (e) {
      this.fail(e);
    }
    this.#pumping = undefined;
    if (this.abandoned) return;
    this.#shift();
    this.#pump();
  }

  #shift(): void {
    const fifo = this.#fifo;
    fifo[this.#head] = undefined as unknown as Entry<TIn, TOut>;
    this.#head++;
    if (this.#head === fifo.length) {
      this.#fifo = [];
      this.#nextOut = Math.max(0, this.#nextOut - this.#head);
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= fifo.length) {
      this.#fifo = fifo.slice(this.#head);
      this.#nextOut = Math.max(0, this.#nextOut - this.#head);
      this.#head = 0;
    }
  }

  /** `join`: closes the transform, hands on its last outputs, checks nothing is left. */
  protected override async onDrained(): Promise<void> {
    await this.#writer.close().catch(ignore);
    await this.#reading;
    if (this.abandoned) return;
    this.#pump();
    while (this.#pumping !== undefined) {
      await this.#pumping;
      if (this.abandoned) return;
    }
    const waiting = this.#firstWaiting();
    if (waiting !== undefined) {
      this.fail(
        new StepError(
          this.name,
          waiting.message,
          new Error(
            `the transform ended without an output for ${this.inFlight} input(s); a ` +
              `TransformStep needs exactly one output per input`,
          ),
        ),
      );
    }
  }

  /** Abandons queued work and cancels the transform. */
  override terminate(): void {
    super.terminate();
    this.#writer.abort(new Error(`step "${this.name}" terminated`)).catch(ignore);
    this.#reader.cancel().catch(ignore);
  }
}
