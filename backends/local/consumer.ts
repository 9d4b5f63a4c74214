/**
 * {@link LocalConsumer}: a consumer-group member of a `LocalBroker`, which creates it
 * (`broker.getConsumer(group)`), and its options.
 *
 * @module
 */
import { sleepUnless } from "../../clock.ts";
import type { BrokerValue, Committable, Partition, Topic } from "../../types.ts";
import { ClosedError, ConfigurationError, ConsumerError } from "../../errors.ts";
import { requirePositiveInteger } from "../../_validate.ts";
import type { AssignmentCallbacks, Consumer } from "../abstract.ts";
import { GroupEvents } from "../_group_events.ts";
import type { GroupBroker, GroupState } from "./_group.ts";
import {
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

/**
 * Options of a {@link LocalConsumer}, given to {@link LocalBroker.getConsumer}.
 *
 * @example Small polls from the start of the topic
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { LocalBroker, type LocalConsumerOptions } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<number>();
 * const topic = broker.createTopic("numbers", 1);
 * for (let i = 0; i < 5; i++) broker.produce(topic, i);
 * const options: LocalConsumerOptions = { maxPollMessages: 2, initialOffset: "earliest" };
 * const consumer = broker.getConsumer("g", options);
 * consumer.subscribe([topic]);
 * const batch = await consumer.poll(0);
 * assertEquals(batch.map((m) => m.payload), [0, 1]);
 * ```
 */
export interface LocalConsumerOptions {
  /**
   * Most messages one `poll()` returns.
   * @default 1000
   */
  maxPollMessages?: number;
  /**
   * Where to start a partition with no committed offset.
   * @default "earliest"
   */
  initialOffset?: "earliest" | "latest";
}

/**
 * A consumer-group member of a {@link LocalBroker}. Rebalances are eager by default, as with
 * kafkajs: when membership changes, every member revokes all its partitions (running
 * `onRevoke`, and committing inside it), then the group assigns partitions round-robin.
 * With `rebalance: "cooperative"` on the broker, only partitions that move are revoked and
 * assigned (see {@link LocalBrokerOptions.rebalance}). A partition is never owned by two
 * members at once.
 *
 * @example A lone member gets every partition
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<number>();
 * broker.createTopic("numbers", 2);
 * const assigned: string[] = [];
 * const c = broker.getConsumer("g");
 * c.subscribe(["numbers"], { onAssign: (ps) => ps.forEach((_, p) => assigned.push(String(p))) });
 * await c.poll(0);
 * assertEquals(assigned, ["numbers/0", "numbers/1"]);
 * ```
 */
export class LocalConsumer<T> implements Consumer<T> {
  /** This member's id. */
  readonly memberId: string;
  /** The messaging system in metric attributes. */
  readonly messagingSystem = "sluice_local";
  /** @ignore The topics subscribed to. */
  [TOPICS]: Set<Topic> = new Set();
  /** @ignore When this member last polled, on the broker's clock. */
  [LAST_POLL]: number;

  readonly #broker: GroupBroker<T>;
  readonly #group: GroupState;
  readonly #maxPoll: number;
  readonly #initialOffset: "earliest" | "latest";
  #callbacks: AssignmentCallbacks = {};
  #subscribed = false;
  #closed = false;
  #expired = false;
  #assigned: Partition[] = [];
  #pendingAssign: Partition[] | undefined;
  #positions = new Map<Partition, number>();
  #paused = new Set<Partition>();
  #staged = new Map<Partition, number>();
  #rotation = 0;
  readonly #events = new GroupEvents();
  /** Number of `commitOffsets()` calls that committed something (for tests). */
  commitCalls = 0;

  /** The consumer group's name. */
  get group(): string {
    return this.#group.name;
  }

  /** The client id in metric attributes: the member id. */
  get clientId(): string {
    return this.memberId;
  }

  /** @ignore Use {@link LocalBroker.getConsumer}. */
  constructor(
    broker: GroupBroker<T>,
    group: GroupState,
    memberId: string,
    options: LocalConsumerOptions,
  ) {
    this.#broker = broker;
    this.#group = group;
    this.memberId = memberId;
    this.#maxPoll = requirePositiveInteger("maxPollMessages", options.maxPollMessages ?? 1000);
    const initial = options.initialOffset ?? "earliest";
    if (initial !== "earliest" && initial !== "latest") {
      throw new ConfigurationError(
        `initialOffset must be "earliest" or "latest", got ${JSON.stringify(initial)}`,
      );
    }
    this.#initialOffset = initial;
    this[LAST_POLL] = broker.clock.now();
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Partitions currently owned. */
  get assignment(): Partition[] {
    return [...this.#assigned];
  }

  subscribe(topics: readonly (Topic | string)[], callbacks: AssignmentCallbacks = {}): void {
    this.#checkOpen();
    if (!Array.isArray(topics) || topics.length === 0) {
      throw new ConfigurationError("subscribe needs at least one topic");
    }
    const resolved = topics.map((t) => this.#broker[TOPIC](t));
    this[TOPICS] = new Set(resolved);
    this.#callbacks = callbacks;
    this.#subscribed = true;
    this[LAST_POLL] = this.#broker.clock.now();
    this.#group.members.set(this.memberId, this);
    this.#broker[REBALANCE](this.#group);
  }

  unsubscribe(): void {
    this.#checkOpen();
    if (!this.#subscribed) return;
    this.#subscribed = false;
    this.#group.members.delete(this.memberId);
    this.#broker[REBALANCE](this.#group);
  }

  async poll(timeoutMs = 0): Promise<BrokerValue<T>[]> {
    this.#checkOpen();
    const clock = this.#broker.clock;
    const deadline = clock.now() + timeoutMs;
    for (;;) {
      this[LAST_POLL] = clock.now();
      this.#broker[EXPIRE_IDLE](this.#group);
      if (this.#expired) {
        throw new ConsumerError(
          `consumer ${this.memberId} was removed from group "${this.#group.name}": it did not ` +
            `poll within the session timeout; its partitions went to other members. Create a new consumer.`,
        );
      }
      await this.#handleRebalance();
      const batch = this.#fetch();
      if (batch.length > 0) return batch;
      const left = deadline - clock.now();
      if (left <= 0) return batch;
      await sleepUnless(clock, left, this.#broker[CHANGED]());
    }
  }

  /**
   * True when the group is rebalancing and the next `poll()` would revoke partitions or take
   * a new assignment.
   */
  rebalancePending(): boolean {
    const g = this.#group;
    return this.#pendingAssign !== undefined ||
      (g.rebalancing && this.#subscribed && !g.joined.has(this.memberId));
  }

  /** Calls `listener` on every rebalance, assignment, expiry and close (see `Consumer`). */
  onGroupEvent(listener: () => void): () => void {
    return this.#events.listen(listener);
  }

  pause(partitions: readonly Partition[]): void {
    this.#checkOpen();
    this.#checkAssigned(partitions, "pause");
    for (const p of partitions) this.#paused.add(p);
  }

  resume(partitions: readonly Partition[]): void {
    this.#checkOpen();
    this.#checkAssigned(partitions, "resume");
    for (const p of partitions) this.#paused.delete(p);
    this.#broker[NOTIFY]();
  }

  paused(): Partition[] {
    return [...this.#paused];
  }

  tell(): Map<Partition, number> {
    return new Map(this.#positions);
  }

  seek(offsets: ReadonlyMap<Partition, number>): void {
    this.#checkOpen();
    this.#checkAssigned([...offsets.keys()], "seek");
    for (const [p, o] of offsets) {
      const end = this.#broker.endOffset(p);
      if (!Number.isInteger(o) || o < 0 || o > end) {
        throw new ConsumerError(`cannot seek ${p} to ${o}: offsets must be within 0..${end}`);
      }
    }
    for (const [p, o] of offsets) this.#positions.set(p, o);
  }

  stageOffsets(offsets: Committable): void {
    for (const [p, o] of offsets) this.#staged.set(p, o);
  }

  commitOffsets(): Promise<Map<Partition, number>> {
    this.#checkOpen();
    const staged = this.#staged;
    for (const [p, o] of staged) {
      if (!this.#assigned.includes(p)) {
        return Promise.reject(
          new ConsumerError(
            `cannot commit ${p}@${o}: partition is not assigned to ${this.memberId} ` +
              `(it was revoked or never assigned); commit inside onRevoke before releasing it`,
          ),
        );
      }
      if (!Number.isInteger(o) || o < 0) {
        return Promise.reject(new ConsumerError(`cannot commit ${p}@${o}: invalid offset`));
      }
    }
    this.#staged = new Map();
    for (const [p, o] of staged) this.#group.committed.set(p, o);
    if (staged.size > 0) this.commitCalls++;
    return Promise.resolve(staged);
  }

  endOffset(partition: Partition): number {
    return this.#broker.endOffset(partition);
  }

  /** The end offsets of `partitions` (see `Consumer.endOffsets`). */
  endOffsets(partitions: readonly Partition[]): Promise<Map<Partition, number>> {
    return Promise.resolve(new Map(partitions.map((p) => [p, this.#broker.endOffset(p)])));
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#subscribed && !this.#expired) {
      if (this.#assigned.length > 0) await this.#revoke();
      this.#subscribed = false;
      this.#group.members.delete(this.memberId);
      this.#broker[REBALANCE](this.#group);
    }
    this.#closed = true;
    this.#events.emit();
  }

  /** @ignore The group removed this member (session timeout). */
  [EXPIRE](): void {
    this.#expired = true;
    this.#assigned = [];
    this.#positions.clear();
    this.#paused.clear();
    this.#staged.clear();
    this.#events.emit();
  }

  /** @ignore The group assigned partitions for a new generation (undefined: a rebalance began). */
  [ASSIGN](partitions: Partition[] | undefined, _generation: number): void {
    this.#pendingAssign = partitions;
    this.#events.emit();
  }

  async #handleRebalance(): Promise<void> {
    const g = this.#group;
    if (g.rebalancing && this.#subscribed && !g.joined.has(this.memberId)) {
      if (g.targets !== undefined) {
        // Cooperative: give up only what moves away from this member.
        const keep = new Set(g.targets.get(this.memberId) ?? []);
        const lose = this.#assigned.filter((p) => !keep.has(p));
        if (lose.length > 0) await this.#revoke(lose);
      } else if (this.#assigned.length > 0) await this.#revoke();
      if (this.#closed || this.#expired) return;
      this.#broker[JOINED](g, this.memberId);
    }
    const parts = this.#pendingAssign;
    if (parts === undefined) return;
    this.#pendingAssign = undefined;
    if (this.#broker[COOPERATIVE]) {
      const target = new Set(parts);
      const lose = this.#assigned.filter((p) => !target.has(p));
      if (lose.length > 0) await this.#revoke(lose);
      const added = parts.filter((p) => !this.#assigned.includes(p));
      this.#assigned = [...this.#assigned, ...added];
      const start = new Map<Partition, number>();
      for (const p of added) {
        start.set(p, this.#startOffset(p));
        this.#positions.set(p, start.get(p)!);
      }
      if (added.length > 0) await this.#callbacks.onAssign?.(start);
      return;
    }
    this.#assigned = parts;
    this.#paused.clear();
    this.#positions.clear();
    for (const p of parts) this.#positions.set(p, this.#startOffset(p));
    if (parts.length > 0) await this.#callbacks.onAssign?.(new Map(this.#positions));
  }

  /** Where a newly assigned partition starts: the group's commit, else `initialOffset`. */
  #startOffset(p: Partition): number {
    return this.#group.committed.get(p) ??
      (this.#initialOffset === "earliest" ? 0 : this.#broker.endOffset(p));
  }

  async #revoke(parts: Partition[] = this.#assigned): Promise<void> {
    try {
      await this.#callbacks.onRevoke?.(parts);
    } finally {
      const gone = new Set(parts);
      this.#assigned = this.#assigned.filter((p) => !gone.has(p));
      for (const p of parts) {
        this.#positions.delete(p);
        this.#paused.delete(p);
        this.#staged.delete(p);
      }
    }
  }

  #fetch(): BrokerValue<T>[] {
    const parts = this.#assigned;
    const n = parts.length;
    if (n === 0) return [];
    const max = this.#maxPoll;
    const start = this.#rotation++ % n;
    // First how many messages each partition gives, so that the batch is allocated once, at
    // its size; the broker builds the BrokerValues as it fills it.
    const picked: Partition[] = [];
    const from: number[] = [];
    const counts: number[] = [];
    let total = 0;
    for (let k = 0; k < n && total < max; k++) {
      const p = parts[(start + k) % n];
      if (this.#paused.has(p)) continue;
      const pos = this.#positions.get(p)!;
      const take = Math.min(this.#broker.endOffset(p) - pos, max - total);
      if (take <= 0) continue;
      picked.push(p);
      from.push(pos);
      counts.push(take);
      total += take;
    }
    if (total === 0) return [];
    const out = new Array<BrokerValue<T>>(total);
    let at = 0;
    for (let i = 0; i < picked.length; i++) {
      at = this.#broker[READ](picked[i], from[i], counts[i], out, at);
      this.#positions.set(picked[i], from[i] + counts[i]);
    }
    return out;
  }

  #checkOpen(): void {
    if (this.#closed) {
      throw new ClosedError(`consumer ${this.memberId} is closed; create a new consumer`);
    }
  }

  #checkAssigned(partitions: readonly Partition[], what: string): void {
    for (const p of partitions) {
      if (!this.#assigned.includes(p)) {
        throw new ConsumerError(
          `cannot ${what} ${p}: it is not assigned to ${this.memberId} (assigned: ${
            this.#assigned.map(String).join(", ") || "none"
          })`,
        );
      }
    }
  }
}
