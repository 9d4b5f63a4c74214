/**
 * A broker-less source: any web `ReadableStream` (a `fetch` body of NDJSON lines, a
 * WebSocket or server-sent-events stream turned into a stream) as a {@link Consumer}: one
 * partition, positions are sequence numbers, the stream is read only from `poll()` (so
 * backpressure reaches it), and "committed" means acknowledged to `onCommit(next)`. Users
 * reach it through the `@sluice/sluice/stream` entry (`stream.ts`), usually with
 * `processStream` (`processing/process_stream.ts`).
 *
 * @module
 */
import type { AssignmentCallbacks, Consumer } from "./abstract.ts";
import { BrokerValue, type Committable, Partition, type Topic } from "../types.ts";
import { ConfigurationError, InvalidStateError, SluiceError } from "../errors.ts";
import { requireNonNegative, requirePositiveInteger } from "../_validate.ts";
import { sleepUnless, systemClock } from "../clock.ts";

/**
 * Options of a {@link StreamConsumer}.
 *
 * @example Resuming a stream at item 100 and acknowledging what was processed
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { StreamConsumer, type StreamConsumerOptions } from "@sluice/sluice/stream";
 *
 * const acked: number[] = [];
 * const options: StreamConsumerOptions = {
 *   onCommit: (next) => void acked.push(next),
 *   topic: "clicks",
 *   start: 100,
 *   maxPollRecords: 10,
 * };
 * const consumer = new StreamConsumer(ReadableStream.from(["a", "b"]), options);
 * consumer.subscribe([consumer.topic]);
 * const batch = await consumer.poll(100);
 * for (const m of batch) consumer.stageOffsets(m.committable);
 * await consumer.commitOffsets();
 * assertEquals([batch.map((m) => m.offset), acked], [[100, 101], [102]]);
 * await consumer.close();
 * ```
 */
export interface StreamConsumerOptions {
  /**
   * Called with the next sequence number to process when everything below it was
   * processed: the stream's "commit". It may return a promise (the commit waits for it);
   * if it throws, the commit fails like a broker commit would. Called only with growing
   * numbers.
   */
  onCommit(next: number): void | Promise<void>;
  /**
   * The topic name the messages carry (partition 0 of it).
   * @default "stream"
   */
  topic?: string;
  /**
   * The sequence number of the stream's first item (e.g. a resume position).
   * @default 0
   */
  start?: number;
  /**
   * Most items one `poll()` returns.
   * @default 100
   */
  maxPollRecords?: number;
  /**
   * Stop reading (cancel the stream) when the consumer closes before the stream ended.
   * @default true
   */
  cancelOnClose?: boolean;
}

/** Answers a `read()` that has not settled by the time `poll` stops waiting. */
const PENDING = Symbol("pending");
/** Microtask turns a poll waits for the next item before returning what it has. */
const MICROTASK_PATIENCE = 16;

function microtasks(n: number): Promise<typeof PENDING> {
  let p: Promise<unknown> = Promise.resolve();
  for (let i = 0; i < n; i++) p = p.then(() => {});
  return p.then(() => PENDING);
}

/**
 * A {@link Consumer} over a `ReadableStream<T>`: see the module documentation.
 * `done` resolves once the stream has ended and every item was handed out;
 * {@link processStream} uses it to shut the processor down.
 *
 * @example A stream processor over a stream, shut down when the stream ends
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { CommitOffsets, StreamProcessor } from "@sluice/sluice";
 * import { StreamConsumer } from "@sluice/sluice/stream";
 *
 * let acked = 0;
 * const consumer = new StreamConsumer(ReadableStream.from([1, 2, 3]), {
 *   onCommit: (next) => void (acked = next), // everything below `next` was processed
 * });
 * const processor = new StreamProcessor({
 *   consumer,
 *   topics: [consumer.topic],
 *   factory: { createWithPartitions: (commit) => new CommitOffsets(commit) },
 *   handleSignals: false,
 * });
 * consumer.done.then(() => processor.signalShutdown());
 * await processor.run();
 * assertEquals(acked, 3);
 * ```
 */
export class StreamConsumer<T> implements Consumer<T> {
  /** The topic the messages carry. */
  readonly topic: string;
  /** The only partition: `<topic>/0`. */
  readonly partition: Partition;
  /** This member's id (there is no group). */
  readonly memberId = "stream";
  /** Resolves once the stream ended and every item was handed out (rejects if reading failed). */
  readonly done: Promise<void>;
  /** Items read from the stream so far (`read()` calls that returned one). */
  itemsRead = 0;

  readonly #onCommit: (next: number) => void | Promise<void>;
  readonly #maxPollRecords: number;
  readonly #cancelOnClose: boolean;
  readonly #reader: ReadableStreamDefaultReader<T>;
  #callbacks: AssignmentCallbacks | undefined;
  #assigned = false;
  #assignPending = false;
  #revokePending = false;
  #paused = false;
  #next: number;
  #staged: number | undefined;
  #committed: number;
  #pendingRead: Promise<ReadableStreamReadResult<T>> | undefined;
  #ended = false;
  #failure: SluiceError | undefined;
  #closed = false;
  #resolveDone!: () => void;
  #rejectDone!: (e: unknown) => void;

  /** Wraps `source` (locks it: read it only through this consumer). */
  constructor(source: ReadableStream<T>, options: StreamConsumerOptions) {
    if (!source || typeof (source as ReadableStream<T>).getReader !== "function") {
      throw new ConfigurationError(
        `StreamConsumer needs a ReadableStream, got ${String(source)}; for an async iterable ` +
          "use ReadableStream.from(iterable)",
      );
    }
    if (typeof options?.onCommit !== "function") {
      throw new ConfigurationError(
        "StreamConsumer needs onCommit(next): the callback that acknowledges processed items",
      );
    }
    if (source.locked) {
      throw new ConfigurationError(
        "StreamConsumer: the stream is locked (already being read); pass an unread stream " +
          "(e.g. one branch of stream.tee())",
      );
    }
    this.topic = options.topic ?? "stream";
    this.partition = Partition.of(this.topic, 0);
    this.#next = requireNonNegative("start", options.start ?? 0);
    this.#committed = this.#next;
    this.#maxPollRecords = requirePositiveInteger("maxPollRecords", options.maxPollRecords ?? 100);
    this.#cancelOnClose = options.cancelOnClose ?? true;
    this.#onCommit = options.onCommit;
    this.#reader = source.getReader();
    this.done = new Promise<void>((resolve, reject) => {
      this.#resolveDone = resolve;
      this.#rejectDone = reject;
    });
    this.done.catch(() => {}); // the error is also thrown from poll()
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#closed;
  }

  /** The next sequence number handed to `onCommit` so far (the stream's committed position). */
  get committed(): number {
    return this.#committed;
  }

  /** Subscribes to the stream's topic: `topics` must be exactly `[this.topic]`. */
  subscribe(topics: readonly (Topic | string)[], callbacks?: AssignmentCallbacks): void {
    this.#open();
    const names = topics.map((t) => typeof t === "string" ? t : t.name);
    if (names.length !== 1 || names[0] !== this.topic) {
      throw new ConfigurationError(
        `StreamConsumer reads one topic, "${this.topic}"; subscribe to [${
          JSON.stringify(this.topic)
        }] (got ${JSON.stringify(names)}), or set the topic option`,
      );
    }
    if (this.#assigned || this.#assignPending) {
      throw new InvalidStateError("StreamConsumer: already subscribed");
    }
    this.#callbacks = callbacks;
    this.#assignPending = true;
  }

  /** Unsubscribes: the revoke callback runs on the next `poll()`. */
  unsubscribe(): void {
    this.#assignPending = false;
    if (this.#assigned) this.#revokePending = true;
  }

  /**
   * Returns the next items (at most `maxPollRecords`), waiting up to `timeoutMs` for the
   * first. Reads the stream only here and only while not paused.
   */
  async poll(timeoutMs = 0): Promise<BrokerValue<T>[]> {
    this.#open();
    if (this.#assignPending) {
      this.#assignPending = false;
      this.#assigned = true;
      await this.#callbacks?.onAssign?.(new Map([[this.partition, this.#next]]));
    }
    if (this.#revokePending) {
      this.#revokePending = false;
      await this.#callbacks?.onRevoke?.([this.partition]);
      this.#assigned = false;
    }
    if (this.#failure !== undefined) throw this.#failure;
    if (!this.#assigned || this.#paused || this.#ended) return [];
    const out: BrokerValue<T>[] = [];
    let first = true;
    while (out.length < this.#maxPollRecords) {
      const read = this.#pendingRead ??= this.#reader.read();
      let result: ReadableStreamReadResult<T> | typeof PENDING;
      try {
        // The first read may wait up to `timeoutMs`.
        if (first && timeoutMs > 0) await sleepUnless(systemClock, timeoutMs, read);
        // An item already queued (or a few microtasks away, as from ReadableStream.from)
        // settles `read` before PENDING; otherwise this poll returns what it has.
        result = await Promise.race([read, microtasks(MICROTASK_PATIENCE)]);
      } catch (e) {
        this.#pendingRead = undefined;
        this.#ended = true;
        this.#failure = new SluiceError(
          `StreamConsumer: reading the source stream failed after ${this.#next} item(s): ${
            e instanceof Error ? e.message : String(e)
          }; items below ${this.#next} were handed out, the pipeline acknowledges those it ` +
            `finishes; resume from the last acknowledged position with the start option`,
          { cause: e },
        );
        this.#rejectDone(this.#failure);
        // Items read by this poll are handed out first; the next poll throws.
        if (out.length > 0) return out;
        throw this.#failure;
      }
      first = false;
      if (result === PENDING) break; // keep the read for the next poll: nothing is lost
      this.#pendingRead = undefined;
      if (result.done) {
        this.#ended = true;
        this.#resolveDone();
        break;
      }
      this.itemsRead++;
      out.push(new BrokerValue(result.value, this.partition, this.#next++, Date.now()));
    }
    return out;
  }

  /** Stops reading (the processor does this while the pipeline is full). */
  pause(partitions: readonly Partition[]): void {
    this.#check(partitions);
    if (partitions.length > 0) this.#paused = true;
  }

  /** Reads again. */
  resume(partitions: readonly Partition[]): void {
    this.#check(partitions);
    if (partitions.length > 0) this.#paused = false;
  }

  /** The partition, if paused. */
  paused(): Partition[] {
    return this.#paused && this.#assigned ? [this.partition] : [];
  }

  /** The next sequence number to hand out, while assigned. */
  tell(): Map<Partition, number> {
    return this.#assigned ? new Map([[this.partition, this.#next]]) : new Map();
  }

  /** A stream cannot be rewound or skipped: only seeking to the current position is accepted. */
  seek(offsets: ReadonlyMap<Partition, number>): void {
    for (const [p, o] of offsets) {
      this.#check([p]);
      if (o !== this.#next) {
        throw new InvalidStateError(
          `StreamConsumer cannot seek to ${o}: a stream is read once, in order (next is ` +
            `${this.#next}); to replay, open the source again from the committed position ` +
            `with the start option`,
        );
      }
    }
  }

  /** Records the position to acknowledge on the next `commitOffsets()`. */
  stageOffsets(offsets: Committable): void {
    for (const [p, o] of offsets) {
      if (p !== this.partition) {
        throw new ConfigurationError(
          `StreamConsumer: cannot commit ${p}; this consumer reads only ${this.partition}`,
        );
      }
      if (o > this.#next) {
        throw new InvalidStateError(
          `StreamConsumer: cannot commit ${o}, past the last item handed out (${this.#next - 1})`,
        );
      }
      if (this.#staged === undefined || o > this.#staged) this.#staged = o;
    }
  }

  /** Hands the staged position to `onCommit` (if it grew); resolves with what was committed. */
  async commitOffsets(): Promise<Map<Partition, number>> {
    const staged = this.#staged;
    this.#staged = undefined;
    if (staged === undefined || staged <= this.#committed) return new Map();
    await this.#onCommit(staged);
    this.#committed = staged;
    return new Map([[this.partition, staged]]);
  }

  /** Runs the revoke callback (if assigned), then releases the stream (cancelling it if unfinished). */
  async close(): Promise<void> {
    if (this.#closed) return;
    try {
      if (this.#assigned) {
        this.#assigned = false;
        await this.#callbacks?.onRevoke?.([this.partition]);
      }
    } finally {
      this.#closed = true;
      if (!this.#ended) {
        this.#ended = true;
        if (this.#cancelOnClose) {
          await this.#reader.cancel("sluice: the StreamConsumer was closed").catch(() => {});
        }
        this.#resolveDone();
      }
      try {
        this.#reader.releaseLock();
      } catch { /* a read is pending; the stream was cancelled or is left locked */ }
    }
  }

  #open(): void {
    if (this.#closed) throw new InvalidStateError("StreamConsumer is closed");
  }

  #check(partitions: readonly Partition[]): void {
    for (const p of partitions) {
      if (!this.#assigned || p !== this.partition) {
        throw new InvalidStateError(`StreamConsumer: ${p} is not assigned`);
      }
    }
  }
}

/**
 * Splits a byte stream (a `fetch` body, a file) into its lines, decoded as UTF-8, without
 * the line ends (`\n` or `\r\n`); a last line without a line end is kept, empty lines are
 * dropped. Parse each line in a pipeline step (e.g. `Decode` with `JSON_CODEC`), so a bad
 * line becomes an `InvalidMessage`, not a broken stream.
 *
 * @example Lines of a response body
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { lines } from "@sluice/sluice/stream";
 *
 * const out: string[] = [];
 * for await (const line of lines(new Response("a\nb\r\nc").body!)) out.push(line);
 * assertEquals(out, ["a", "b", "c"]);
 * ```
 */
export function lines(body: ReadableStream<Uint8Array>): ReadableStream<string> {
  let rest = "";
  // (The cast: lib.dom types TextDecoderStream's input as BufferSource, wider than bytes.)
  const decoder = new TextDecoderStream() as unknown as TransformStream<Uint8Array, string>;
  return body.pipeThrough(decoder).pipeThrough(
    new TransformStream<string, string>({
      transform(chunk, controller) {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        for (const p of parts) {
          const line = p.endsWith("\r") ? p.slice(0, -1) : p;
          if (line.length > 0) controller.enqueue(line);
        }
      },
      flush(controller) {
        const line = rest.endsWith("\r") ? rest.slice(0, -1) : rest;
        if (line.length > 0) controller.enqueue(line);
      },
    }),
  );
}
