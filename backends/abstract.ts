/**
 * The backend contract: what the stream processor needs from a consumer and a producer.
 * Mirrors Arroyo's, with promises wherever I/O is involved and batch polling.
 *
 * @module
 */
import type { BrokerValue, Committable, Partition, Topic } from "../types.ts";

/**
 * Callbacks a consumer runs, from inside `poll()`, when its assignment changes.
 *
 * @example Seeing which partitions a consumer was given
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import type { AssignmentCallbacks } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 2);
 * const owned = new Set<string>();
 * const callbacks: AssignmentCallbacks = {
 *   onAssign: (partitions) => partitions.forEach((_, p) => owned.add(String(p))),
 *   onRevoke: (partitions) => partitions.forEach((p) => owned.delete(String(p))),
 * };
 * const consumer = broker.getConsumer("g");
 * consumer.subscribe(["events"], callbacks);
 * await consumer.poll(0); // the assignment happens inside poll()
 * assertEquals([...owned], ["events/0", "events/1"]);
 * await consumer.close(); // revokes first
 * assertEquals(owned.size, 0);
 * ```
 */
export interface AssignmentCallbacks {
  /**
   * Partitions were assigned, each with the offset consumption starts from. The consumer
   * waits for the returned promise before fetching.
   */
  onAssign?(partitions: ReadonlyMap<Partition, number>): void | Promise<void>;
  /**
   * Partitions are being taken away. The consumer still owns them (commits still work)
   * until the returned promise settles; only then are they released to the group.
   */
  onRevoke?(partitions: readonly Partition[]): void | Promise<void>;
}

/**
 * A member of a consumer group.
 *
 * Offsets everywhere are the *next* offset to read. `stageOffsets` records what may be
 * committed; `commitOffsets` commits everything staged.
 *
 * @example Code written against the contract runs on every backend
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import type { Consumer } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * async function readAndCommit<T>(consumer: Consumer<T>, topic: string): Promise<T[]> {
 *   consumer.subscribe([topic]);
 *   const batch = await consumer.poll(100);
 *   for (const m of batch) consumer.stageOffsets(m.committable);
 *   await consumer.commitOffsets();
 *   return batch.map((m) => m.payload);
 * }
 *
 * const broker = new LocalBroker<string>();
 * const topic = broker.createTopic("events", 1);
 * broker.produce(topic, "a");
 * assertEquals(await readAndCommit(broker.getConsumer("g"), "events"), ["a"]);
 * assertEquals(broker.committed("g").get(broker.partitions(topic)[0]), 1);
 * ```
 */
export interface Consumer<T> {
  /** Joins the group for `topics`; callbacks fire from inside later `poll()` calls. */
  subscribe(topics: readonly (Topic | string)[], callbacks?: AssignmentCallbacks): void;
  /** Leaves the subscription; the revoke callback fires on a later `poll()`. */
  unsubscribe(): void;
  /**
   * Returns the next messages (possibly none), waiting up to `timeoutMs` when there are
   * none. Runs assignment callbacks. Paused partitions yield nothing.
   */
  poll(timeoutMs?: number): Promise<BrokerValue<T>[]>;
  /** Stops fetching from `partitions` (all must be assigned). */
  pause(partitions: readonly Partition[]): void;
  /** Resumes fetching from `partitions` (all must be assigned). */
  resume(partitions: readonly Partition[]): void;
  /** Currently paused partitions. */
  paused(): Partition[];
  /** Working offsets (next to read) of the assigned partitions. */
  tell(): Map<Partition, number>;
  /** Moves working offsets of assigned partitions. */
  seek(offsets: ReadonlyMap<Partition, number>): void;
  /** Records offsets to commit on the next `commitOffsets()`. */
  stageOffsets(offsets: Committable): void;
  /** Commits staged offsets; resolves with what was committed. */
  commitOffsets(): Promise<Map<Partition, number>>;
  /** Leaves the group (running the revoke callback first) and releases resources. */
  close(): Promise<void>;
  /** True after `close()`. */
  readonly closed: boolean;
  /** This member's id in its group. */
  readonly memberId: string;
  /**
   * Optional: the end offset (next offset to be written) of a partition, for lag metrics.
   * Backends that cannot answer cheaply return undefined.
   */
  endOffset?(partition: Partition): number | undefined;
  /**
   * Optional: the end offsets (next offset to be written) of `partitions`, asked of the
   * broker now. `StreamProcessor.run({ untilCaughtUp: true })` needs it.
   */
  endOffsets?(partitions: readonly Partition[]): Promise<Map<Partition, number>>;
  /**
   * Optional, for metric attributes (`messaging.system`): the OpenTelemetry name of the
   * messaging system, e.g. "kafka".
   */
  readonly messagingSystem?: string;
  /** Optional, for metric attributes (`messaging.consumer.group.name`): the group's name. */
  readonly group?: string;
  /** Optional, for metric attributes (`messaging.client.id`): the client id. */
  readonly clientId?: string;
  /**
   * Optional: true when the group is rebalancing and the next `poll()` would revoke
   * partitions. A processor holding back polls at once when it sees this.
   */
  rebalancePending?(): boolean;
  /**
   * Optional: calls `listener` whenever something happens that a processor holding back
   * (paused for backpressure) must act on by polling: a rebalance becomes pending, partitions
   * are assigned or revoked, the consumer fails or is closed. Called synchronously from
   * wherever the consumer learns of it (keep `listener` short: set a flag, resolve a
   * promise). Returns the function that removes `listener`.
   *
   * With it, a paused `StreamProcessor` sleeps its whole `pausedBackoffMs` between retries
   * and still lets a rebalance through at once; without it (a consumer of your own), the
   * processor notices one only when its back-off ends. All of Sluice's consumers have it.
   *
   * @example Waking a paused loop when the group changes
   * ```ts
   * import { assert } from "@std/assert";
   * import type { Consumer } from "@sluice/sluice";
   * import { LocalBroker } from "@sluice/sluice/local";
   *
   * const broker = new LocalBroker<string>();
   * broker.createTopic("events", 2);
   * const first: Consumer<string> = broker.getConsumer("g");
   * first.subscribe(["events"]);
   * await first.poll(0); // owns both partitions
   * let woken = false;
   * const stop = first.onGroupEvent?.(() => woken = true);
   * broker.getConsumer("g").subscribe(["events"]); // a second member joins: a rebalance
   * assert(woken && first.rebalancePending?.() === true);
   * stop?.();
   * await first.close();
   * ```
   */
  onGroupEvent?(listener: () => void): () => void;
}

/**
 * Writes messages to a topic (or a specific partition).
 *
 * @example Implementing the contract: a producer that keeps what it is given
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { BrokerValue, Partition, type Producer, type Topic } from "@sluice/sluice";
 *
 * class MemoryProducer<T> implements Producer<T> {
 *   readonly sent: T[] = [];
 *   produce(destination: Topic | Partition, payload: T): Promise<BrokerValue<T>> {
 *     const p = destination instanceof Partition ? destination : Partition.of(destination, 0);
 *     const offset = this.sent.push(payload) - 1;
 *     return Promise.resolve(new BrokerValue(payload, p, offset, Date.now()));
 *   }
 *   close(): Promise<void> {
 *     return Promise.resolve();
 *   }
 * }
 *
 * const producer = new MemoryProducer<string>();
 * const delivered = await producer.produce(Partition.of("out", 0), "hi");
 * assertEquals([delivered.offset, producer.sent], [0, ["hi"]]);
 * ```
 */
export interface Producer<T> {
  /** Sends `payload`; resolves with where it landed once the broker confirmed it. */
  produce(destination: Topic | Partition, payload: T): Promise<BrokerValue<T>>;
  /** Flushes and releases resources. */
  close(): Promise<void>;
}
