/**
 * A consumer read as a standard `ReadableStream<Message<T>>`, for `for await` and
 * `pipeThrough` users, with commits of what the reader acknowledges only.
 *
 * @module
 */
import { type Clock, systemClock } from "../clock.ts";
import { BrokerValue, type Message, type Partition, type Topic } from "../types.ts";
import { ConfigurationError } from "../errors.ts";
import { requireNonNegative, requirePositiveInteger } from "../_validate.ts";
import type { Consumer } from "../backends/abstract.ts";

/**
 * Options of {@link consumerReadable}.
 *
 * @example Read two topics, fetching ahead at most 100 messages
 * ```ts
 * import { consumerReadable, type ConsumerReadableOptions } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("orders", 1);
 * broker.createTopic("refunds", 1);
 * const options: ConsumerReadableOptions = {
 *   topics: ["orders", "refunds"],
 *   highWaterMark: 100,
 *   commitIntervalMs: 5_000,
 * };
 * const { close } = consumerReadable(broker.getConsumer("readers"), options);
 * await close();
 * ```
 */
export interface ConsumerReadableOptions {
  /** Topics to subscribe to. */
  topics: readonly (Topic | string)[];
  /**
   * Messages the stream fetches ahead of the reader. The consumer is polled only while
   * the stream's `desiredSize` is positive, so at most this many plus one poll's worth
   * are buffered; 0 fetches only when the reader asks.
   * @default 1000
   */
  highWaterMark?: number;
  /**
   * How long (ms) one consumer poll waits for messages when there are none.
   * @default 100
   */
  pollTimeoutMs?: number;
  /**
   * Acknowledged offsets are committed at most this often while reading (and always on
   * revoke, `commit()` and close), in milliseconds; 0 commits at every fetch.
   * @default 1000
   */
  commitIntervalMs?: number;
  /** Called after partitions were assigned. */
  onAssign?(partitions: ReadonlyMap<Partition, number>): void | Promise<void>;
  /** Called when partitions are revoked, after their acknowledged offsets were committed. */
  onRevoke?(partitions: readonly Partition[]): void | Promise<void>;
  /**
   * While the reader asks for nothing (the stream is full), the consumer is still polled
   * this often, with every partition paused, so it keeps its group membership and takes
   * part in rebalances (and acknowledged offsets keep being committed). In milliseconds;
   * 0 disables it.
   * @default 1000
   */
  keepAliveMs?: number;
  /**
   * Clock for the commit interval and keep-alive polls.
   * @default systemClock
   */
  clock?: Clock;
}

/**
 * What {@link consumerReadable} returns.
 *
 * @example Acknowledge and commit explicitly
 * ```ts
 * import { type ConsumerReadable, consumerReadable, Partition } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 * import { assertEquals } from "@std/assert";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 1);
 * broker.produce("events", "hello");
 * const reader: ConsumerReadable<string> = consumerReadable(broker.getConsumer("g"), {
 *   topics: ["events"],
 * });
 * const { value } = await reader.readable.getReader().read();
 * const committed = await reader.commit(value!);
 * assertEquals(committed.get(Partition.of("events", 0)), 1);
 * await reader.close();
 * ```
 */
export interface ConsumerReadable<T> {
  /** The messages, in each partition's order. Cancelling it commits what was acknowledged and closes the consumer. */
  readonly readable: ReadableStream<Message<T>>;
  /**
   * Marks messages as processed. Offsets are committed up to the first message not yet
   * acknowledged in each partition (never past it), at the next fetch after
   * `commitIntervalMs`, on revoke, on `commit()` and on close. A message that is not a
   * broker message (a `Value`) acknowledges every delivered offset below its committable.
   */
  ack(messages: Message<unknown> | readonly Message<unknown>[]): void;
  /** Acknowledges `messages` (if given) and commits every acknowledged offset now. */
  commit(
    messages?: Message<unknown> | readonly Message<unknown>[],
  ): Promise<Map<Partition, number>>;
  /** Stops fetching, commits what was acknowledged, closes the consumer and ends the stream. */
  close(): Promise<void>;
}

/** Delivered offsets of one partition and which of them were acknowledged. */
class PartitionTrack {
  delivered: number[] = [];
  head = 0;
  acked = new Set<number>();
  /** Next offset to commit: everything below it was acknowledged. */
  frontier: number | undefined;
  committed: number | undefined;

  deliver(offset: number): void {
    this.delivered.push(offset);
  }

  ack(offset: number): void {
    const d = this.delivered;
    if (this.head >= d.length || offset < d[this.head] || offset > d[d.length - 1]) return;
    this.acked.add(offset);
    this.#advance();
  }

  ackBelow(next: number): void {
    const d = this.delivered;
    for (let i = this.head; i < d.length && d[i] < next; i++) this.acked.add(d[i]);
    this.#advance();
  }

  #advance(): void {
    const d = this.delivered;
    let h = this.head;
    while (h < d.length && this.acked.has(d[h])) {
      this.acked.delete(d[h]);
      this.frontier = d[h] + 1;
      h++;
    }
    if (h === d.length) {
      this.delivered = [];
      this.head = 0;
    } else if (h >= 1024 && h * 2 >= d.length) {
      this.delivered = d.slice(h);
      this.head = 0;
    } else this.head = h;
  }
}

/**
 * Reads `consumer` as a `ReadableStream` of messages. The stream is pull-based: the
 * consumer is polled only while the stream wants more (`desiredSize > 0`), so a slow
 * `for await` loop or a `pipeThrough`/`pipeTo` chain that backs up stops fetching.
 *
 * Commits are explicit: only offsets the reader acknowledges (`ack` or `commit`) are
 * committed, and per partition never past a delivered message that was not acknowledged.
 * On revoke, acknowledged offsets are committed before the partitions are released;
 * messages of revoked partitions already in the stream's queue can still be read, but
 * their acknowledgements are ignored (the partition's next owner reads them again).
 * Breaking out of `for await` (or `readable.cancel()`) commits and closes the consumer.
 *
 * While the stream is full (the reader is busy), the consumer is not fetched from; it is
 * still polled every `keepAliveMs` with its partitions paused, so it stays in its group.
 *
 * @example Read a topic with `for await`
 * ```ts
 * import { consumerReadable } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 2);
 * for (let i = 0; i < 10; i++) broker.produce("events", `event ${i}`);
 *
 * const { readable, ack, close } = consumerReadable(broker.getConsumer("readers"), {
 *   topics: ["events"],
 * });
 * let seen = 0;
 * for await (const message of readable) {
 *   console.log(`${message}: ${message.payload}`);
 *   ack(message);
 *   if (++seen === 10) break; // commits what was acknowledged and closes the consumer
 * }
 * await close();
 * ```
 */
export function consumerReadable<T>(
  consumer: Consumer<T>,
  options: ConsumerReadableOptions,
): ConsumerReadable<T> {
  if (!consumer || typeof consumer.poll !== "function") {
    throw new ConfigurationError("consumerReadable needs a Consumer as its first argument");
  }
  if (!options || !Array.isArray(options.topics) || options.topics.length === 0) {
    throw new ConfigurationError(
      "consumerReadable needs { topics: [...] } with at least one topic",
    );
  }
  const hwm = options.highWaterMark ?? 1000;
  if (hwm !== 0) requirePositiveInteger("highWaterMark", hwm);
  const pollTimeoutMs = requireNonNegative("pollTimeoutMs", options.pollTimeoutMs ?? 100);
  const commitIntervalMs = requireNonNegative(
    "commitIntervalMs",
    options.commitIntervalMs ?? 1000,
  );
  const keepAliveMs = requireNonNegative("keepAliveMs", options.keepAliveMs ?? 1000);
  const clock = options.clock ?? systemClock;

  const tracks = new Map<Partition, PartitionTrack>();
  let closing = false;
  let closed: Promise<void> | undefined;
  let pulling: Promise<void> | undefined;
  let committing: Promise<unknown> = Promise.resolve();
  let lastCommit = clock.now();
  let controller!: ReadableStreamDefaultController<Message<T>>;
  let streamDone = false;

  /** Commits the acknowledged frontier of `only` (or every tracked partition), one commit at a time. */
  const commitNow = (only?: readonly Partition[]): Promise<Map<Partition, number>> => {
    const run = committing.then(async () => {
      const offsets = new Map<Partition, number>();
      for (const p of only ?? tracks.keys()) {
        const t = tracks.get(p);
        if (t === undefined || t.frontier === undefined) continue;
        if (t.committed === undefined || t.frontier > t.committed) offsets.set(p, t.frontier);
      }
      lastCommit = clock.now();
      if (offsets.size === 0 || consumer.closed) return new Map<Partition, number>();
      consumer.stageOffsets(offsets);
      const done = await consumer.commitOffsets();
      for (const [p, o] of offsets) {
        const t = tracks.get(p);
        if (t !== undefined) t.committed = o;
      }
      return done;
    });
    committing = run.catch(() => {});
    return run;
  };

  consumer.subscribe(options.topics, {
    onAssign: async (partitions) => {
      for (const p of partitions.keys()) tracks.set(p, new PartitionTrack());
      await options.onAssign?.(partitions);
    },
    onRevoke: async (partitions) => {
      try {
        await commitNow(partitions);
      } finally {
        for (const p of partitions) tracks.delete(p);
      }
      await options.onRevoke?.(partitions);
    },
  });

  let pullActive = false;
  let lastPoll = clock.now();
  let keepingAlive: Promise<void> | undefined;
  const stopKeepAlive = new AbortController();

  const deliver = (batch: BrokerValue<T>[]): void => {
    for (const v of batch) {
      tracks.get(v.partition)?.deliver(v.offset);
      controller.enqueue(v);
    }
  };

  const fetch = async (): Promise<void> => {
    await keepingAlive;
    const paused = consumer.paused();
    if (paused.length > 0 && !consumer.closed) consumer.resume(paused);
    while (!closing) {
      if (clock.now() - lastCommit >= commitIntervalMs) await commitNow();
      const batch = await consumer.poll(pollTimeoutMs);
      lastPoll = clock.now();
      if (closing) return; // not delivered, not acknowledged: read again by the next owner
      if (batch.length === 0) continue;
      deliver(batch);
      return;
    }
  };

  /** Polls with every partition paused while the reader asks for nothing. */
  const keepAlive = async (): Promise<void> => {
    while (!closing) {
      await clock.sleep(keepAliveMs, stopKeepAlive.signal);
      if (closing) return;
      if (pullActive || clock.now() - lastPoll < keepAliveMs) continue;
      keepingAlive = (async () => {
        if (clock.now() - lastCommit >= commitIntervalMs) await commitNow();
        const assigned = [...consumer.tell().keys()];
        if (assigned.length > 0) consumer.pause(assigned);
        const batch = await consumer.poll(0);
        lastPoll = clock.now();
        // Partitions assigned during that poll were not paused yet: keep what they gave.
        if (batch.length > 0 && !closing) deliver(batch);
        const fresh = [...consumer.tell().keys()];
        const paused = new Set(consumer.paused());
        const unpaused = fresh.filter((p) => !paused.has(p));
        if (unpaused.length > 0) consumer.pause(unpaused);
      })();
      try {
        await keepingAlive;
      } catch (e) {
        if (!closing) controller.error(e);
        return;
      } finally {
        keepingAlive = undefined;
      }
    }
  };

  const shutdown = (): Promise<void> => {
    closing = true;
    stopKeepAlive.abort();
    closed ??= (async () => {
      await pulling?.catch(() => {});
      await keepingAlive?.catch(() => {});
      try {
        await commitNow();
      } finally {
        if (!consumer.closed) await consumer.close();
      }
    })();
    return closed;
  };

  const readable = new ReadableStream<Message<T>>(
    {
      start(c) {
        controller = c;
      },
      pull() {
        pullActive = true;
        pulling = fetch().then(
          () => {
            pullActive = false;
          },
          (e) => {
            pullActive = false;
            stopKeepAlive.abort(); // the stream errors: nothing left to keep alive
            throw e;
          },
        );
        return pulling;
      },
      async cancel() {
        streamDone = true;
        await shutdown();
      },
    },
    new CountQueuingStrategy({ highWaterMark: hwm }),
  );
  if (keepAliveMs > 0) void keepAlive();

  const ack = (messages: Message<unknown> | readonly Message<unknown>[]): void => {
    const list = Array.isArray(messages) ? messages : [messages as Message<unknown>];
    for (const m of list) {
      const v = m.source;
      if (v instanceof BrokerValue) tracks.get(v.partition)?.ack(v.offset);
      else for (const [p, o] of v.committable) tracks.get(p)?.ackBelow(o);
    }
  };

  return {
    readable,
    ack,
    commit(messages) {
      if (messages !== undefined) ack(messages);
      return commitNow();
    },
    async close() {
      await shutdown();
      if (!streamDone) {
        streamDone = true;
        try {
          controller.close();
        } catch {
          // already closed or errored
        }
      }
    },
  };
}
