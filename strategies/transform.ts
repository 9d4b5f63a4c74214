/**
 * `TransformStep`: any standard `TransformStream` (or readable/writable pair) as a step of
 * a pipeline, with offsets preserved and backpressure flowing through it.
 *
 * @module
 */
import { ConfigurationError, type Message, requirePositiveInteger, StepError } from "../types.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import {
  DEFAULT_CHUNK_SIZE,
  DEFAULT_HIGH_WATER_MARK,
  type StepOptions,
  StreamStep,
} from "./bridge.ts";

/** Options of a {@link TransformStep}. */
export interface TransformStepOptions extends StepOptions {
  /**
   * Most messages inside the transform at once: written to it and not yet handed on.
   * @default the step's `highWaterMark` (256 when the queue is sized in bytes)
   */
  maxInFlight?: number;
}

/** The pair a `TransformStream` is: what `pipeThrough` accepts. */
export interface TransformPair<TIn, TOut> {
  /** Where payloads are written. */
  readonly writable: WritableStream<TIn>;
  /** Where their results are read, one per payload, in order. */
  readonly readable: ReadableStream<TOut>;
}

class Entry<TIn, TOut> {
  out: TOut | undefined = undefined;
  has = false;
  constructor(readonly message: Message<TIn>, readonly real: boolean) {}
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
 * - A transform that yields more outputs than inputs fails the step; one that ends with
 *   inputs left without output fails it in `join`. A transform that yields fewer outputs
 *   mid-stream cannot be detected (the outputs would be paired with earlier messages'
 *   offsets, which never commits too far, but is wrong): use `Unfold` or `RunTask` for
 *   anything that is not one-to-one. `TextDecoderStream`, for example, yields nothing for
 *   an empty chunk.
 * - A `TransformStream` can be used once: build the step (and the stream) in
 *   `createWithPartitions`.
 *
 * Each message costs a `write` and a `read` promise: prefer `RunTask` for plain
 * synchronous functions, and use this step to reuse existing stream transforms.
 *
 * @example
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
    this.#fifo.push(new Entry<TIn, TOut>(m, real));
    // Write errors also error the readable side; the read loop reports them.
    if (real) this.#writer.write(m.payload).catch(ignore);
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
          this.fail(
            new StepError(
              this.name,
              "(none)",
              new Error(
                "the transform produced more outputs than it was given inputs; a TransformStep " +
                  "needs exactly one output per input (use Unfold for one-to-many)",
              ),
            ),
          );
          this.#reader.cancel().catch(ignore);
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
        if (e.real && !e.has) break;
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
