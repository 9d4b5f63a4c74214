/**
 * `pipeline()`: builds a chain of steps front to back, with each step's payload type
 * inferred from the one before, and ends it with `commit()` as a
 * `ProcessingStrategyFactory`.
 *
 * @module
 */
import type { Message } from "../types.ts";
import type { Commit, ProcessingStrategy, ProcessingStrategyFactory } from "./abstract.ts";
import type { StepOptions } from "./stream_step.ts";
import { type BatchOptions, BatchStep, UnbatchStep } from "./batching.ts";
import { CommitOffsets } from "./commit_offsets.ts";
import { type Codec, Decode } from "./decode.ts";
import { FilterStep } from "./filter.ts";
import { Reduce, type ReduceOptions } from "./reduce.ts";
import { RunTask } from "./run_task.ts";
import { type AsyncTask, RunTaskAsync, type RunTaskAsyncOptions } from "./run_task_async.ts";
import { Unfold } from "./unfold.ts";

/**
 * Builds one step in front of `next`: what {@link Pipeline.through} takes, for steps the
 * builder has no method for (`RateLimit`, `LoadShed`, `Produce`, `TransformStep`...).
 *
 * @example A rate limit in a built pipeline
 * ```ts
 * import { pipeline, RateLimit, type StepFactory } from "@sluice/sluice";
 *
 * const limit: StepFactory<string, string> = (next) => new RateLimit(next, { ratePerSecond: 50 });
 * const factory = pipeline<string>()
 *   .through(limit)
 *   .map((m) => m.payload.length)
 *   .commit();
 * ```
 */
export type StepFactory<TIn, TOut> = (next: ProcessingStrategy<TOut>) => ProcessingStrategy<TIn>;

// The chain is stored untyped; every public method keeps the types of its ends.
// deno-lint-ignore no-explicit-any
type AnyLink = (next: ProcessingStrategy<any>) => ProcessingStrategy<any>;

/**
 * A chain of steps being built front to back: `TSource` is the payload type the chain
 * takes (what the consumer hands out), `T` the payload type its last step hands on. Each
 * method returns a new builder (the old one is unchanged), so a prefix can be shared.
 * {@link Pipeline.commit} ends the chain with `CommitOffsets` and returns a factory for a
 * `StreamProcessor`; every assignment builds fresh steps from it.
 *
 * Functions may be `async`: `map`, `filter`, `decode`, `flatMap` and `reduce` await
 * them in input order before anything after them is handed on or committed (see
 * `RunTask`); `mapAsync` runs several at a time, still handing results on in order.
 *
 * @example Parse, filter, batch and insert
 * ```ts
 * import { type Message, pipeline, StreamProcessor } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * type Order = { id: string; amount: number };
 * const db = { insertMany: async (_rows: Order[]): Promise<void> => {} }; // your database
 *
 * const factory = pipeline<string>()
 *   .map((m) => JSON.parse(m.payload) as Order | null)
 *   .filter((m): m is Message<Order> => m.payload !== null)
 *   .batch({ maxBatchSize: 500, maxBatchTimeMs: 1_000 })
 *   .map(async (batch) => {
 *     const rows = batch.payload.map((m) => m.payload);
 *     await db.insertMany(rows); // awaited: the batch is committed after the insert
 *     return rows.length;
 *   })
 *   .commit();
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("orders", 1);
 * const processor = new StreamProcessor({
 *   consumer: broker.getConsumer("billing"),
 *   topics: ["orders"],
 *   factory,
 * });
 * ```
 */
export class Pipeline<TSource, T> {
  readonly #links: readonly AnyLink[];

  /** Use {@link pipeline} to start one. */
  private constructor(links: readonly AnyLink[]) {
    this.#links = links;
  }

  /** @internal Starts an empty chain. */
  static start<T>(): Pipeline<T, T> {
    return new Pipeline<T, T>([]);
  }

  #then<U>(link: AnyLink): Pipeline<TSource, U> {
    return new Pipeline<TSource, U>([...this.#links, link]);
  }

  /**
   * Runs `fn` on every message (a {@link RunTask}); its result, or what its promise
   * resolves to, is the next payload. An `async` function is awaited, one message at a
   * time, before the message's offset can be committed.
   */
  map<U>(
    fn: (message: Message<T>) => U | PromiseLike<U>,
    options?: StepOptions,
  ): Pipeline<TSource, U> {
    return this.#then((next) => new RunTask<T, U>(fn, next, options));
  }

  /**
   * Runs an async `fn` with several calls in flight (a {@link RunTaskAsync},
   * `concurrency` at a time), handing results on in input order.
   */
  mapAsync<U>(fn: AsyncTask<T, U>, options?: RunTaskAsyncOptions): Pipeline<TSource, U> {
    return this.#then((next) => new RunTaskAsync<T, U>(fn, next, options));
  }

  /**
   * Keeps the messages for which `predicate` holds (a {@link FilterStep}); the others are
   * dropped and counted, their offsets still committed. A type guard narrows the payload
   * type of what follows; the predicate may be `async`.
   */
  filter<S extends T>(
    predicate: (message: Message<T>) => message is Message<S>,
    options?: StepOptions,
  ): Pipeline<TSource, S>;
  /** Keeps the messages for which `predicate` (or its promise) holds. */
  filter(
    predicate: (message: Message<T>) => boolean | PromiseLike<boolean>,
    options?: StepOptions,
  ): Pipeline<TSource, T>;
  filter(
    predicate: (message: Message<T>) => boolean | PromiseLike<boolean>,
    options?: StepOptions,
  ): Pipeline<TSource, T> {
    return this.#then((next) => new FilterStep<T>(predicate, next, options));
  }

  /**
   * Decodes every payload (a {@link Decode}); a payload that fails to decode becomes an
   * `InvalidMessage` (dead-lettered when the processor has a `dlqPolicy`).
   */
  decode<U>(
    codec: Codec<T, U | PromiseLike<U>> | ((raw: T) => U | PromiseLike<U>),
    options?: StepOptions,
  ): Pipeline<TSource, U> {
    return this.#then((next) => new Decode<T, U>(codec, next, options));
  }

  /** Turns each message into any number of messages (an {@link Unfold}). */
  flatMap<U>(
    fn: (message: Message<T>) => Iterable<U> | PromiseLike<Iterable<U>>,
    options?: StepOptions,
  ): Pipeline<TSource, U> {
    return this.#then((next) => new Unfold<T, U>(fn, next, options));
  }

  /** Folds messages into one value per batch (a {@link Reduce}). */
  reduce<A>(
    accumulator: (acc: A, message: Message<T>) => A | PromiseLike<A>,
    initialValue: () => A,
    options: ReduceOptions<T>,
  ): Pipeline<TSource, A> {
    return this.#then((next) => new Reduce<T, A>(accumulator, initialValue, next, options));
  }

  /** Groups messages into arrays (a {@link BatchStep}). */
  batch(options: BatchOptions<T>): Pipeline<TSource, Message<T>[]> {
    return this.#then((next) => new BatchStep<T>(next, options));
  }

  /** Splits batches built by {@link Pipeline.batch} back into their messages. */
  unbatch<U>(this: Pipeline<TSource, Message<U>[]>, options?: StepOptions): Pipeline<TSource, U> {
    return this.#then((next) => new UnbatchStep<U>(next, options));
  }

  /**
   * Adds a step the builder has no method for, built in front of the next one. A step
   * that keeps the payload type needs no annotation:
   * `.through((next) => new RateLimit(next, { ratePerSecond: 50 }))`; one that changes it
   * names the new type: `.through<Row>((next) => new RunTaskInWorkers(...))`.
   */
  through(step: StepFactory<T, T>): Pipeline<TSource, T>;
  /** Adds a step that changes the payload type to `U`. */
  through<U>(step: StepFactory<T, U>): Pipeline<TSource, U>;
  through<U>(step: StepFactory<T, U>): Pipeline<TSource, U> {
    return this.#then(step);
  }

  /**
   * Builds the chain in front of `last` (a step that ends it) for `commit`; what
   * {@link Pipeline.commit} does with `CommitOffsets`.
   */
  build(
    commit: Commit,
    last: (commit: Commit) => ProcessingStrategy<T>,
  ): ProcessingStrategy<TSource> {
    let s: ProcessingStrategy<unknown> = last(commit) as ProcessingStrategy<unknown>;
    for (let i = this.#links.length - 1; i >= 0; i--) s = this.#links[i](s);
    return s as ProcessingStrategy<TSource>;
  }

  /**
   * Ends the chain with `CommitOffsets` and returns a factory for a `StreamProcessor`:
   * each assignment gets freshly built steps.
   */
  commit(options?: StepOptions): ProcessingStrategyFactory<TSource> {
    return {
      createWithPartitions: (commit: Commit): ProcessingStrategy<TSource> =>
        this.build(commit, (c) => new CommitOffsets<T>(c, options)),
    };
  }
}

/**
 * Starts a chain of steps taking payloads of type `T` (what the consumer hands out), built
 * front to back with payload types inferred; end it with `.commit()`. The Arroyo-style
 * constructors (`new RunTask(fn, next)`) remain available and build the same steps.
 *
 * @example Decode, filter, save, commit
 * ```ts
 * import { pipeline } from "@sluice/sluice";
 * const save = async (_text: string): Promise<void> => {}; // your storage
 *
 * const factory = pipeline<Uint8Array>()
 *   .map((m) => new TextDecoder().decode(m.payload))
 *   .filter((m) => m.payload.length > 0)
 *   .map(async (m) => {
 *     await save(m.payload); // awaited before the offset can be committed
 *     return m.payload;
 *   })
 *   .commit();
 * ```
 */
export function pipeline<T>(): Pipeline<T, T> {
  return Pipeline.start<T>();
}
