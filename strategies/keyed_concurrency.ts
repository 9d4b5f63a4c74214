/**
 * `KeyedConcurrency`: an async function run in parallel across keys and in order within a
 * key, committing only the contiguous completed prefix of each partition.
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
  Value,
} from "../types.ts";
import { ConfigurationError, MessageRejected } from "../errors.ts";
import { requirePositiveInteger } from "../_validate.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { type StepOptions, StreamStep } from "./stream_step.ts";
import { Waiters } from "./_waiters.ts";
import { requireSync } from "./thenable.ts";

/**
 * Options of a {@link KeyedConcurrency}.
 *
 * @example One call at a time per account, 32 in all
 * ```ts
 * import { KeyedConcurrency, type KeyedConcurrencyOptions, Noop } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * type Order = { account: string; amount: number };
 * const options: KeyedConcurrencyOptions<Order> = {
 *   key: (m) => m.payload.account,
 *   maxInFlight: 32,
 *   maxInFlightPerKey: 1,
 * };
 * const step = new KeyedConcurrency(async (m: { payload: Order }) => m.payload.amount, new Noop(), options);
 * assertEquals(step.maxInFlight, 32);
 * step.terminate();
 * ```
 */
export interface KeyedConcurrencyOptions<T> extends StepOptions {
  /**
   * The ordering key of a message (a user id, an account...). Required. Synchronous: a
   * promise fails the step with a `ConfigurationError` (it would be a new key every time).
   */
  key: (message: Message<T>) => string | number;
  /**
   * Most calls running at once, over all keys.
   * @default 16
   */
  maxInFlight?: number;
  /**
   * Most calls running at once for one key. 1: strictly one after the other, in offset
   * order. Above 1, calls of a key *start* in order but may overlap and finish in any order.
   * @default 1
   */
  maxInFlightPerKey?: number;
  /**
   * Most messages accepted and not yet handed on (waiting for their key, running, or
   * finished but waiting behind the next step). When reached, the step holds its queue
   * and upstream is rejected.
   * @default max(64, 8 × maxInFlight)
   */
  maxPending?: number;
}

interface KeyState {
  readonly key: string | number;
  running: number;
  waiting: Entry[];
  head: number;
  queued: boolean;
}

interface Entry {
  readonly m: Message<unknown>;
  readonly ks: KeyState;
  done: boolean;
}

/** Offsets of one partition in submission order, awaiting completion. */
interface Track {
  entries: Entry[];
  nexts: number[];
  head: number;
}

type OutItem = { m: Message<unknown>; invalid?: InvalidMessage };

/**
 * Runs `fn` on each message with up to `maxInFlight` calls at once, never more than
 * `maxInFlightPerKey` for one key (default 1: a key's messages run one at a time, in
 * order). Results are handed on **as they complete**, so a slow key does not hold up the
 * others.
 *
 * Commits stay safe although completions arrive out of order: each result carries only
 * the offsets its completion made committable — the **contiguous completed prefix** of
 * each partition (the commit watermark). An offset is never committed while a message
 * before it is still running or waiting. `watermarks()` shows the current prefix.
 *
 * `fn(message, signal)`: `signal` aborts when the step is terminated, its `join` gives up
 * or it fails.
 * `fn` may throw `InvalidMessage` (reported to the processor, then counted as done) or
 * `MessageRejected` (the call is retried after the next `poll()`, its key held). Any other
 * error fails the step, naming the message.
 *
 * @example Orders of one account in order, accounts in parallel
 * ```ts
 * import { CommitOffsets, KeyedConcurrency } from "@sluice/sluice";
 * interface Order { account: string; amount: number }
 * const pipeline = new KeyedConcurrency(
 *   async (m: { payload: Order }) => {
 *     // await ledger.apply(m.payload) — one account's orders never race each other
 *     return m.payload.amount;
 *   },
 *   new CommitOffsets(() => {}),
 *   { key: (m) => m.payload.account, maxInFlight: 32 },
 * );
 * ```
 */
export class KeyedConcurrency<TIn, TOut> extends StreamStep<TIn, TOut> {
  /** Most calls at once. */
  readonly maxInFlight: number;
  /** Most calls at once per key. */
  readonly maxInFlightPerKey: number;
  /** Most messages accepted and not yet handed on. */
  readonly maxPending: number;
  /** Calls completed so far. */
  completed = 0;
  /** Highest number of calls seen running at once. */
  maxObservedInFlight = 0;

  readonly #fn: (message: Message<TIn>, signal: AbortSignal) => TOut | Promise<TOut>;
  readonly #key: (message: Message<TIn>) => string | number;
  readonly #keys = new Map<string | number, KeyState>();
  readonly #tracks = new Map<Partition, Track>();
  readonly #watermarks = new Map<Partition, number>();
  #runnable: KeyState[] = [];
  #runnableHead = 0;
  #inFlight = 0;
  #pending = 0;
  #pumping = false;
  #out: OutItem[] = [];
  #outHead = 0;
  #draining = false;
  /** Woken on every completion or hand-on. */
  readonly #changes = new Waiters();

  /** Creates the step: `fn` is the async work, `next` receives results as they complete. */
  constructor(
    fn: (message: Message<TIn>, signal: AbortSignal) => TOut | Promise<TOut>,
    next: ProcessingStrategy<TOut>,
    options: KeyedConcurrencyOptions<TIn>,
  ) {
    super("keyed_concurrency", next, options);
    if (typeof fn !== "function") {
      throw new ConfigurationError(
        `step "${this.name}": fn must be a function (message) => result`,
      );
    }
    if (typeof options?.key !== "function") {
      throw new ConfigurationError(
        `step "${this.name}": key must be a function (message) => string | number; ` +
          "messages with the same key are processed in order",
      );
    }
    this.#fn = fn;
    this.#key = options.key;
    const n = this.name;
    this.maxInFlight = requirePositiveInteger(
      `step "${n}": maxInFlight`,
      options.maxInFlight ?? 16,
    );
    this.maxInFlightPerKey = requirePositiveInteger(
      `step "${n}": maxInFlightPerKey`,
      options.maxInFlightPerKey ?? 1,
    );
    this.maxPending = requirePositiveInteger(
      `step "${n}": maxPending`,
      options.maxPending ?? Math.max(64, 8 * this.maxInFlight),
    );
  }

  /** Calls running now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Messages accepted and not yet handed on. */
  get pending(): number {
    return this.#pending;
  }

  /** The commit watermark per partition: the next offset after the contiguous completed prefix. */
  watermarks(): Map<Partition, number> {
    return new Map(this.#watermarks);
  }

  /** Admits messages to their keys' queues, holding the chunk while `maxPending` is reached. */
  protected process(chunk: Message<TIn>[]): void | Promise<void> {
    for (let i = 0; i < chunk.length; i++) {
      if (this.#pending >= this.maxPending) return this.#processSlow(chunk, i);
      this.#admit(chunk[i]);
    }
    this.#pump();
  }

  /** On `join`, waits until every accepted message has completed and been handed on. */
  protected override async onDrained(): Promise<void> {
    while (this.#pending > 0 && !this.abandoned) await this.#change();
  }

  async #processSlow(chunk: Message<TIn>[], i: number): Promise<void> {
    this.#pump();
    while (i < chunk.length) {
      if (this.abandoned) return;
      if (this.#pending >= this.maxPending) {
        await this.#change();
        continue;
      }
      this.#admit(chunk[i++]);
      this.#pump();
    }
  }

  /** Resolves on the next completion or hand-on, or the next poll (re-checks abandonment). */
  #change(): Promise<void> {
    return Promise.race([this.#changes.wait(), this.waitForPoll()]);
  }

  #admit(m: Message<TIn>): void {
    this.#pending++;
    if (m.filtered) {
      // Nothing to run: it is done at once, but its offsets still wait for the prefix.
      const entry: Entry = { m, ks: undefined as unknown as KeyState, done: false };
      this.#track(entry);
      this.#finish(entry, undefined as TOut, undefined);
      return;
    }
    let k: string | number;
    try {
      k = requireSync(
        this.name,
        "key()",
        "a string or a number",
        "Read the key from the message; do lookups in fn, which is awaited.",
        this.#key(m),
      );
    } catch (e) {
      this.#pending--;
      throw this.wrapError(e, m);
    }
    let ks = this.#keys.get(k);
    if (ks === undefined) {
      ks = { key: k, running: 0, waiting: [], head: 0, queued: false };
      this.#keys.set(k, ks);
    }
    const entry: Entry = { m, ks, done: false };
    this.#track(entry);
    ks.waiting.push(entry);
    this.#enqueueKey(ks);
  }

  #track(entry: Entry): void {
    const v = entry.m.source;
    if (v instanceof BrokerValue) this.#trackOne(v.partition, v.offset + 1, entry);
    else for (const [p, o] of v.committable) this.#trackOne(p, o, entry);
  }

  #trackOne(p: Partition, next: number, entry: Entry): void {
    let t = this.#tracks.get(p);
    if (t === undefined) this.#tracks.set(p, t = { entries: [], nexts: [], head: 0 });
    t.entries.push(entry);
    t.nexts.push(next);
  }

  #enqueueKey(ks: KeyState): void {
    if (!ks.queued && ks.head < ks.waiting.length && ks.running < this.maxInFlightPerKey) {
      ks.queued = true;
      this.#runnable.push(ks);
    }
  }

  /** Starts calls while there is room, in the order keys became runnable. */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (this.#inFlight < this.maxInFlight && this.#runnableHead < this.#runnable.length) {
        if (this.abandoned) return;
        const ks = this.#runnable[this.#runnableHead++];
        ks.queued = false;
        if (ks.head >= ks.waiting.length || ks.running >= this.maxInFlightPerKey) continue;
        const entry = ks.waiting[ks.head];
        ks.waiting[ks.head++] = undefined as unknown as Entry;
        if (ks.head === ks.waiting.length) {
          ks.waiting = [];
          ks.head = 0;
        }
        ks.running++;
        this.#inFlight++;
        if (this.#inFlight > this.maxObservedInFlight) this.maxObservedInFlight = this.#inFlight;
        this.#enqueueKey(ks);
        this.#invoke(entry);
      }
      if (this.#runnableHead === this.#runnable.length) {
        this.#runnable = [];
        this.#runnableHead = 0;
      }
    } finally {
      this.#pumping = false;
    }
  }

  #invoke(entry: Entry): void {
    const m = entry.m as Message<TIn>;
    let r: TOut | Promise<TOut>;
    try {
      r = this.#fn(m, this.signal);
    } catch (e) {
      this.#completed(entry, undefined, e ?? new Error("threw without a reason"));
      return;
    }
    if (r instanceof Promise || typeof (r as { then?: unknown })?.then === "function") {
      Promise.resolve(r).then(
        (out) => this.#completed(entry, out, undefined),
        (e) => this.#completed(entry, undefined, e ?? new Error("rejected without a reason")),
      );
    } else {
      // A synchronous result completes at once (a nested #pump returns: the outer one goes on).
      this.#completed(entry, r as TOut, undefined);
    }
  }

  #completed(entry: Entry, out: TOut | undefined, error: unknown): void {
    if (this.abandoned) return;
    if (error !== undefined && error instanceof MessageRejected) {
      // Hold the key and retry this call after the next poll.
      this.waitForPoll().then(() => {
        if (!this.abandoned) this.#invoke(entry);
      });
      return;
    }
    if (error !== undefined && !(error instanceof InvalidMessage)) {
      this.fail(this.wrapError(error, entry.m as Message<TIn>));
      return;
    }
    const ks = entry.ks;
    ks.running--;
    this.#inFlight--;
    this.completed++;
    this.#finish(entry, out as TOut, error as InvalidMessage | undefined);
    if (ks.running === 0 && ks.head >= ks.waiting.length) this.#keys.delete(ks.key);
    else this.#enqueueKey(ks);
    this.#pump();
    this.#changes.wake();
  }

  /** Marks `entry` done, advances the watermark, and queues the result with that advance. */
  #finish(entry: Entry, out: TOut, invalid: InvalidMessage | undefined): void {
    entry.done = true;
    const advanced = this.#advance(entry);
    const m = entry.m;
    if (invalid !== undefined) {
      this.#out.push({
        m: new Value(FILTERED_PAYLOAD, advanced, m.timestamp),
        invalid,
      });
    } else if (m.filtered) {
      if (advanced.size === 0) {
        this.#pending--;
        this.#changes.wake();
        return;
      }
      this.#out.push({ m: new Value(FILTERED_PAYLOAD, advanced, m.timestamp) });
    } else {
      this.#out.push({ m: new Value(out, advanced, m.timestamp) });
    }
    this.#drain();
  }

  /** Moves each of the entry's partitions' prefix past every completed entry at its head. */
  #advance(entry: Entry): Committable {
    const v = entry.m.source;
    if (v instanceof BrokerValue) {
      const next = this.#advanceOne(v.partition);
      return next < 0 ? EMPTY_COMMITTABLE : new Map([[v.partition, next]]);
    }
    let advanced: Map<Partition, number> | undefined;
    for (const p of v.committable.keys()) {
      const next = this.#advanceOne(p);
      if (next >= 0) (advanced ??= new Map()).set(p, next);
    }
    return advanced ?? EMPTY_COMMITTABLE;
  }

  /** Advances one partition's prefix; returns its new watermark, or -1 if it did not move. */
  #advanceOne(p: Partition): number {
    const t = this.#tracks.get(p);
    if (t === undefined) return -1;
    let next = -1;
    while (t.head < t.entries.length && t.entries[t.head].done) {
      next = t.nexts[t.head];
      t.entries[t.head] = undefined as unknown as Entry;
      t.head++;
    }
    if (next < 0) return -1;
    this.#watermarks.set(p, next);
    if (t.head === t.entries.length) {
      t.entries = [];
      t.nexts = [];
      t.head = 0;
    } else if (t.head > 1024 && t.head * 2 > t.entries.length) {
      t.entries = t.entries.slice(t.head);
      t.nexts = t.nexts.slice(t.head);
      t.head = 0;
    }
    return next;
  }

  /** Hands queued results on in completion order, waiting for room when rejected. */
  #drain(): void {
    if (this.#draining) return;
    while (this.#outHead < this.#out.length) {
      if (this.abandoned) return;
      const item = this.#out[this.#outHead];
      if (item.invalid !== undefined) {
        this.#draining = true;
        this.#drainSlow(item);
        return;
      }
      if (!this.emit(item.m as Message<TOut>)) {
        this.#draining = true;
        this.#drainSlow(undefined);
        return;
      }
      this.#handedOn();
    }
  }

  async #drainSlow(invalid: OutItem | undefined): Promise<void> {
    try {
      if (invalid !== undefined) {
        await this.reportInvalid(invalid.invalid!, invalid.m as Message<TIn>);
        if (this.abandoned) return;
        this.#handedOn();
      }
      while (this.#outHead < this.#out.length) {
        if (this.abandoned) return;
        const item = this.#out[this.#outHead];
        if (item.invalid !== undefined) {
          await this.reportInvalid(item.invalid, item.m as Message<TIn>);
        } else if (!this.emit(item.m as Message<TOut>)) {
          await this.waitForRoom();
          continue;
        }
        if (this.abandoned) return;
        this.#handedOn();
      }
    } catch (e) {
      this.fail(e);
    } finally {
      this.#draining = false;
    }
  }

  #handedOn(): void {
    this.#out[this.#outHead++] = undefined as unknown as OutItem;
    if (this.#outHead === this.#out.length) {
      this.#out = [];
      this.#outHead = 0;
    }
    this.#pending--;
    this.#changes.wake();
  }
}
