/**
 * `KafkaConsumer`: a consumer-group member on kafkajs, bridged from kafkajs's push model
 * (`eachBatch`) to Sluice's poll model.
 *
 * ## How the bridge works
 *
 * kafkajs fetches, hands each partition's batch to `eachBatch`, and fetches that broker
 * again only once every handler of the fetch has returned. Our handler queues the batch,
 * resolves its offsets (so kafkajs's next fetch continues after it) and returns as soon
 * as no batch of an *earlier* fetch is still queued: the fetch of the next response
 * overlaps `poll()` handing out this one, and at most two responses (`maxBytes` each) per
 * broker are queued. The wait *is* the backpressure. While it waits it heartbeats every
 * `heartbeatIntervalMs`, so the member stays in the group however long the pipeline holds
 * back. A batch dropped before it was fully handed out (pause, or taken by a paused
 * partition) seeks kafkajs back to the first message not handed out, so it is fetched
 * again from there: nothing is skipped (a batch fetched before such a seek is recognised
 * by `isStale()` and not queued, and `poll()` never hands out an offset below the
 * partition's position). The queue, its backpressure and the hand-out are in
 * `_batch_queue.ts`; what kafkajs errors mean (rebalance, passing failure) is in `errors.ts`.
 *
 * ## Contiguity (issue 13)
 *
 * What `poll()` hands out of a partition is contiguous: every assignment seeks kafkajs,
 * for every assigned partition, to where Sluice continues (the committed offset of a new
 * partition, our position for a kept one) and drops what was queued before; kafkajs's
 * pending seeks are cleared whenever it (re)joins (`kafkajs_patch.ts`: kafkajs 2.2.4 kept
 * them across generations). As a defence in depth, a batch that kafkajs fetched from
 * beyond the partition's position is never handed out: kafkajs is sought back to the
 * position and fetches again (`stats.gapsRefetched`). A gap is let through only when
 * kafkajs fetched from the position or before it (transaction markers, aborted or
 * compacted records consumers never see), or when fetching again from the position
 * starts at the same offset (records deleted by retention; `stats.gapsAccepted`).
 * kafkajs never commits (`autoCommit: false`, and `commitOffsetsIfNecessary` is never
 * called), so resolved offsets are only its fetch positions; commits are
 * `consumer.commitOffsets` with the offsets the processor staged.
 *
 * ## Rebalances (kafkajs 2.2.4 has no revoke callback)
 *
 * kafkajs uses the eager protocol: on a rebalance every member gives up all partitions
 * and rejoins. It learns of a rebalance from a heartbeat answered REBALANCE_IN_PROGRESS
 * (or ILLEGAL_GENERATION / NOT_COORDINATOR), then (runner.js `scheduleFetchManager`)
 * emits `REBALANCING` and calls `joinAndSync()` at once. Between the heartbeat error and
 * our JoinGroup the group is PreparingRebalance and still accepts commits with the
 * current generation, which is when `onRevoke` must close, join and commit. The sequence:
 *
 * 1. Detection. Whoever sees the error first (our handler's heartbeat, or kafkajs's own
 *    heartbeat after an idle fetch, reported through `REBALANCING`) marks the revoke
 *    pending and wakes `poll()`, which runs `onRevoke` for all assigned partitions.
 * 2. Holding the rejoin. kafkajs cannot rejoin while one of our `eachBatch` handlers is
 *    running (the fetch manager waits for all of them). A handler that learns of the
 *    rebalance, or runs while a revoke is pending, waits for the revoke to complete before
 *    it returns (it rethrows the rebalance error, which makes kafkajs rejoin at once). When
 *    kafkajs found the rebalance itself (no handler running), our `REBALANCING` listener
 *    throws while the revoke is unfinished: the event is emitted synchronously inside
 *    kafkajs's retry callback, so the throw makes kafkajs retry later instead of joining
 *    now (one retry of its `retry` policy per throw); the retry heartbeats, fails again,
 *    and joins once the revoke is done. The broker waits up to `rebalanceTimeoutMs` for us.
 * 3. Commits inside `onRevoke` use the current generation and are accepted (the group is
 *    PreparingRebalance). Partitions are then forgotten and queued batches released
 *    without resolving their offsets.
 * 4. `GROUP_JOIN` carries the new assignment; the next `poll()` calls `onAssign` with each
 *    partition's committed offset (or `initialOffset`) before handing out any message.
 *    If kafkajs rejoined without a detected rebalance (metadata change, restart after a
 *    crash, `UNKNOWN_MEMBER_ID`), partitions we lost are revoked first (without a commit)
 *    and partitions we kept continue at our position. Either way kafkajs is sought for
 *    every assigned partition (see Contiguity).
 * 5. A processor whose pipeline holds back does not poll until it pauses; it asks
 *    `rebalancePending()` and polls at once when a revoke is waiting, so the coordinator
 *    does not give its partitions to another member while it still processes them.
 *
 * If kafkajs crashes and restarts (its retries exhausted, e.g. a long broker outage), it
 * left the group: our partitions are revoked without committing (another member, or we
 * after rejoining, resume from the last commit — duplicates, never loss).
 *
 * @module
 */
import type { Admin, Consumer as KafkajsConsumer, Kafka } from "kafkajs";
import type { AssignmentCallbacks, Consumer } from "../abstract.ts";
import { GroupEvents } from "../_group_events.ts";
import { type BrokerValue, type Committable, Partition, Topic } from "../../types.ts";
import { ClosedError, ConfigurationError, ConsumerError, UnknownTopicError } from "../../errors.ts";
import {
  type KafkaConsumerOptions,
  resolveConsumerOptions,
  type ResolvedConsumerOptions,
} from "./config.ts";
import "./kafkajs_patch.ts";
import { ConnectionWatch } from "./security.ts";
import type { KafkaPayload } from "./payload.ts";
import { connect, createKafka, describeError, unknownTopicError } from "./_client.ts";
import { KafkajsLog } from "./log.ts";
import { BatchQueue, type RevokeState } from "./_batch_queue.ts";
import { type Deferred, deferred } from "../_deferred.ts";
import { checkAssigned, checkOpen, checkSeekOffsets } from "../_assignment.ts";
import { errorType, isTransientKafkaError, MEMBERSHIP_TYPES, RevokeInProgress } from "./errors.ts";

function commitKey(topic: string, partition: number, offset: string): string {
  return `${topic}\u0000${partition}\u0000${offset}`;
}

/** A high watermark older than this is refreshed through the admin client on demand. */
const END_OFFSET_MAX_AGE_MS = 1000;
/**
 * The same while every assigned partition is paused (fully backpressured): a refresh is a
 * few requests and wake-ups, the main cost of a paused consumer after its own timers.
 */
const END_OFFSET_PAUSED_MAX_AGE_MS = 10_000;

/**
 * Statistics of a {@link KafkaConsumer}, for tests and diagnostics.
 *
 * @example Reading a consumer's counters (nothing connects before the first poll)
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { KafkaConsumer, type KafkaConsumerStats } from "@sluice/sluice/kafka";
 *
 * const consumer = new KafkaConsumer({ brokers: "127.0.0.1:9092", group: "g" });
 * const stats: KafkaConsumerStats = consumer.stats; // live: read it again later
 * const troubled = stats.crashes + stats.commitsFailed + stats.gapsAccepted > 0;
 * assertEquals([stats.joins, troubled], [0, false]);
 * ```
 */
export interface KafkaConsumerStats {
  /** Group generations joined (GROUP_JOIN events). */
  joins: number;
  /** Rebalances detected (revokes run because the group rebalanced). */
  rebalances: number;
  /** Times the rejoin was held back because `onRevoke` had not finished. */
  rejoinsHeld: number;
  /** Commits not sent because the partitions had been lost with the membership (warned). */
  commitsSkipped: number;
  /** kafkajs crashes (it restarts itself when the error is retriable). */
  crashes: number;
  /**
   * Commits that failed for a passing reason (broker unreachable or restarting, request
   * timed out): nothing was committed; the processor sends the offsets again.
   */
  commitsFailed: number;
  /**
   * Batches kafkajs fetched from beyond a partition's position (a gap): not handed out;
   * kafkajs was sought back to the position and fetched again (warned).
   */
  gapsRefetched: number;
  /**
   * Gaps accepted after the re-fetch from the position started at the same offset again:
   * the records in between no longer exist (retention deleted them) (warned).
   */
  gapsAccepted: number;
  /**
   * Errors kafkajs logged that are expected while it retries (rebalances, a coordinator
   * moving, a broker restarting): reported as rate-limited warnings, not errors.
   */
  kafkajsTransientErrors: number;
}

/**
 * A Kafka consumer-group member on kafkajs, implementing Sluice's {@link Consumer}.
 *
 * It connects on the first `poll()` (failing with a clear {@link ConsumerError} after
 * `connectTimeoutMs` when the brokers cannot be reached, or an {@link UnknownTopicError}
 * for a topic that does not exist), never auto-commits, keeps its group membership alive
 * while the pipeline is backpressured, and runs `onRevoke` (where the processor closes,
 * joins and commits its pipeline) before it gives partitions back to the group.
 * Needs `--allow-net` and `--allow-env` (kafkajs reads a few variables when imported).
 *
 * @example A stream processor on the consumer (needs a broker)
 * ```ts ignore
 * import { CommitOffsets, RunTask, StreamProcessor } from "@sluice/sluice";
 * import { KafkaConsumer, type KafkaPayload } from "@sluice/sluice/kafka";
 *
 * const consumer = new KafkaConsumer({ brokers: "127.0.0.1:9092", group: "my-group" });
 * const processor = new StreamProcessor<KafkaPayload>({
 *   consumer,
 *   topics: ["events"],
 *   factory: {
 *     createWithPartitions: (commit) =>
 *       new RunTask((m) => m.payload.value?.length ?? 0, new CommitOffsets(commit)),
 *   },
 * });
 * await processor.run(); // until SIGINT/SIGTERM
 * ```
 */
export class KafkaConsumer implements Consumer<KafkaPayload> {
  /** Counters; see {@link KafkaConsumerStats}. */
  readonly stats: KafkaConsumerStats = {
    joins: 0,
    rebalances: 0,
    rejoinsHeld: 0,
    commitsSkipped: 0,
    crashes: 0,
    commitsFailed: 0,
    gapsRefetched: 0,
    gapsAccepted: 0,
    kafkajsTransientErrors: 0,
  };
  /** kafkajs's open sockets, closed at teardown if kafkajs left any open. */
  readonly #sockets = new Set<{ destroy(): void }>();
  readonly #log = new KafkajsLog(() => this.stats.kafkajsTransientErrors++);
  /** Commit failures and rejections in a row (see `#warnCommitFailure`). */
  #commitFailures = 0;
  #failingSince = 0;
  #failureWarnedAt = 0;
  /** kafkajs stopped its group (a crash, until it rejoins). */
  #kafkajsStopped = false;
  /** Per commit in flight, its `commitKey`s not yet confirmed by kafkajs's COMMIT_OFFSETS. */
  readonly #unconfirmed = new Set<Set<string>>();

  readonly #o: ResolvedConsumerOptions;
  #kafka: Kafka | undefined;
  #consumer: KafkajsConsumer | undefined;
  #admin: Admin | undefined;
  #started: Promise<void> | undefined;
  #fatal: Error | undefined;
  #closed = false;
  #closing = false;
  #topics: Topic[] = [];
  #callbacks: AssignmentCallbacks = {};
  #subscribed = false;
  #unsubscribing = false;
  #memberId = "";

  #generation = 0;
  #pendingAssignment: Set<Partition> | undefined;
  #revokeState: RevokeState = "none";
  #revokeDone: Deferred = deferred();
  #rejoinedDuringRevoke = false;
  /** Partitions lost with the membership (kafkajs crashed): never committed. */
  #lost = new Set<Partition>();

  readonly #assigned = new Set<Partition>();
  readonly #positions = new Map<Partition, number>();
  readonly #paused = new Set<Partition>();
  #staged = new Map<Partition, number>();
  readonly #highWatermarks = new Map<Partition, number>();
  /** When each high watermark was last updated (performance.now()). */
  readonly #highWatermarkAt = new Map<Partition, number>();
  /** Topics whose end offsets are being refreshed through the admin client. */
  readonly #refreshing = new Set<Topic>();
  #wake: Deferred | undefined;
  readonly #events = new GroupEvents();
  #offsetLookupFailures = 0;
  /** The batches kafkajs handed to `eachBatch`, waiting for `poll()`. */
  readonly #batches: BatchQueue;

  /** Validates `options` (throws {@link ConfigurationError}); connects on the first `poll()`. */
  constructor(options: KafkaConsumerOptions) {
    this.#o = resolveConsumerOptions(options);
    this.#batches = new BatchQueue({
      o: this.#o,
      stats: this.stats,
      assigned: this.#assigned,
      paused: this.#paused,
      positions: this.#positions,
      highWatermarks: this.#highWatermarks,
      highWatermarkAt: this.#highWatermarkAt,
      generation: () => this.#generation,
      revokeState: () => this.#revokeState,
      revokeDone: () => this.#revokeDone,
      pendingAssignment: () => this.#pendingAssignment,
      closing: () => this.#closing,
      rebalanceDetected: () => this.#rebalanceDetected(),
      wakeUp: () => this.#wakeUp(),
      seek: (p, offset) => this.#seekKafkajs(p, offset),
    });
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#closed;
  }

  /** This member's id in its group (empty until it joined). */
  get memberId(): string {
    return this.#memberId;
  }

  /** The consumer group id. */
  get group(): string {
    return this.#o.group;
  }

  /** The client id (`clientId` option). */
  get clientId(): string {
    return this.#o.clientId;
  }

  /** The messaging system in metric attributes. */
  readonly messagingSystem = "kafka";

  /** Partitions currently assigned (as seen by the processor). */
  get assignment(): Partition[] {
    return [...this.#assigned];
  }

  subscribe(topics: readonly (Topic | string)[], callbacks: AssignmentCallbacks = {}): void {
    this.#checkOpen();
    if (this.#subscribed || this.#started) {
      throw new ConsumerError(
        "KafkaConsumer is already subscribed; create another consumer for another subscription",
      );
    }
    if (!Array.isArray(topics) || topics.length === 0) {
      throw new ConfigurationError("subscribe needs at least one topic");
    }
    this.#topics = topics.map((t) => typeof t === "string" ? Topic.of(t) : t);
    this.#callbacks = callbacks;
    this.#subscribed = true;
  }

  unsubscribe(): void {
    this.#checkOpen();
    if (!this.#subscribed) return;
    this.#unsubscribing = true;
    this.#wakeUp();
  }

  async poll(timeoutMs = 0): Promise<BrokerValue<KafkaPayload>[]> {
    this.#checkOpen();
    if (!this.#subscribed) {
      if (this.#started === undefined) {
        throw new ConsumerError("poll() before subscribe(): call subscribe(topics) first");
      }
      // Unsubscribed: nothing more will come.
      if (timeoutMs > 0) await new Promise((r) => setTimeout(r, timeoutMs));
      return [];
    }
    await (this.#started ??= this.#start());
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (this.#fatal) throw this.#fatal;
      await this.#handleGroupChanges();
      const out = this.#batches.take();
      if (out.length > 0) return out;
      const left = deadline - performance.now();
      if (left <= 0) return out;
      this.#wake ??= deferred();
      let id: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#wake.promise,
        new Promise<void>((r) => id = setTimeout(r, left)),
      ]);
      clearTimeout(id);
    }
  }

  pause(partitions: readonly Partition[]): void {
    this.#checkOpen();
    this.#checkAssigned(partitions, "pause");
    for (const p of partitions) this.#paused.add(p);
    this.#kafkajsCall(() => this.#consumer?.pause(byTopic(partitions)));
    // Give queued batches of paused partitions back to kafkajs (re-fetched on resume), so
    // the other partitions of their broker are fetched meanwhile.
    this.#batches.drop((b) => this.#paused.has(b.partition), true);
  }

  resume(partitions: readonly Partition[]): void {
    this.#checkOpen();
    this.#checkAssigned(partitions, "resume");
    for (const p of partitions) this.#paused.delete(p);
    this.#kafkajsCall(() => this.#consumer?.resume(byTopic(partitions)));
  }

  paused(): Partition[] {
    return [...this.#paused];
  }

  /**
   * True when the group is rebalancing and the next `poll()` runs `onRevoke`. A processor
   * whose pipeline holds back polls at once when it sees this, instead of after
   * `pauseAfterMs`: the coordinator waits for this member before it hands its partitions
   * to another member.
   */
  rebalancePending(): boolean {
    return this.#revokeState === "pending";
  }

  /**
   * Calls `listener` when a rebalance becomes pending, a new assignment arrives, kafkajs
   * crashes, or the consumer closes: a paused processor polls at once (see `Consumer`).
   */
  onGroupEvent(listener: () => void): () => void {
    return this.#events.listen(listener);
  }

  tell(): Map<Partition, number> {
    return new Map(this.#positions);
  }

  seek(offsets: ReadonlyMap<Partition, number>): void {
    this.#checkOpen();
    this.#checkAssigned([...offsets.keys()], "seek");
    checkSeekOffsets(offsets);
    for (const [p, o] of offsets) {
      this.#seekKafkajs(p, o);
      this.#positions.set(p, o);
    }
    // kafkajs was sought above: no rewind.
    this.#batches.drop((b) => offsets.has(b.partition), false);
  }

  stageOffsets(offsets: Committable): void {
    for (const [p, o] of offsets) this.#staged.set(p, o);
  }

  async commitOffsets(): Promise<Map<Partition, number>> {
    this.#checkOpen();
    const staged = this.#staged;
    this.#staged = new Map();
    const list: { topic: string; partition: number; offset: string }[] = [];
    const committed = new Map<Partition, number>();
    for (const [p, o] of staged) {
      if (!this.#assigned.has(p)) {
        throw new ConsumerError(
          `cannot commit ${p}@${o}: partition is not assigned to ${
            this.#memberId || "this member"
          } ` +
            `(it was revoked or never assigned); commit inside onRevoke before releasing it`,
        );
      }
      if (!Number.isInteger(o) || o < 0) {
        throw new ConsumerError(`cannot commit ${p}@${o}: invalid offset`);
      }
      if (this.#pendingAssignment !== undefined && !this.#pendingAssignment.has(p)) {
        // kafkajs rejoined and the partition went elsewhere (the next poll revokes it): a
        // commit in the new generation would be accepted and could move its new owner's
        // committed offset.
        this.stats.commitsSkipped++;
        continue;
      }
      if (this.#lost.has(p)) {
        this.stats.commitsSkipped++;
        console.warn(
          `sluice kafka: not committing ${p}@${o}: the partition went to the group without a ` +
            "revoke (kafkajs restarted or rejoined); its next owner resumes from the last commit",
        );
        continue;
      }
      list.push({ topic: p.topic.name, partition: p.index, offset: String(o) });
      committed.set(p, o);
    }
    if (list.length === 0) return committed;
    const described = () => list.map((c) => `${c.topic}/${c.partition}@${c.offset}`).join(", ");
    if (this.#kafkajsStopped) {
      // kafkajs is between a crash and its restart: it would reject the commit.
      return this.#commitFailed(described(), "kafkajs is restarting after a crash");
    }
    // kafkajs resolves a commit it did not send when its consumer is not running (it
    // crashed and is restarting, e.g. during a broker outage): only the COMMIT_OFFSETS event
    // it emits after the broker accepted a commit confirms one.
    const unconfirmed = new Set(list.map((c) => commitKey(c.topic, c.partition, c.offset)));
    this.#unconfirmed.add(unconfirmed);
    try {
      await this.#consumer!.commitOffsets(list);
    } catch (e) {
      if (isTransientKafkaError(e)) return this.#commitFailed(described(), describeError(e));
      const type = errorType(e);
      if (type !== undefined && MEMBERSHIP_TYPES.has(type)) {
        // The group moved on without us (session expired, or a rebalance completed): the
        // offsets were not committed; whoever owns the partitions now re-reads that work.
        this.stats.commitsSkipped++;
        this.#warnCommitFailure(() =>
          `commit of ${described()} rejected (${type}): the group is rebalancing; the ` +
          "offsets are committed again if the partitions stay with this member, else their " +
          "next owner re-reads that work"
        );
        return new Map();
      }
      throw new ConsumerError(
        `commit to Kafka failed for group "${this.#o.group}": ${describeError(e)}; the ` +
          "offsets were not committed (the work is re-read after a restart, nothing is lost)",
        { cause: e },
      );
    } finally {
      this.#unconfirmed.delete(unconfirmed);
    }
    if (unconfirmed.size > 0) {
      return this.#commitFailed(
        described(),
        "kafkajs did not send it: its consumer is restarting after a crash",
      );
    }
    if (this.#commitFailures > 0) {
      console.warn(
        `sluice kafka: commits succeed again (after ${this.#commitFailures} failed or rejected)`,
      );
      this.#commitFailures = 0;
    }
    return committed;
  }

  /**
   * A commit failed for a passing reason (the broker is unreachable or restarting): nothing
   * was committed, which is not fatal; the processor keeps the offsets and sends them with
   * its next commit.
   */
  #commitFailed(what: string, why: string): Map<Partition, number> {
    this.stats.commitsFailed++;
    this.#warnCommitFailure(() =>
      `commit of ${what} failed (${why}); the processor keeps the offsets for its next commit`
    );
    return new Map();
  }

  /** Warns at the first commit failure of a run, then once a minute while they go on. */
  #warnCommitFailure(message: () => string): void {
    const now = performance.now();
    if (this.#commitFailures++ === 0) {
      this.#failingSince = this.#failureWarnedAt = now;
      console.warn(`sluice kafka: ${message()}`);
    } else if (now - this.#failureWarnedAt >= 60_000) {
      this.#failureWarnedAt = now;
      console.warn(
        `sluice kafka: commits still fail after ${
          Math.round((now - this.#failingSince) / 1000)
        } s (${this.#commitFailures} attempts); the last: ${message()}`,
      );
    }
  }

  #onCommitted(payload: {
    topics: { topic: string; partitions: { partition: number; offset: string }[] }[];
  }): void {
    for (const pending of this.#unconfirmed) {
      for (const t of payload.topics) {
        for (const p of t.partitions) pending.delete(commitKey(t.topic, p.partition, p.offset));
      }
    }
  }

  /**
   * The end offset (high watermark) of `partition`, for lag metrics: from the last fetched
   * batch, without a request. When no batch updated it for a second (the partition is
   * paused, or idle), a refresh is started in the background (one admin request per topic
   * at a time) and the next call sees it, so lag keeps growing while fetching is paused.
   * While every assigned partition is paused (the processor is fully backpressured), every
   * 10 s instead: waking for it would cost more than the rest of the paused consumer.
   */
  endOffset(partition: Partition): number | undefined {
    const at = this.#highWatermarkAt.get(partition);
    const maxAge = this.#paused.size > 0 && this.#paused.size >= this.#assigned.size
      ? END_OFFSET_PAUSED_MAX_AGE_MS
      : END_OFFSET_MAX_AGE_MS;
    if (
      (at === undefined || performance.now() - at >= maxAge) && this.#assigned.has(partition)
    ) {
      this.#refreshEndOffsets(partition.topic);
    }
    return this.#highWatermarks.get(partition);
  }

  /**
   * The end offsets (high watermarks) of `partitions`, asked of the broker now (one admin
   * request per topic). Used by `StreamProcessor.run({ untilCaughtUp: true })`.
   */
  async endOffsets(partitions: readonly Partition[]): Promise<Map<Partition, number>> {
    const admin = this.#admin;
    if (admin === undefined || this.#closed || this.#closing) {
      throw new ClosedError(
        `consumer ${this.memberId} is not connected (closed, or not started yet: poll first)`,
      );
    }
    const out = new Map<Partition, number>();
    const topics = [...new Set(partitions.map((p) => p.topic))];
    const now = performance.now();
    for (const topic of topics) {
      let offsets;
      try {
        offsets = await admin.fetchTopicOffsets(topic.name);
      } catch (e) {
        throw new ConsumerError(
          `could not read the end offsets of "${topic.name}": ${describeError(e)}`,
          { cause: e },
        );
      }
      for (const o of offsets) {
        const p = Partition.of(topic, o.partition);
        const high = Number(o.high);
        if (high >= (this.#highWatermarks.get(p) ?? -1)) this.#highWatermarks.set(p, high);
        this.#highWatermarkAt.set(p, now);
        if (partitions.includes(p)) out.set(p, high);
      }
    }
    return out;
  }

  #refreshEndOffsets(topic: Topic): void {
    const admin = this.#admin;
    if (admin === undefined || this.#closing || this.#refreshing.has(topic)) return;
    this.#refreshing.add(topic);
    admin.fetchTopicOffsets(topic.name).then(
      (offsets) => {
        const now = performance.now();
        for (const o of offsets) {
          const p = Partition.of(topic, o.partition);
          const high = Number(o.high);
          if (high >= (this.#highWatermarks.get(p) ?? -1)) this.#highWatermarks.set(p, high);
          this.#highWatermarkAt.set(p, now);
        }
      },
      () => {/* lag stays at the last known value; retried on a later call */},
    ).finally(() => this.#refreshing.delete(topic));
  }

  async close(): Promise<void> {
    if (this.#closed || this.#closing) return;
    this.#closing = true;
    try {
      if (this.#started !== undefined) {
        let startError: unknown;
        await this.#started.catch((e) => startError = e);
        if (startError === undefined && this.#fatal === undefined && this.#assigned.size > 0) {
          // Contract: the revoke callback runs (and commits) before the group is left.
          await this.#revoke([...this.#assigned], false);
        }
      }
    } finally {
      this.#closed = true;
      this.#events.emit();
      await this.#teardown();
    }
  }

  // ---- start-up ------------------------------------------------------------------------

  async #start(): Promise<void> {
    const o = this.#o;
    const watch = new ConnectionWatch(o.ssl !== false);
    const kafka = this.#kafka = createKafka(o, {
      watch,
      log: this.#log,
      sockets: this.#sockets,
      recordRuns: true,
    });
    const consumer = this.#consumer = kafka.consumer({
      ...o.kafkajs.consumer,
      groupId: o.group,
      sessionTimeout: o.sessionTimeoutMs,
      rebalanceTimeout: o.rebalanceTimeoutMs,
      heartbeatInterval: o.heartbeatIntervalMs,
      maxBytesPerPartition: o.maxBytesPerPartition,
      minBytes: o.minBytes,
      maxBytes: o.maxBytes,
      maxWaitTimeInMs: o.maxWaitTimeMs,
      allowAutoTopicCreation: false,
      retry: { ...o.retry },
    });
    const admin = this.#admin = kafka.admin({
      retry: { ...o.retry, retries: Math.min(o.retry.retries, 3) },
    });
    const brokers = o.brokers.join(",");
    try {
      // Typed errors: KafkaAuthenticationError, KafkaTlsError, or a ConsumerError.
      await connect([consumer.connect(), admin.connect()], watch, o, ConsumerError);
    } catch (e) {
      await this.#teardown();
      throw e;
    }
    try {
      const existing = new Set(await admin.listTopics());
      const missing = this.#topics.filter((t) => !existing.has(t.name));
      if (missing.length > 0) {
        throw unknownTopicError(missing.map((t) => t.name), brokers);
      }
      consumer.on(consumer.events.GROUP_JOIN, (e) => this.#onGroupJoin(e.payload));
      consumer.on(consumer.events.REBALANCING, () => this.#onRebalancing());
      consumer.on(consumer.events.CRASH, (e) => this.#onCrash(e.payload));
      // kafkajs stops its group (STOP) before it reports a crash and restarts as a new
      // member: commits in between would be rejected as "not initialized".
      consumer.on(consumer.events.STOP, () => this.#kafkajsStopped = true);
      consumer.on(consumer.events.COMMIT_OFFSETS, (e) => this.#onCommitted(e.payload));
      await consumer.subscribe({
        topics: this.#topics.map((t) => t.name),
        fromBeginning: o.initialOffset === "earliest",
      });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        partitionsConsumedConcurrently: o.partitionsConsumedConcurrently,
        eachBatch: (payload) => this.#batches.eachBatch(payload),
      });
    } catch (e) {
      await this.#teardown();
      if (e instanceof UnknownTopicError) throw e;
      throw new ConsumerError(
        `could not join group "${o.group}" on ${brokers}: ${describeError(e)}`,
        { cause: e },
      );
    }
  }

  async #teardown(): Promise<void> {
    const consumer = this.#consumer;
    const admin = this.#admin;
    this.#consumer = undefined;
    this.#admin = undefined;
    this.#batches.releaseAll();
    // Unblock handlers holding kafkajs's rejoin: it is stopping.
    if (this.#revokeState === "pending" || this.#revokeState === "running") {
      this.#revokeState = "done";
    }
    this.#revokeDone.resolve();
    await Promise.allSettled([consumer?.disconnect(), admin?.disconnect()]);
    // kafkajs can leave a connection open after a broker restart (it reconnected a broker
    // its cluster no longer lists): close them, or the process would not end.
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
  }

  // ---- kafkajs events ------------------------------------------------------------------

  #onGroupJoin(payload: { memberId: string; memberAssignment: Record<string, number[]> }): void {
    this.stats.joins++;
    this.#kafkajsStopped = false;
    this.#generation++;
    this.#memberId = payload.memberId;
    const parts = new Set<Partition>();
    for (const [topic, indexes] of Object.entries(payload.memberAssignment)) {
      for (const i of indexes) parts.add(Partition.of(topic, i));
    }
    this.#pendingAssignment = parts;
    if (this.#revokeState === "done") this.#revokeState = "none";
    else if (this.#revokeState !== "none") this.#rejoinedDuringRevoke = true;
    this.#wakeUp();
    this.#events.emit();
  }

  /**
   * kafkajs found a rebalance (its heartbeat failed) and is about to rejoin. Emitted
   * synchronously from inside its retry callback: throwing here makes it retry later.
   */
  #onRebalancing(): void {
    this.#rebalanceDetected();
    if (this.#revokeState === "pending" || this.#revokeState === "running") {
      this.stats.rejoinsHeld++;
      throw new RevokeInProgress();
    }
  }

  #onCrash(payload: { error: Error; restart: boolean }): void {
    this.stats.crashes++;
    if (!payload.restart) {
      this.#fatal = new ConsumerError(
        `the Kafka consumer of group "${this.#o.group}" stopped: ${describeError(payload.error)}`,
        { cause: payload.error },
      );
    } else {
      // kafkajs left the group and restarts as a new member: what we held is lost.
      for (const p of this.#assigned) this.#lost.add(p);
      this.#rebalanceDetected();
    }
    this.#batches.releaseAll();
    this.#wakeUp();
    this.#events.emit();
  }

  #rebalanceDetected(): void {
    this.#pendingAssignment = undefined; // stale: it predates the rebalance
    if (this.#revokeState !== "none") return;
    if (this.#assigned.size === 0) return;
    this.stats.rebalances++;
    this.#revokeState = "pending";
    this.#revokeDone = deferred();
    this.#rejoinedDuringRevoke = false;
    this.#wakeUp();
    this.#events.emit();
  }

  #wakeUp(): void {
    const w = this.#wake;
    if (w !== undefined) {
      this.#wake = undefined;
      w.resolve();
    }
  }

  /** The revoke state, read through a call (it changes across awaits). */
  #state(): RevokeState {
    return this.#revokeState;
  }

  // ---- assignment changes, run from poll() ------------------------------------------------

  async #handleGroupChanges(): Promise<void> {
    if (this.#unsubscribing) {
      this.#unsubscribing = false;
      this.#subscribed = false;
      if (this.#assigned.size > 0) await this.#revoke([...this.#assigned], false);
      await this.#consumer?.stop();
      return;
    }
    if (this.#revokeState === "pending") {
      this.#revokeState = "running";
      try {
        await this.#revoke([...this.#assigned], true);
      } finally {
        this.#revokeState = this.#rejoinedDuringRevoke ? "none" : "done";
        this.#revokeDone.resolve();
      }
    }
    const next = this.#pendingAssignment;
    if (next === undefined || this.#state() === "pending") return;
    this.#pendingAssignment = undefined;
    const lost = [...this.#assigned].filter((p) => !next.has(p));
    // kafkajs rejoined without a revoke (its member was fenced, or it rejoined on its own):
    // these partitions are already another member's in the new generation, where Kafka
    // would accept our commit and could move the new owner's offset. Not committed.
    for (const p of lost) this.#lost.add(p);
    if (lost.length > 0) await this.#revoke(lost, true);
    // Every assignment seeks kafkajs to where Sluice continues, and drops what was queued
    // before: kafkajs would otherwise fetch a kept partition from the last commit, and
    // either kind from a seek it kept from an earlier generation (kafkajs 2.2.4 keeps
    // pending seeks across rejoins: `ConsumerGroup.seekOffset`).
    for (const p of this.#assigned) {
      const o = this.#positions.get(p);
      if (o !== undefined) this.#batches.resync(p, o);
    }
    const added = [...next].filter((p) => !this.#assigned.has(p));
    if (added.length === 0) return;
    let starts: Map<Partition, number>;
    try {
      starts = await this.#startOffsets(added);
      this.#offsetLookupFailures = 0;
    } catch (e) {
      // The broker may be restarting: keep the new partitions pending (nothing of them is
      // handed out meanwhile) and try again on the next poll, a few times.
      if (++this.#offsetLookupFailures >= 5) {
        throw new ConsumerError(
          `could not read the committed offsets of group "${this.#o.group}" for ${
            added.map(String).join(", ")
          }: ${describeError(e)}`,
          { cause: e },
        );
      }
      if (this.#pendingAssignment === undefined) {
        this.#pendingAssignment = new Set([...this.#assigned, ...added]);
      }
      return;
    }
    for (const [p, o] of starts) {
      this.#assigned.add(p);
      this.#positions.set(p, o);
      this.#batches.forget(p);
      this.#batches.resync(p, o);
    }
    await this.#callbacks.onAssign?.(starts);
  }

  /** Runs onRevoke for `parts`, then forgets them (commits inside onRevoke still work). */
  async #revoke(parts: Partition[], resumeInKafkajs: boolean): Promise<void> {
    try {
      if (parts.length > 0) await this.#callbacks.onRevoke?.(parts);
    } finally {
      for (const p of parts) {
        this.#assigned.delete(p);
        this.#positions.delete(p);
        this.#batches.forget(p);
        this.#staged.delete(p);
        this.#lost.delete(p);
        if (this.#paused.delete(p) && resumeInKafkajs) {
          this.#kafkajsCall(() =>
            this.#consumer?.resume([{ topic: p.topic.name, partitions: [p.index] }])
          );
        }
      }
      this.#batches.drop((b) => parts.includes(b.partition), false);
    }
  }

  /** Committed offset of each partition, or the initial offset when none was committed. */
  async #startOffsets(parts: Partition[]): Promise<Map<Partition, number>> {
    const admin = this.#admin!;
    const topics = [...new Set(parts.map((p) => p.topic.name))];
    const out = new Map<Partition, number>();
    const committed = await admin.fetchOffsets({ groupId: this.#o.group, topics });
    const missing = new Set<string>();
    for (const t of committed) {
      for (const { partition, offset } of t.partitions) {
        const p = Partition.of(t.topic, partition);
        if (!parts.includes(p)) continue;
        const n = Number(offset);
        if (n >= 0) out.set(p, n);
        else missing.add(t.topic);
      }
    }
    for (const topic of missing) {
      const ends = await admin.fetchTopicOffsets(topic);
      for (const e of ends) {
        const p = Partition.of(topic, e.partition);
        if (!parts.includes(p) || out.has(p)) continue;
        out.set(p, Number(this.#o.initialOffset === "earliest" ? e.low : e.high));
      }
    }
    for (const p of parts) if (!out.has(p)) out.set(p, 0);
    return out;
  }

  /**
   * pause/resume/seek on the kafkajs consumer. They throw only while kafkajs restarts
   * after a crash; its new group member starts unpaused from the committed offsets, and
   * our own paused set still keeps paused partitions from being handed out.
   */
  #kafkajsCall(f: () => void): void {
    try {
      f();
    } catch { /* see above */ }
  }

  /** Makes kafkajs fetch `p` from `offset` next (see `#kafkajsCall`). */
  #seekKafkajs(p: Partition, offset: number): void {
    this.#kafkajsCall(() =>
      this.#consumer?.seek({ topic: p.topic.name, partition: p.index, offset: String(offset) })
    );
  }

  #checkOpen(): void {
    checkOpen(this.#closed, `KafkaConsumer of group "${this.#o.group}"`);
  }

  #checkAssigned(partitions: readonly Partition[], what: string): void {
    checkAssigned(partitions, this.#assigned, what, this.#memberId);
  }
}

function byTopic(partitions: readonly Partition[]): { topic: string; partitions: number[] }[] {
  const m = new Map<string, number[]>();
  for (const p of partitions) {
    const l = m.get(p.topic.name);
    if (l) l.push(p.index);
    else m.set(p.topic.name, [p.index]);
  }
  return [...m].map(([topic, partitions]) => ({ topic, partitions }));
}
