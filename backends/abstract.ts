/**
 * The backend contract: what the stream processor needs from a consumer and a producer.
 * Mirrors Arroyo's, with promises wherever I/O is involved and batch polling.
 *
 * @module
 */
import type { BrokerValue, Committable, Partition, Topic } from "../types.ts";

/** Callbacks a consumer runs, from inside `poll()`, when its assignment changes. */
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
   * Optional: true when the group is rebalancing and the next `poll()` would revoke
   * partitions. A processor holding back polls at once when it sees this.
   */
  rebalancePending?(): boolean;
  /**
   * Optional: the end offsets (next offset to be written) of `partitions`, asked of the
   * broker now. `StreamProcessor.run({ untilCaughtUp: true })` needs it.
   */
  endOffsets?(partitions: readonly Partition[]): Promise<Map<Partition, number>>;
}

/** Writes messages to a topic (or a specific partition). */
export interface Producer<T> {
  /** Sends `payload`; resolves with where it landed once the broker confirmed it. */
  produce(destination: Topic | Partition, payload: T): Promise<BrokerValue<T>>;
  /** Flushes and releases resources. */
  close(): Promise<void>;
}
