/**
 * `RunTaskAsync`: runs an asynchronous user function on every message, several at a
 * time, and hands the results on in input order.
 *
 * @module
 */
import { InvalidMessage, type Message } from "../types.ts";
import { ConfigurationError, MessageRejected } from "../errors.ts";
import { requirePositiveInteger } from "../_validate.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { type StepOptions, StreamStep } from "./stream_step.ts";
import { Waiters } from "./_waiters.ts";

/**
 * The user function of a {@link RunTaskAsync}: returns (a promise of) the new payload.
 * `signal` aborts when the step gives up on the work (terminate, a join timeout, or a
 * failure elsewhere in the step); pass it on to `fetch` and friends.
 *
 * @example A task that stops when the step gives up
 * ```ts
 * import { type AsyncTask, BrokerValue, Noop, Partition, RunTaskAsync } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const length: AsyncTask<string, number> = async (message, signal) => {
 *   signal.throwIfAborted(); // pass `signal` on to fetch() and friends
 *   return await Promise.resolve(message.payload.length);
 * };
 * const step = new RunTaskAsync(length, new Noop());
 * await ReadableStream.from([new BrokerValue("abc", Partition.of("t", 0), 0, 0)]).pipeTo(step.writable);
 * assertEquals(step.concurrency, 16);
 * ```
 */
export type AsyncTask<TIn, TOut> = (
  message: Message<TIn>,
  signal: AbortSignal,
) => Promise<TOut> | TOut;

/**
 * Options of a {@link RunTaskAsync}.
 *
 * @example 32 calls at once, at most 256 messages held
 * ```ts
 * import { Noop, RunTaskAsync, type RunTaskAsyncOptions } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const options: RunTaskAsyncOptions = { name: "lookup", concurrency: 32, maxPending: 256 };
 * const step = new RunTaskAsync(async (m: { payload: string }) => m.payload, new Noop(), options);
 * assertEquals(step.concurrency, 32);
 * step.terminate();
 * ```
 */
export interface RunTaskAsyncOptions extends StepOptions {
  /**
   * Most calls of the function running at the same time.
   * @default 16
   */
  concurrency?: number;
  /**
   * Most messages started or finished and not yet handed on to the next step (a slow
   * message holds back the faster ones behind it, up to this many). Must be at least
   * `concurrency`.
   * @default 2 × concurrency
   */
  maxPending?: number;
}

/** Default {@link RunTaskAsyncOptions.concurrency}. */
export const DEFAULT_CONCURRENCY = 16;

const RUNNING = 0;
/** Threw `MessageRejected`: waits for a backoff (see `StepOptions.maxBackoffMs`). */
const RETRY = 1;
/** A poll came after a `MessageRejected`: starts again as soon as there is capacity. */
const READY = 2;
const DONE = 3;
const FAILED = 4;
const INVALID = 5;
const REPORTING = 6;
/** Held again after the step was closed: the step stops here (see `giveUpHeld`). */
const GAVE_UP = 7;

interface Slot<TIn, TOut> {
  readonly message: Message<TIn>;
  state: number;
  output: Message<TOut> | undefined;
  error: unknown;
  /** Times its function threw `MessageRejected`. */
  holds: number;
  /** Run after the step was closed: its last try. */
  lastTry: boolean;
}

/**
 * Runs an asynchronous `fn` once per message with at most `concurrency` calls in flight,
 * and forwards `message.replacePayload(result)` **in input order**: a fast later result
 * waits for a slow earlier one, so offsets are only ever committed for finished work.
 *
 * - Memory is bounded: the input queue (`highWaterMark`) plus `maxPending` messages
 *   started or finished and not yet handed on. When both are full, `submit` rejects.
 * - When the next step rejects a result, the result is kept and handed on when the next
 *   step has room (or on the next `poll()`); `fn` never runs twice for one message and
 *   the rejection never escapes `poll()`.
 * - `fn` may reject with `MessageRejected` to hold a message back: it is run again after
 *   a backoff (10 ms doubling up to `maxBackoffMs`, default 1 s), in its place (no
 *   reordering); no new message starts meanwhile. Once the step is closed (revoke,
 *   shutdown) it is tried once more, then given up: not committed, read again later.
 * - `fn` may reject with `InvalidMessage` for a message that can never be processed: it is
 *   reported through `poll()` like `RunTask`'s.
 * - Any other rejection fails the step: `poll()` throws a `StepError` naming the step and
 *   the message. Results finished before it are still handed on; nothing after it is.
 * - Filtered messages pass through in their place; `fn` never sees them.
 * - `join` waits for work in flight (within its timeout); `terminate` abandons it and
 *   aborts the `signal` given to `fn`.
 *
 * @example Up to 32 lookups at once
 * ```ts
 * import { CommitOffsets, RunTaskAsync } from "@sluice/sluice";
 * const step = new RunTaskAsync(
 *   async (m: { payload: string }, signal: AbortSignal) => {
 *     const res = await fetch(`https://example.com/users/${m.payload}`, { signal });
 *     return res.status;
 *   },
 *   new CommitOffsets(() => {}),
 *   { name: "lookup", concurrency: 32, maxPending: 256 },
 * );
 * ```
 */
export class RunTaskAsync<TIn, TOut> extends StreamStep<TIn, TOut> {
  /** Most calls of the function in flight. */
  readonly concurrency: number;
  /** Most messages started or finished and not yet handed on. */
  readonly maxPending: number;

  readonly #fn: AsyncTask<TIn, TOut>;
  #slots: Slot<TIn, TOut>[] = [];
  #head = 0;
  #running = 0;
  /** Slots in RETRY or READY state. */
  #retrying = 0;
  /** Slots in READY state. */
  #ready = 0;
  #forwarding = false;
  #waitingRoom = false;
  readonly #afterRoom = () => {
    this.#waitingRoom = false;
    this.#forward();
  };
  #retryPump = false;
  /** Woken when a call finishes, a result is handed on, or the step is abandoned. */
  readonly #changes = new Waiters();

  /** Creates the step. */
  constructor(
    fn: AsyncTask<TIn, TOut>,
    next: ProcessingStrategy<TOut>,
    options: RunTaskAsyncOptions = {},
  ) {
    super("run_task_async", next, options);
    if (typeof fn !== "function") {
      throw new ConfigurationError(
        `step "${this.name}": the task must be a function (message, signal) => Promise<result>`,
      );
    }
    this.#fn = fn;
    this.concurrency = requirePositiveInteger(
      `step "${this.name}": concurrency`,
      options.concurrency ?? DEFAULT_CONCURRENCY,
    );
    this.maxPending = requirePositiveInteger(
      `step "${this.name}": maxPending`,
      options.maxPending ?? 2 * this.concurrency,
    );
    if (this.maxPending < this.concurrency) {
      throw new ConfigurationError(
        `step "${this.name}": maxPending (${this.maxPending}) must be >= concurrency ` +
          `(${this.concurrency}); raise maxPending or lower concurrency`,
      );
    }
    // Abandoned (terminate, a join timeout, a failure): the loops waiting on a change stop.
    this.signal.addEventListener("abort", () => this.#changes.wake(), { once: true });
  }

  /** Messages started or finished and not yet handed on. */
  get pending(): number {
    return this.#slots.length - this.#head;
  }

  /** Calls of the function currently running. */
  get inFlight(): number {
    return this.#running;
  }

  /** Starts `fn` for each message, up to `concurrency` calls at once. */
  protected process(batch: Message<TIn>[]): void | Promise<void> {
    for (let i = 0; i < batch.length; i++) {
      if (!this.#canAdmit(batch[i])) return this.#admitSlow(batch, i);
      this.#admit(batch[i]);
    }
  }

  /** Waits for the calls in flight before the step reports itself drained. */
  protected override async onDrained(): Promise<void> {
    while (this.pending > 0 && !this.abandoned) await this.#changes.wait();
  }

  #canAdmit(m: Message<TIn>): boolean {
    if (this.#retrying > 0 || this.#slots.length - this.#head >= this.maxPending) return false;
    return m.filtered || this.#running < this.concurrency;
  }

  async #admitSlow(batch: Message<TIn>[], i: number): Promise<void> {
    while (i < batch.length) {
      if (this.abandoned) return;
      if (this.#canAdmit(batch[i])) this.#admit(batch[i++]);
      else await this.#changes.wait();
    }
  }

  #admit(m: Message<TIn>): void {
    if (m.filtered) {
      this.#slots.push({
        message: m,
        state: DONE,
        output: m as unknown as Message<TOut>,
        error: undefined,
        holds: 0,
        lastTry: false,
      });
      this.#forward();
      return;
    }
    const slot: Slot<TIn, TOut> = {
      message: m,
      state: RUNNING,
      output: undefined,
      error: undefined,
      holds: 0,
      lastTry: false,
    };
    this.#slots.push(slot);
    this.#start(slot);
  }

  #start(slot: Slot<TIn, TOut>): void {
    slot.state = RUNNING;
    // Started after close (revoke, shutdown): held again, it is given up.
    slot.lastTry = this.closed;
    this.#running++;
    let result: Promise<TOut> | TOut;
    try {
      result = this.#fn(slot.message, this.signal);
    } catch (e) {
      result = Promise.reject(e);
    }
    Promise.resolve(result).then(
      (value) => this.#settle(slot, true, value),
      (error) => this.#settle(slot, false, error),
    );
  }

  #settle(slot: Slot<TIn, TOut>, ok: boolean, value: unknown): void {
    this.#running--;
    if (this.abandoned) {
      this.#changes.wake();
      return;
    }
    if (ok) {
      slot.state = DONE;
      slot.output = slot.message.replacePayload(value as TOut);
    } else if (value instanceof MessageRejected) {
      // Still counted as retrying once given up: nothing new starts behind it.
      this.#retrying++;
      if (slot.lastTry) slot.state = GAVE_UP;
      else {
        slot.state = RETRY;
        slot.holds++;
        this.#pumpRetries();
      }
    } else if (value instanceof InvalidMessage) {
      slot.state = INVALID;
      slot.error = value;
    } else {
      slot.state = FAILED;
      slot.error = value;
    }
    this.#startReady();
    this.#forward();
    // Surface a failure at once, even behind unfinished work: what finished before it was
    // handed on just above; nothing after it ever will be.
    if (slot.state === FAILED && !this.abandoned) {
      this.fail(this.wrapError(slot.error, slot.message));
    }
    this.#changes.wake();
  }

  /**
   * Restarts, after a backoff, the messages whose function threw `MessageRejected`; once the
   * step is closed, after one last try, gives them up.
   */
  async #pumpRetries(): Promise<void> {
    if (this.#retryPump) return;
    this.#retryPump = true;
    try {
      while (!this.abandoned) {
        let holds = Infinity;
        for (let i = this.#head; i < this.#slots.length; i++) {
          const s = this.#slots[i];
          if (s.state === RETRY && s.holds < holds) holds = s.holds;
        }
        // Nothing left to retry (restarted, or given up: those stay counted in #retrying).
        if (holds === Infinity) return;
        await this.backoff(holds - 1);
        if (this.abandoned) return;
        for (let i = this.#head; i < this.#slots.length; i++) {
          const s = this.#slots[i];
          if (s.state === RETRY) {
            s.state = READY;
            this.#ready++;
          }
        }
        this.#startReady();
      }
    } finally {
      this.#retryPump = false;
    }
  }

  #startReady(): void {
    if (this.#ready === 0 || this.abandoned) return;
    for (let i = this.#head; i < this.#slots.length; i++) {
      if (this.#running >= this.concurrency || this.#ready === 0) break;
      const s = this.#slots[i];
      if (s.state === READY) {
        this.#ready--;
        this.#retrying--;
        this.#start(s);
      }
    }
  }

  /** Hands on finished results from the head, in order, until one is not finished. */
  #forward(): void {
    if (this.#forwarding || this.#waitingRoom) return;
    this.#forwarding = true;
    let popped = false;
    try {
      while (this.#head < this.#slots.length && !this.abandoned) {
        const s = this.#slots[this.#head];
        if (s.state === DONE) {
          if (!this.emitOrWhenRoom(s.output!, this.#afterRoom)) {
            this.#waitingRoom = !this.abandoned;
            return;
          }
          this.#pop();
          popped = true;
        } else if (s.state === INVALID) {
          s.state = REPORTING;
          this.reportInvalid(s.error as InvalidMessage, s.message).then(() => {
            if (this.abandoned) return;
            this.#pop();
            this.#forward();
            this.#changes.wake();
          }, (e) => this.fail(e));
          return;
        } else if (s.state === FAILED) {
          this.fail(this.wrapError(s.error, s.message));
          return;
        } else if (s.state === GAVE_UP) {
          // Everything before it was handed on: stop here.
          this.giveUpHeld(s.message);
          return;
        } else return;
      }
    } finally {
      this.#forwarding = false;
      if (popped) this.#changes.wake();
    }
  }

  #pop(): void {
    this.#slots[this.#head++] = undefined as unknown as Slot<TIn, TOut>;
    if (this.#head === this.#slots.length) {
      this.#slots = [];
      this.#head = 0;
    } else if (this.#head >= 1024 && this.#head * 2 >= this.#slots.length) {
      this.#slots = this.#slots.slice(this.#head);
      this.#head = 0;
    }
  }
}
