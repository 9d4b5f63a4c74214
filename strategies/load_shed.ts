/**
 * `LoadShed`: a bounded buffer in front of the next step that drops instead of blocking.
 *
 * @module
 */
import { BrokerValue, FILTERED_PAYLOAD, Message, type Partition, Value } from "../types.ts";
import { ConfigurationError } from "../errors.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { type StepOptions, StreamStep } from "./stream_step.ts";
import { isThenable, requireSync } from "./thenable.ts";

/**
 * Which message a full {@link LoadShed} drops.
 *
 * @example Keep the freshest data
 * ```ts
 * import { LoadShed, Noop, type ShedPolicy } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const policy: ShedPolicy = "drop-oldest";
 * const step = new LoadShed(new Noop(), { capacity: 100, policy });
 * assertEquals(step.policy, "drop-oldest");
 * step.terminate();
 * ```
 */
export type ShedPolicy = "drop-newest" | "drop-oldest";

/**
 * Why a message was dropped: the buffer was full, and which end was dropped.
 *
 * @example Count drops by reason
 * ```ts
 * import { type DropReason, LoadShed, Noop } from "@sluice/sluice";
 *
 * const drops: Record<DropReason, number> = { newest: 0, oldest: 0 };
 * const step = new LoadShed(new Noop(), {
 *   capacity: 100,
 *   policy: "drop-newest",
 *   onDrop: (_message, reason: DropReason) => drops[reason]++,
 * });
 * step.terminate();
 * ```
 */
export type DropReason = "newest" | "oldest";

/**
 * Options of a {@link LoadShed}.
 *
 * @example Shed by bytes: keep at most 8 MiB while the writer is behind
 * ```ts
 * import { byteLength, LoadShed, type LoadShedOptions, Noop } from "@sluice/sluice";
 *
 * const options: LoadShedOptions<string> = {
 *   capacity: 8 * 1024 * 1024,
 *   size: byteLength,
 *   policy: "drop-oldest",
 *   onDrop: (m, reason) => console.debug(`shed ${m} (${reason})`),
 * };
 * new LoadShed(new Noop(), options).terminate();
 * ```
 */
export interface LoadShedOptions<T> extends StepOptions {
  /**
   * How much the shedding buffer holds while the next step is not accepting: in messages,
   * or in the unit of `size` when given (bytes with `size: byteLength`; the input queue's
   * `highWaterMark` then defaults to the same number). Required.
   */
  capacity: number;
  /**
   * Which message to drop when the buffer is full: the one arriving (`"drop-newest"`,
   * keeps the backlog, sheds fresh data) or the oldest buffered one (`"drop-oldest"`,
   * keeps the freshest data). Required: shedding is never a default.
   */
  policy: ShedPolicy;
  /**
   * Called for every dropped message with the reason, for logs or your own metrics.
   * Synchronous: returning a promise fails the step with a `ConfigurationError`.
   */
  onDrop?: (message: Message<T>, reason: DropReason) => void;
}

/** Offsets of dropped (or filtered) messages waiting their turn in the buffer. */
class Marker {
  readonly offsets = new Map<Partition, number>();
  add(m: Message<unknown>): void {
    const v = m.source;
    if (v instanceof BrokerValue) {
      if ((this.offsets.get(v.partition) ?? -1) < v.offset + 1) {
        this.offsets.set(v.partition, v.offset + 1);
      }
    } else {
      for (const [p, o] of v.committable) {
        if ((this.offsets.get(p) ?? -1) < o) this.offsets.set(p, o);
      }
    }
  }
}

/**
 * **Lossy by choice.** Forwards messages to the next step while it accepts; while it does
 * not, keeps up to `capacity` of them, and when that is full drops the newest or the
 * oldest (`policy`). The consumer is never held back, so lag stays flat — at the price
 * of data.
 *
 * Every drop is counted (`dropped.newest`, `dropped.oldest`), reported to `onDrop`, and
 * exported as the `sluice.step.dropped` metric with `reason` `shed_newest` or `shed_oldest`
 * when the processor has a `meterProvider`.
 * A dropped message is *handled*, not lost track of: its offset is kept in its place in
 * the buffer as a filtered marker, so it is committed once the messages before it have
 * been processed — never earlier.
 *
 * @example Keep the freshest readings
 * ```ts
 * import { CommitOffsets, LoadShed, RunTask } from "@sluice/sluice";
 * // Keep the freshest 1000 readings when the dashboard writer falls behind.
 * const pipeline = new LoadShed(
 *   new RunTask((m: { payload: number }) => m.payload, new CommitOffsets(() => {})),
 *   { capacity: 1000, policy: "drop-oldest", onDrop: (m, why) => console.debug(`${m}`, why) },
 * );
 * ```
 */
export class LoadShed<T> extends StreamStep<T, T> {
  /** Buffer bound, in messages or `size` units. */
  readonly capacity: number;
  /** Which end is dropped when full. */
  readonly policy: ShedPolicy;
  /** Messages dropped so far, by reason. */
  readonly dropped: { newest: number; oldest: number } = { newest: 0, oldest: 0 };
  /** Messages forwarded to the next step so far (filtered markers not counted). */
  forwarded = 0;
  /** Most `size` units ever buffered at once. */
  maxBuffered = 0;

  readonly #onDrop: ((message: Message<T>, reason: DropReason) => void) | undefined;
  // deno-lint-ignore no-explicit-any
  readonly #size: ((message: Message<any>) => number) | undefined;
  /**
   * FIFO of messages and offset markers (null: an entry already handed on or moved);
   * `#head` is the index of the first live entry.
   */
  #buf: (Message<T> | Marker | null)[] = [];
  #head = 0;
  #buffered = 0;
  #draining: Promise<void> | undefined;
  #drainActive = false;

  /** Creates the step in front of `next`. */
  constructor(next: ProcessingStrategy<T>, options: LoadShedOptions<T>) {
    // With a `size`, the queue's default bound would be 1024 size units (bytes): too small
    // for one turn of large messages. Default it to the capacity instead.
    const c = options?.capacity;
    const byBytes = options?.size !== undefined && options.highWaterMark === undefined &&
      typeof c === "number" && c > 0 && isFinite(c);
    super("load_shed", next, byBytes ? { ...options, highWaterMark: c } : options);
    const { capacity, policy } = options ?? {};
    if (typeof capacity !== "number" || !(capacity > 0) || !isFinite(capacity)) {
      throw new ConfigurationError(
        `step "${this.name}": capacity must be a finite number > 0, got ${
          String(capacity)
        }; it bounds the shedding buffer (messages, or size() units)`,
      );
    }
    if (policy !== "drop-newest" && policy !== "drop-oldest") {
      throw new ConfigurationError(
        `step "${this.name}": policy must be "drop-newest" or "drop-oldest", got ${
          JSON.stringify(policy)
        }; load shedding loses data, so the choice is explicit`,
      );
    }
    this.capacity = capacity;
    this.policy = policy;
    this.#onDrop = options.onDrop;
    this.#size = options.size;
  }

  /** Messages dropped so far, all reasons. */
  get droppedTotal(): number {
    return this.dropped.newest + this.dropped.oldest;
  }

  /** `size` units buffered now. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Hands messages on, or buffers them (dropping when full) while the next step rejects. */
  protected process(batch: Message<T>[]): void {
    for (let i = 0; i < batch.length; i++) {
      const m = batch[i];
      if (!this.#drainActive && this.#head === this.#buf.length) {
        // Fast path: nothing buffered, hand it straight on.
        if (this.emit(m)) {
          if (!m.filtered) this.forwarded++;
          continue;
        }
      }
      this.#enqueue(m);
    }
    if (this.#head < this.#buf.length) this.#startDrain();
  }

  /** On `join`, waits until the buffer has been handed on. */
  protected override async onDrained(): Promise<void> {
    for (;;) {
      if (this.abandoned) return;
      if (this.#draining !== undefined) await this.#draining;
      else if (this.#head < this.#buf.length) this.#startDrain();
      else return;
    }
  }

  #sizeOf(m: Message<T>): number {
    return this.#size ? this.#size(m) : 1;
  }

  #enqueue(m: Message<T>): void {
    if (m.filtered) {
      this.#marker().add(m);
      return;
    }
    const size = this.#sizeOf(m);
    while (this.#buffered + size > this.capacity) {
      if (this.policy === "drop-newest" || !this.#dropOldest()) {
        this.#drop(m, "newest");
        this.#marker().add(m);
        return;
      }
    }
    // After any drop: #dropOldest may have compacted the array.
    this.#buf.push(m);
    this.#buffered += size;
    if (this.#buffered > this.maxBuffered) this.maxBuffered = this.#buffered;
  }

  /** The marker at the tail (created if the tail is a message). */
  #marker(): Marker {
    const last = this.#buf.length > this.#head ? this.#buf[this.#buf.length - 1] : undefined;
    if (last instanceof Marker) return last;
    const marker = new Marker();
    this.#buf.push(marker);
    return marker;
  }

  /** Drops the oldest buffered message, keeping its offset in its place. False if none. */
  #dropOldest(): boolean {
    this.#skipTombstones(); // may compact: read #buf after it
    const buf = this.#buf;
    // Before the first message there is at most one marker (markers are always merged).
    let i = this.#head;
    while (i < buf.length && !(buf[i] instanceof Message)) i++;
    if (i >= buf.length) return false;
    const e = buf[i] as Message<T>;
    const prev = i > this.#head ? buf[i - 1] : undefined;
    const marker = prev instanceof Marker ? prev : new Marker();
    marker.add(e);
    if (prev instanceof Marker) buf[i - 1] = null;
    buf[i] = marker;
    const after = buf[i + 1];
    if (after instanceof Marker) {
      for (const [p, o] of after.offsets) {
        if ((marker.offsets.get(p) ?? -1) < o) marker.offsets.set(p, o);
      }
      buf[i] = null;
      buf[i + 1] = marker;
    }
    this.#skipTombstones();
    this.#buffered -= this.#sizeOf(e);
    this.#drop(e, "oldest");
    return true;
  }

  #skipTombstones(): void {
    while (this.#head < this.#buf.length && this.#buf[this.#head] === null) this.#head++;
    if (this.#head === this.#buf.length) {
      this.#buf = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#buf.length) {
      this.#buf = this.#buf.slice(this.#head);
      this.#head = 0;
    }
  }

  #drop(m: Message<T>, reason: DropReason): void {
    this.dropped[reason]++;
    this.countDropped(1, reason === "newest" ? "shed_newest" : "shed_oldest");
    if (this.#onDrop === undefined) return;
    const r = this.#onDrop(m, reason) as unknown;
    if (isThenable(r)) {
      // A notification is not awaited: fail the step (through poll) rather than drop it.
      try {
        requireSync(
          this.name,
          "onDrop()",
          "nothing",
          "Start asynchronous work from it without returning its promise, and handle its errors.",
          r,
        );
      } catch (e) {
        this.fail(e);
      }
    }
  }

  #startDrain(): void {
    if (this.#drainActive) return;
    this.#drainActive = true;
    const p = this.#drain();
    // The drain may have finished synchronously; keep the promise only while it runs.
    this.#draining = this.#drainActive ? p : undefined;
  }

  /**
   * Forwards the buffer in order, waiting for room whenever the next step rejects. The
   * loop and its `finally` run without a gap, so a message enqueued while it runs is
   * always seen by it or starts a new drain.
   */
  async #drain(): Promise<void> {
    try {
      for (;;) {
        this.#skipTombstones();
        if (this.#head >= this.#buf.length || this.abandoned) return;
        const e = this.#buf[this.#head]!;
        const m = e instanceof Marker ? new Value(FILTERED_PAYLOAD as unknown as T, e.offsets) : e;
        if (!this.emit(m)) {
          await this.waitForRoom();
          continue;
        }
        if (!(e instanceof Marker)) {
          this.forwarded++;
          this.#buffered -= this.#sizeOf(e);
        }
        this.#buf[this.#head++] = null;
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.#drainActive = false;
      this.#draining = undefined;
    }
  }
}
