/**
 * An in-memory broker with topics, partitions, consumer groups, committed offsets and
 * rebalancing between several consumers of one group. Deterministic with a `ManualClock`.
 * This file holds {@link LocalBroker} (topics, produce, group coordination) and its
 * {@link LocalProducer}; the group members are in `consumer.ts`, each partition's storage in
 * `_partition_log.ts`.
 *
 * @module
 */
import { type Clock, systemClock } from "../../clock.ts";
import { BrokerValue, Partition, Topic } from "../../types.ts";
import { ClosedError, ConfigurationError, UnknownTopicError } from "../../errors.ts";
import { requireNonNegative } from "../../_validate.ts";
import type { Producer } from "../abstract.ts";
import type { GroupState } from "./_group.ts";
import { PartitionLog, ReadArena } from "./_partition_log.ts";
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
import { LocalConsumer, type LocalConsumerOptions } from "./consumer.ts";

/**
 * Options of a {@link LocalBroker}.
 *
 * @example A member that stops polling loses its partitions (cooperatively, on a manual clock)
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { ManualClock } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const clock = new ManualClock(0);
 * const broker = new LocalBroker<string>({
 *   clock,
 *   sessionTimeoutMs: 1000,
 *   rebalance: "cooperative",
 * });
 * broker.createTopic("events", 2);
 * const [a, b] = [broker.getConsumer("g"), broker.getConsumer("g")];
 * a.subscribe(["events"]);
 * b.subscribe(["events"]);
 * for (let i = 0; i < 3; i++) await Promise.all([a.poll(0), b.poll(0)]);
 * assertEquals([a.tell().size, b.tell().size], [1, 1]);
 * await clock.advance(1001); // a stays silent longer than the session timeout
 * for (let i = 0; i < 2; i++) await b.poll(0);
 * assertEquals([broker.members("g").length, b.tell().size], [1, 2]);
 * ```
 */
export interface LocalBrokerOptions {
  /**
   * Clock for timestamps, poll waits and session timeouts.
   * @default systemClock
   */
  clock?: Clock;
  /**
   * A member that has not polled for this long is removed from its group and its
   * partitions are given to the others. In milliseconds.
   * @default 30000
   */
  sessionTimeoutMs?: number;
  /**
   * How groups rebalance. `"eager"`, as with kafkajs (and Kafka's classic protocol with an
   * eager assignor): every member revokes all its partitions, then all are assigned again.
   * `"cooperative"`, as with Kafka's cooperative-sticky assignor and the KIP-848 consumer
   * protocol: a sticky target assignment is computed, each member revokes only the
   * partitions that move away from it (its callbacks see just those), and once every member
   * has done so, the moved partitions are assigned to their new owners (`onAssign` with
   * only the added ones). Members keep fetching the partitions they keep throughout.
   * @default "eager"
   */
  rebalance?: "eager" | "cooperative";
}

/** The topics any member of `group` subscribed to, sorted by name. */
function subscribedTopics(group: GroupState): Topic[] {
  const topics = new Set<Topic>();
  for (const m of group.members.values()) for (const t of m[TOPICS]) topics.add(t);
  return [...topics].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/**
 * The in-memory broker: the default backend, and the one tests use.
 *
 * Plain `Uint8Array` payloads are stored as bytes, as Kafka stores them: `produce` copies
 * them (reuse your buffer freely) and every poll returns its own copy, so changing a polled
 * payload in place changes neither the log nor any other read. Other payloads are stored and
 * handed out as the objects given.
 *
 * @example Producing and consuming in memory
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * const topic = broker.createTopic("events", 4);
 * broker.produce(topic, "hello");
 * const consumer = broker.getConsumer("my-group");
 * consumer.subscribe([topic]);
 * const batch = await consumer.poll(100);
 * assertEquals(batch.map((m) => m.payload), ["hello"]);
 * ```
 */
export class LocalBroker<T> {
  /** The broker's clock. */
  readonly clock: Clock;
  readonly #sessionTimeoutMs: number;
  readonly #cooperative: boolean;
  readonly #logs = new Map<Partition, PartitionLog<T>>();
  readonly #arena = new ReadArena();
  readonly #topics = new Map<Topic, number>();
  readonly #roundRobin = new Map<Topic, number>();
  readonly #groups = new Map<string, GroupState>();
  #changed: { promise: Promise<void>; resolve: () => void } | undefined;

  /** Creates an empty broker. */
  constructor(options: LocalBrokerOptions = {}) {
    this.clock = options.clock ?? systemClock;
    this.#sessionTimeoutMs = requireNonNegative(
      "sessionTimeoutMs",
      options.sessionTimeoutMs ?? 30_000,
    );
    const rebalance = options.rebalance ?? "eager";
    if (rebalance !== "eager" && rebalance !== "cooperative") {
      throw new ConfigurationError(
        `rebalance must be "eager" or "cooperative", got ${JSON.stringify(rebalance)}`,
      );
    }
    this.#cooperative = rebalance === "cooperative";
  }

  /** @ignore Whether groups rebalance cooperatively. */
  get [COOPERATIVE](): boolean {
    return this.#cooperative;
  }

  /** Creates a topic with `partitions` partitions; throws if it exists or the count is invalid. */
  createTopic(name: string | Topic, partitions: number): Topic {
    const topic = typeof name === "string" ? Topic.of(name) : name;
    if (!Number.isInteger(partitions) || partitions <= 0) {
      throw new ConfigurationError(
        `topic "${topic.name}": partitions must be a positive integer, got ${partitions}`,
      );
    }
    if (this.#topics.has(topic)) {
      throw new ConfigurationError(`topic "${topic.name}" already exists`);
    }
    this.#topics.set(topic, partitions);
    for (let i = 0; i < partitions; i++) {
      this.#logs.set(Partition.of(topic, i), new PartitionLog<T>(this.#arena));
    }
    return topic;
  }

  /** The topics that exist. */
  topics(): Topic[] {
    return [...this.#topics.keys()];
  }

  /** The partitions of `topic`; throws {@link UnknownTopicError} if it does not exist. */
  partitions(topic: Topic | string): Partition[] {
    const t = this.#topic(topic);
    return Array.from({ length: this.#topics.get(t)! }, (_, i) => Partition.of(t, i));
  }

  /**
   * Appends `payload`. A topic destination picks partitions round-robin (or by `key`'s
   * hash when given); a partition destination writes there. Returns the stored message
   * (a new object: the log keeps payloads and timestamps, not `BrokerValue`s).
   */
  produce(
    destination: Topic | Partition | string,
    payload: T,
    options: { key?: string; timestamp?: number } = {},
  ): BrokerValue<T> {
    const partition = this.#resolve(destination, options.key);
    const timestamp = options.timestamp ?? this.clock.now();
    const offset = this.#logs.get(partition)!.append(payload, timestamp);
    this.#notify();
    return new BrokerValue(payload, partition, offset, timestamp);
  }

  /** The next offset to be written to `partition` (its end offset). */
  endOffset(partition: Partition): number {
    const log = this.#logs.get(partition);
    if (!log) throw new UnknownTopicError(`partition ${partition} does not exist`);
    return log.length;
  }

  /** Committed offsets of `group` (a copy). */
  committed(group: string): Map<Partition, number> {
    return new Map(this.#groups.get(group)?.committed ?? []);
  }

  /** Member ids of `group`, sorted. */
  members(group: string): string[] {
    return [...(this.#groups.get(group)?.members.keys() ?? [])].sort();
  }

  /** A new consumer in `group`. It joins the group when it subscribes. */
  getConsumer(group: string, options: LocalConsumerOptions = {}): LocalConsumer<T> {
    if (typeof group !== "string" || group.length === 0) {
      throw new ConfigurationError(`consumer group must be a non-empty string, got ${group}`);
    }
    let g = this.#groups.get(group);
    if (!g) {
      g = {
        name: group,
        committed: new Map(),
        members: new Map(),
        rebalancing: false,
        joined: new Set(),
        generation: 0,
        nextMemberId: 1,
      };
      this.#groups.set(group, g);
    }
    const id = `${group}-member-${String(g.nextMemberId++).padStart(6, "0")}`;
    return new LocalConsumer<T>(this, g, id, options);
  }

  /** A producer writing to this broker. */
  getProducer(): LocalProducer<T> {
    return new LocalProducer(this);
  }

  // ---- internals used by LocalConsumer -------------------------------------------------

  /**
   * @ignore Writes new `BrokerValue`s for the `count` messages of `partition` from offset
   * `from` (all below its end offset) to `out[at]`, `out[at + 1]`, …; returns the index
   * after the last one written.
   */
  [READ](
    partition: Partition,
    from: number,
    count: number,
    out: BrokerValue<T>[],
    at: number,
  ): number {
    return this.#logs.get(partition)!.read(partition, from, count, out, at);
  }

  /** @ignore The topic, or an {@link UnknownTopicError} when it does not exist. */
  [TOPIC](topic: Topic | string): Topic {
    return this.#topic(topic);
  }

  /** @ignore Resolves on the next produce or membership change. */
  [CHANGED](): Promise<void> {
    if (!this.#changed) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => resolve = r);
      this.#changed = { promise, resolve };
    }
    return this.#changed.promise;
  }

  /** @ignore Wakes whoever waits on `[CHANGED]()`. */
  [NOTIFY](): void {
    this.#notify();
  }

  /** @ignore Starts a rebalance of `group`: every member revokes, then rejoins. */
  [REBALANCE](group: GroupState): void {
    group.rebalancing = true;
    group.joined.clear();
    if (this.#cooperative) group.targets = this.#stickyTargets(group);
    // A new generation supersedes assignments members have not taken yet.
    for (const m of group.members.values()) m[ASSIGN](undefined, group.generation);
    this.#maybeCompleteRebalance(group);
    this.#notify();
  }

  /** @ignore A member finished revoking and rejoined. */
  [JOINED](group: GroupState, memberId: string): void {
    group.joined.add(memberId);
    this.#maybeCompleteRebalance(group);
  }

  /** @ignore Removes members that stopped polling. */
  [EXPIRE_IDLE](group: GroupState): void {
    if (this.#sessionTimeoutMs === 0) return;
    const now = this.clock.now();
    let expired = false;
    for (const [id, m] of group.members) {
      if (now - m[LAST_POLL] > this.#sessionTimeoutMs) {
        group.members.delete(id);
        m[EXPIRE]();
        expired = true;
      }
    }
    if (expired) this[REBALANCE](group);
  }

  #maybeCompleteRebalance(group: GroupState): void {
    if (!group.rebalancing) return;
    for (const id of group.members.keys()) if (!group.joined.has(id)) return;
    group.rebalancing = false;
    group.generation++;
    if (group.targets !== undefined) {
      for (const [id, m] of group.members) m[ASSIGN](group.targets.get(id) ?? [], group.generation);
      group.targets = undefined;
      this.#notify();
      return;
    }
    const ids = [...group.members.keys()].sort();
    const assignment = new Map<string, Partition[]>(ids.map((id) => [id, []]));
    const sorted = subscribedTopics(group);
    let k = 0;
    for (const t of sorted) {
      const interested = ids.filter((id) => group.members.get(id)![TOPICS].has(t));
      for (const p of this.partitions(t)) {
        assignment.get(interested[k++ % interested.length])!.push(p);
      }
    }
    for (const [id, parts] of assignment) group.members.get(id)![ASSIGN](parts, group.generation);
    this.#notify();
  }

  /**
   * A balanced assignment that leaves every partition where it is when it can: each member
   * keeps what it owns up to its share; the rest goes to members below theirs.
   */
  #stickyTargets(group: GroupState): Map<string, Partition[]> {
    const ids = [...group.members.keys()].sort();
    const target = new Map<string, Partition[]>(ids.map((id) => [id, []]));
    if (ids.length === 0) return target;
    const sorted = subscribedTopics(group);
    const all = sorted.flatMap((t) => this.partitions(t));
    const owner = new Map<Partition, string>();
    for (const [id, m] of group.members) for (const p of m.assignment) owner.set(p, id);
    const owned = (id: string) => group.members.get(id)!.assignment.length;
    const byOwned = [...ids].sort((a, b) => owned(b) - owned(a) || (a < b ? -1 : 1));
    const base = Math.floor(all.length / ids.length);
    const extra = all.length % ids.length;
    const quota = new Map(byOwned.map((id, i) => [id, base + (i < extra ? 1 : 0)]));
    const free: Partition[] = [];
    for (const p of all) {
      const o = owner.get(p);
      if (
        o !== undefined && group.members.get(o)![TOPICS].has(p.topic) &&
        target.get(o)!.length < quota.get(o)!
      ) target.get(o)!.push(p);
      else free.push(p);
    }
    for (const p of free) {
      const interested = ids.filter((id) => group.members.get(id)![TOPICS].has(p.topic));
      let best = interested[0];
      for (const id of interested) {
        const room = quota.get(id)! - target.get(id)!.length;
        const bestRoom = quota.get(best)! - target.get(best)!.length;
        if (room > bestRoom) best = id;
      }
      if (best !== undefined) target.get(best)!.push(p);
    }
    return target;
  }

  #topic(topic: Topic | string): Topic {
    const t = typeof topic === "string" ? Topic.of(topic) : topic;
    if (!this.#topics.has(t)) {
      throw new UnknownTopicError(
        `topic "${t.name}" does not exist; create it first with broker.createTopic("${t.name}", partitions)`,
      );
    }
    return t;
  }

  #resolve(destination: Topic | Partition | string, key?: string): Partition {
    if (destination instanceof Partition) {
      if (!this.#logs.has(destination)) {
        this.#topic(destination.topic);
        throw new UnknownTopicError(
          `partition ${destination} does not exist; topic "${destination.topic.name}" has ${
            this.#topics.get(destination.topic)
          } partitions`,
        );
      }
      return destination;
    }
    const topic = this.#topic(destination);
    const n = this.#topics.get(topic)!;
    let index: number;
    if (key !== undefined) {
      let h = 0;
      for (let i = 0; i < key.length; i++) h = (Math.imul(h, 31) + key.charCodeAt(i)) | 0;
      index = (h >>> 0) % n;
    } else {
      index = this.#roundRobin.get(topic) ?? 0;
      this.#roundRobin.set(topic, (index + 1) % n);
    }
    return Partition.of(topic, index);
  }

  #notify(): void {
    const c = this.#changed;
    if (c) {
      this.#changed = undefined;
      c.resolve();
    }
  }
}

/**
 * A producer for a {@link LocalBroker}: deliveries are confirmed at once.
 *
 * @example Producing to a topic
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * const topic = broker.createTopic("out", 1);
 * const delivered = await broker.getProducer().produce(topic, "hi");
 * assertEquals([String(delivered.partition), delivered.offset], ["out/0", 0]);
 * ```
 */
export class LocalProducer<T> implements Producer<T> {
  readonly #broker: LocalBroker<T>;
  #closed = false;

  /** @ignore Use {@link LocalBroker.getProducer}. */
  constructor(broker: LocalBroker<T>) {
    this.#broker = broker;
  }

  produce(destination: Topic | Partition, payload: T): Promise<BrokerValue<T>> {
    if (this.#closed) {
      return Promise.reject(new ClosedError("producer is closed; create a new producer"));
    }
    try {
      return Promise.resolve(this.#broker.produce(destination, payload));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}
