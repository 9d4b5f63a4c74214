/**
 * What a `LocalBroker` and the members of its consumer groups share, private to the local
 * backend: the record of a group ({@link GroupState}), and the internal side each shows the
 * other ({@link GroupBroker}, {@link GroupMember}), keyed by the symbols of `_symbols.ts`.
 * The consumer knows the broker only through {@link GroupBroker}, so `consumer.ts` does not
 * import `broker.ts` (which creates consumers): no import circle.
 *
 * @module
 */
import type { Clock } from "../../clock.ts";
import type { BrokerValue, Partition, Topic } from "../../types.ts";
import type {
  ASSIGN,
  CHANGED,
  COOPERATIVE,
  EXPIRE,
  EXPIRE_IDLE,
  JOINED,
  LAST_POLL,
  NOTIFY,
  READ,
  REBALANCE,
  TOPIC,
  TOPICS,
} from "./_symbols.ts";

/** A consumer group of a `LocalBroker`: members, committed offsets, rebalance progress. */
export interface GroupState {
  readonly name: string;
  readonly committed: Map<Partition, number>;
  readonly members: Map<string, GroupMember>;
  rebalancing: boolean;
  readonly joined: Set<string>;
  generation: number;
  nextMemberId: number;
  /** Cooperative rebalancing: each member's partitions once the rebalance completes. */
  targets?: Map<string, Partition[]>;
}

/** A `LocalConsumer` as its group sees it (see `_symbols.ts` for each member). */
export interface GroupMember {
  /** Partitions currently owned. */
  readonly assignment: Partition[];
  /** The topics subscribed to. */
  readonly [TOPICS]: Set<Topic>;
  /** When the member last polled, on the broker's clock. */
  readonly [LAST_POLL]: number;
  /** The group removed the member (session timeout). */
  [EXPIRE](): void;
  /** The group assigned partitions for a new generation (undefined: not yet). */
  [ASSIGN](partitions: Partition[] | undefined, generation: number): void;
}

/** A `LocalBroker` as its consumers see it (see `_symbols.ts` for each member). */
export interface GroupBroker<T> {
  /** The broker's clock. */
  readonly clock: Clock;
  /** The next offset to be written to `partition`. */
  endOffset(partition: Partition): number;
  /** Whether groups rebalance cooperatively. */
  readonly [COOPERATIVE]: boolean;
  /** Writes `BrokerValue`s of stored messages to `out`; returns the index after the last. */
  [READ](
    partition: Partition,
    from: number,
    count: number,
    out: BrokerValue<T>[],
    at: number,
  ): number;
  /** The topic, or an `UnknownTopicError` when it does not exist. */
  [TOPIC](topic: Topic | string): Topic;
  /** Resolves on the next produce or membership change. */
  [CHANGED](): Promise<void>;
  /** Wakes whoever waits on `[CHANGED]()`. */
  [NOTIFY](): void;
  /** Starts a rebalance of `group`. */
  [REBALANCE](group: GroupState): void;
  /** A member of `group` finished revoking and rejoined. */
  [JOINED](group: GroupState, memberId: string): void;
  /** Removes the members of `group` that stopped polling. */
  [EXPIRE_IDLE](group: GroupState): void;
}
