/**
 * The eachBatch → poll hand-off of `KafkaConsumer` (private to the kafkajs backend):
 * kafkajs pushes each partition's batch into {@link BatchQueue.eachBatch}, which queues
 * it and holds kafkajs's next fetch back while older batches are still queued (the
 * backpressure); `poll()` takes contiguous messages out with {@link BatchQueue.take}.
 * How and why is told at the top of `consumer.ts`.
 *
 * @module
 */
import type { EachBatchPayload, KafkaMessage } from "kafkajs";
import { BrokerValue, Partition } from "../../types.ts";
import type { ResolvedConsumerOptions } from "./config.ts";
import { errorType, isRebalanceError, MEMBERSHIP_TYPES, rebalanceSignal } from "./errors.ts";
import type { KafkaPayload } from "./payload.ts";
import { type Deferred, deferred } from "../_deferred.ts";
import { RecordRun } from "./_fetch_decoder.ts";

/** A partition batch kafkajs handed to `eachBatch`, waiting to be taken by `poll()`. */
export interface PendingBatch {
  readonly partition: Partition;
  /**
   * kafkajs's records, or (Sluice's decoder, `_fetch_decoder.ts`) one run per record batch
   * whose records are decoded when taken.
   */
  readonly messages: readonly KafkaMessage[] | readonly RecordRun[];
  /** The offset kafkajs fetched this batch from (its position for the partition then). */
  readonly fetchedOffset: number;
  /**
   * The last offset of the fetch for this partition, records consumers never see
   * (transaction markers, aborted records) after the last message included.
   */
  readonly lastOffset: number;
  /** Index of the next message (or run) to hand out. */
  next: number;
  /** Taken from at least once (runs: the first take skips what is before the position). */
  started?: boolean;
  readonly generation: number;
  /** The fetch round it came in (see `#eachBatch`). */
  readonly round: number;
  /** Fully handed out, or dropped. */
  settled: boolean;
}

/** not started | revoke pending (poll will run it) | running | done, waiting for GROUP_JOIN. */
export type RevokeState = "none" | "pending" | "running" | "done";

/**
 * What the hand-off reads of its consumer's group state, and asks of it. The consumer
 * owns this state (its assignment, positions, generation and revoke); the queue owns the
 * queued batches and the gap bookkeeping.
 */
export interface BatchQueueHost {
  /** The options the hand-off reads. */
  readonly o: Pick<ResolvedConsumerOptions, "maxPollMessages" | "heartbeatIntervalMs">;
  /** The consumer's counters the hand-off updates. */
  readonly stats: { gapsRefetched: number; gapsAccepted: number };
  /** Partitions assigned (as seen by the processor). */
  readonly assigned: ReadonlySet<Partition>;
  /** Partitions paused. */
  readonly paused: ReadonlySet<Partition>;
  /** Per partition, the next offset to hand out (`take` advances it). */
  readonly positions: Map<Partition, number>;
  /** Per partition, the high watermark of its last batch. */
  readonly highWatermarks: Map<Partition, number>;
  /** When each high watermark was last updated (performance.now()). */
  readonly highWatermarkAt: Map<Partition, number>;
  /** The group generation (GROUP_JOIN events seen). */
  generation(): number;
  /** Where the revoke of a rebalance is. */
  revokeState(): RevokeState;
  /** Resolved when the current revoke is done. */
  revokeDone(): Deferred;
  /** The assignment kafkajs joined with, while `poll()` has not taken it over yet. */
  pendingAssignment(): ReadonlySet<Partition> | undefined;
  /** True while the consumer closes. */
  closing(): boolean;
  /** A heartbeat found the group rebalancing (or this member gone from it). */
  rebalanceDetected(): void;
  /** Wakes a `poll()` waiting for messages. */
  wakeUp(): void;
  /** Makes kafkajs fetch `p` from `offset` next. */
  seek(p: Partition, offset: number): void;
}

/** The queue of batches kafkajs handed to `eachBatch`, taken out by `poll()`. */
export class BatchQueue {
  readonly #c: BatchQueueHost;
  /** Per partition, the last gap re-fetched: the position and the offset kafkajs fetched from. */
  readonly #gapSeen = new Map<Partition, { position: number; fetchedOffset: number }>();
  /**
   * Per partition, where the fetch of the last batch fully handed out ended, when that is
   * past the position (it ended with records consumers never see): kafkajs continues there.
   */
  readonly #fetchedTo = new Map<Partition, { position: number; next: number }>();
  #gapWarnedAt = -Infinity;
  /**
   * A malformed record met by a take that had already collected records: it is thrown by
   * the next take, so that what was collected (and its positions) is handed out first.
   */
  #failure: Error | undefined;
  #gapsUnwarned = 0;
  #queue: PendingBatch[] = [];
  /** Resolved (and cleared) when a queued batch settles: wakes handlers waiting for room. */
  #queueChanged: Deferred | undefined;
  /** `#eachBatch` calls running, and the fetch round they belong to. */
  #activeHandlers = 0;
  #round = 0;

  /** A queue for the consumer `host`. */
  constructor(host: BatchQueueHost) {
    this.#c = host;
  }

  /**
   * Forgets the gap bookkeeping of `p` (it was revoked, or is newly assigned). Its queued
   * batches are dropped by {@link BatchQueue.drop}.
   */
  forget(p: Partition): void {
    this.#fetchedTo.delete(p);
    this.#gapSeen.delete(p);
  }

  async eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, heartbeat, isRunning, isStale, resolveOffset } = payload;
    const p = Partition.of(batch.topic, batch.partition);
    this.#c.highWatermarks.set(p, Number(batch.highWatermark));
    this.#c.highWatermarkAt.set(p, performance.now());
    const generation = this.#c.generation();
    if (this.#c.revokeState() === "done") {
      // Revoked, waiting for kafkajs to rejoin: hand nothing out, make it rejoin now.
      throw rebalanceSignal();
    }
    const messages = batch.messages;
    if (messages.length === 0) return;
    if (this.#c.paused.has(p) || isStale() || !isRunning() || this.#c.closing()) {
      // Fetched before a pause or seek took effect (or kafkajs is stopping): not queued and
      // not resolved, so kafkajs fetches it again from its (sought) position.
      return;
    }
    // kafkajs calls the handlers of one fetch together (synchronously, up to
    // partitionsConsumedConcurrently) and fetches that broker again once all returned, so
    // a handler called while none runs starts a new round.
    if (this.#activeHandlers++ === 0) this.#round++;
    const round = this.#round;
    try {
      // kafkajs's Batch records the offset it fetched from (not in its type declarations).
      const fetched = (batch as { fetchedOffset?: string }).fetchedOffset;
      const entry: PendingBatch = {
        partition: p,
        messages,
        fetchedOffset: Number(fetched ?? messages[0].offset),
        lastOffset: Number(batch.lastOffset()),
        next: 0,
        generation,
        round,
        settled: false,
      };
      this.#queue.push(entry);
      // Resolve now, so that kafkajs fetches the next batch while poll() hands this one
      // out. kafkajs never commits resolved offsets (autoCommit off); a batch dropped before
      // it was fully handed out rewinds kafkajs to the first message not handed out
      // (`drop`), and every assignment seeks kafkajs to Sluice's start position.
      resolveOffset(messages[messages.length - 1].offset);
      this.#c.wakeUp();
      await this.#waitForRoom(entry, payload, generation);
    } finally {
      this.#activeHandlers--;
    }
    if (this.#c.revokeState() === "pending" || this.#c.revokeState() === "running") {
      // Hold kafkajs's rejoin until onRevoke has committed.
      await this.#c.revokeDone().promise;
    }
    if (this.#state() === "done") throw rebalanceSignal();
    // Heartbeat here rather than leave it to kafkajs after we return: a rebalance found
    // now is found where the rejoin can still be held.
    try {
      await this.#heartbeat(heartbeat, generation);
    } catch (e) {
      if (
        isRebalanceError(e) &&
        (this.#c.revokeState() === "pending" || this.#c.revokeState() === "running")
      ) {
        await this.#c.revokeDone().promise;
      }
      throw e;
    }
  }

  /**
   * The backpressure: a handler returns (letting kafkajs fetch again) once no batch of an
   * earlier round is still queued. So the fetch of round N+1 overlaps the hand-out of round
   * N, and at most two rounds (two fetch responses, `maxBytes` each) are queued. While it
   * waits it heartbeats every `heartbeatIntervalMs`, so the member stays in the group
   * however long the pipeline holds back. Throws a rebalance found by its heartbeat, after
   * holding the rejoin until a pending revoke is done.
   */
  async #waitForRoom(
    entry: PendingBatch,
    payload: EachBatchPayload,
    generation: number,
  ): Promise<void> {
    const { heartbeat, isRunning, isStale } = payload;
    let rebalance: unknown;
    while (!entry.settled && this.#olderQueued(entry.round)) {
      this.#queueChanged ??= deferred();
      let id: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.#queueChanged.promise,
        new Promise<void>((r) => id = setTimeout(r, this.#c.o.heartbeatIntervalMs)),
      ]);
      clearTimeout(id);
      if (entry.settled || !this.#olderQueued(entry.round)) break;
      if (!isRunning() || isStale() || this.#c.closing()) {
        this.drop((b) => b === entry, false);
        break;
      }
      try {
        await this.#heartbeat(heartbeat, generation);
      } catch (e) {
        if (!isRebalanceError(e)) {
          this.drop((b) => b === entry, false);
          throw e;
        }
        rebalance = e;
        // A pending revoke releases this batch when it completes; without one there is
        // nothing to hold for (the rejoin resets kafkajs's positions).
        if (this.#c.revokeState() !== "pending" && this.#c.revokeState() !== "running") {
          this.drop((b) => b === entry, false);
        }
      }
    }
    if (rebalance === undefined) return;
    if (this.#c.revokeState() === "pending" || this.#c.revokeState() === "running") {
      await this.#c.revokeDone().promise;
    }
    throw rebalance;
  }

  /** True while a batch of a round before `round` is still queued. */
  #olderQueued(round: number): boolean {
    for (const b of this.#queue) {
      if (b.round >= round) return false;
      if (!b.settled) return true;
    }
    return false;
  }

  async #heartbeat(heartbeat: () => Promise<void>, generation: number): Promise<void> {
    try {
      await heartbeat();
    } catch (e) {
      if (generation === this.#c.generation()) {
        const type = errorType(e);
        if (type !== undefined && MEMBERSHIP_TYPES.has(type)) this.#c.rebalanceDetected();
      }
      throw e;
    }
  }

  /** The revoke state, read through a call (it changes across awaits). */
  #state(): RevokeState {
    return this.#c.revokeState();
  }

  #settle(b: PendingBatch): void {
    if (b.settled) return;
    b.settled = true;
    const w = this.#queueChanged;
    if (w !== undefined) {
      this.#queueChanged = undefined;
      w.resolve();
    }
  }

  /**
   * Drops the queued batches matching `which`. Their offsets were resolved in kafkajs when
   * they were queued, so with `rewind` kafkajs is sought back to the first message not
   * handed out of each such partition still assigned (it fetches from there again).
   */
  drop(which: (b: PendingBatch) => boolean, rewind: boolean): void {
    let rewound: Set<Partition> | undefined;
    for (const b of this.#queue) {
      if (b.settled || !which(b)) continue;
      this.#settle(b);
      if (rewind) (rewound ??= new Set()).add(b.partition);
    }
    this.#compactQueue();
    if (rewound === undefined) return;
    for (const p of rewound) {
      const o = this.#c.positions.get(p);
      if (o === undefined || !this.#c.assigned.has(p)) continue;
      this.#c.seek(p, o);
    }
  }

  releaseAll(): void {
    for (const b of this.#queue) this.#settle(b);
    this.#queue = [];
  }

  #compactQueue(): void {
    if (this.#queue.some((b) => b.settled)) this.#queue = this.#queue.filter((b) => !b.settled);
  }

  /** Hands out queued messages of assigned, unpaused partitions, up to maxPollMessages. */
  take(): BrokerValue<KafkaPayload>[] {
    const failed = this.#failure;
    if (failed !== undefined) {
      this.#failure = undefined;
      throw failed;
    }
    const out: BrokerValue<KafkaPayload>[] = [];
    if (
      this.#queue.length === 0 || this.#c.revokeState() !== "none" || this.#c.pendingAssignment()
    ) {
      return out;
    }
    const limit = this.#c.o.maxPollMessages;
    for (const b of this.#queue) {
      if (out.length >= limit) break;
      if (b.settled) continue;
      const p = b.partition;
      if (b.generation !== this.#c.generation() || !this.#c.assigned.has(p)) {
        // An earlier generation (a rejoin seeks kept partitions to our positions) or a
        // partition no longer ours.
        this.#settle(b);
        continue;
      }
      if (this.#c.paused.has(p)) {
        this.drop((x) => x === b, true);
        continue;
      }
      const msgs = b.messages;
      if (msgs[0] instanceof RecordRun) {
        this.#takeRuns(b, msgs as readonly RecordRun[], out, limit);
        continue;
      }
      const records = msgs as readonly KafkaMessage[];
      let start = b.next;
      if (start === 0) {
        // Skip what was handed out already (a batch fetched before a rejoin's seek).
        const pos = this.#c.positions.get(p);
        if (pos !== undefined) {
          while (start < records.length && Number(records[start].offset) < pos) start++;
          if (
            start < records.length && Number(records[start].offset) > pos &&
            !this.#gapAllowed(b, pos)
          ) {
            // Never hand out (and so never commit across) a batch that skips records.
            this.#refetch(p, pos);
            continue;
          }
        }
      }
      const end = Math.min(records.length, start + limit - out.length);
      if (end > start) {
        // kafkajs gives offsets and timestamps as decimal strings. Offsets increase within
        // a batch, so when the last minus the first is the count minus one (no gaps from
        // compaction or transaction markers; the middle one is checked too) they are
        // consecutive and computed instead of parsed. Records of a batch often share a
        // timestamp: each distinct text is parsed once.
        const first = Number(records[start].offset);
        const last = Number(records[end - 1].offset);
        const mid = (start + end) >>> 1;
        const dense = last - first === end - 1 - start &&
          Number(records[mid].offset) === first + (mid - start);
        let tsText = "";
        let ts = 0;
        for (let i = start; i < end; i++) {
          const m = records[i];
          // Let kafkajs's record die young (what it carries now lives in the payload).
          (records as (KafkaMessage | undefined)[])[i] = undefined;
          if (m.timestamp !== tsText) {
            tsText = m.timestamp;
            ts = Number(tsText);
          }
          out.push(
            new BrokerValue<KafkaPayload>(
              { key: m.key, value: m.value, headers: m.headers ?? {}, timestamp: ts },
              p,
              dense ? first + (i - start) : Number(m.offset),
              ts,
            ),
          );
        }
        this.#c.positions.set(p, last + 1);
      }
      b.next = end;
      if (b.next >= records.length) this.#handedOut(b);
    }
    this.#compactQueue();
    const failure = this.#failure;
    if (failure !== undefined && out.length === 0) {
      this.#failure = undefined;
      throw failure;
    }
    return out;
  }

  /** Settles `b`, fully handed out, noting where its fetch ended (see `#fetchedTo`). */
  #handedOut(b: PendingBatch): void {
    this.#settle(b);
    const pos = this.#c.positions.get(b.partition);
    if (pos !== undefined && b.lastOffset >= pos) {
      this.#fetchedTo.set(b.partition, { position: pos, next: b.lastOffset + 1 });
    }
  }

  /**
   * `take()` for a batch of record runs: the records are decoded here, straight into
   * `BrokerValue`s, up to `limit` in all. `b.next` indexes the run being read; each run
   * keeps its own place. The same rules as for kafkajs's records: what is before the
   * partition's position is skipped (before the offset fetched from, when no position is
   * known: a compressed batch starts before it), and a batch that would skip records is
   * fetched again instead of handed out.
   */
  #takeRuns(
    b: PendingBatch,
    runs: readonly RecordRun[],
    out: BrokerValue<KafkaPayload>[],
    limit: number,
  ): void {
    const p = b.partition;
    let i = b.next;
    if (i === 0 && !b.started) {
      b.started = true;
      const pos = this.#c.positions.get(p);
      const from = pos ?? b.fetchedOffset;
      let first: number | undefined;
      try {
        while (i < runs.length) {
          runs[i].skipBelow(from, p);
          if (!runs[i].done) break;
          i++;
        }
        first = i < runs.length ? runs[i].peek(p) : undefined;
      } catch (e) {
        b.next = i;
        b.started = false; // the next take meets the bad record again
        this.#failure ??= e instanceof Error ? e : new Error(String(e));
        return;
      }
      if (pos !== undefined && first !== undefined && first > pos && !this.#gapAllowed(b, pos)) {
        this.#refetch(p, pos);
        return;
      }
    }
    let last = -1;
    while (i < runs.length && out.length < limit) {
      const run = runs[i];
      const before = out.length;
      try {
        const l = run.readInto(out, p, limit - out.length);
        if (l >= 0) last = l;
      } catch (e) {
        // A malformed record: what this take read up to it stays handed out (its position
        // advanced below); the error is thrown now if nothing was taken, else by the next
        // take. The batch stays queued at the bad record, so each later take fails again.
        if (out.length > before) last = out[out.length - 1].offset;
        this.#failure ??= e instanceof Error ? e : new Error(String(e));
        break;
      }
      if (run.done) i++;
    }
    if (last >= 0) this.#c.positions.set(p, last + 1);
    b.next = i;
    if (i >= runs.length) this.#handedOut(b);
  }

  /**
   * A batch whose first message is above the partition's position: is the gap real? When
   * kafkajs fetched from the position or before it, the broker returned everything there
   * is from there and the missing offsets are records consumers never see (transaction
   * markers, aborted or compacted records): allowed. When kafkajs fetched from beyond the
   * position (a stale seek, a reset), it is re-fetched from the position once; if the
   * re-fetch again starts at the same place, the records no longer exist (retention deleted
   * them, kafkajs reset an out-of-range offset): accepted, with a warning.
   */
  #gapAllowed(b: PendingBatch, position: number): boolean {
    if (b.fetchedOffset <= position) return true;
    const to = this.#fetchedTo.get(b.partition);
    if (to !== undefined && to.position === position && b.fetchedOffset <= to.next) return true;
    const seen = this.#gapSeen.get(b.partition);
    if (
      seen === undefined || seen.position !== position || seen.fetchedOffset !== b.fetchedOffset
    ) {
      this.#gapSeen.set(b.partition, { position, fetchedOffset: b.fetchedOffset });
      this.#c.stats.gapsRefetched++;
      this.#warnGap(() =>
        `${b.partition}: kafkajs fetched from offset ${b.fetchedOffset}, beyond the next ` +
        `offset to hand out (${position}); not handed out, fetching again from ${position}`
      );
      return false;
    }
    this.#gapSeen.delete(b.partition);
    this.#c.stats.gapsAccepted++;
    console.warn(
      `sluice kafka: ${b.partition}: offsets ${position}..${
        b.fetchedOffset - 1
      } cannot be fetched (fetching from ${position} again started at ${b.fetchedOffset}: ` +
        "deleted by retention, or out of range); continuing at " + b.fetchedOffset,
    );
    return true;
  }

  /** Warns about a re-fetched gap at most every 10 s, with the number left unwarned. */
  #warnGap(message: () => string): void {
    const now = performance.now();
    if (now - this.#gapWarnedAt < 10_000) {
      this.#gapsUnwarned++;
      return;
    }
    const more = this.#gapsUnwarned > 0 ? ` (and ${this.#gapsUnwarned} more since the last)` : "";
    this.#gapWarnedAt = now;
    this.#gapsUnwarned = 0;
    console.warn(`sluice kafka: gap detected: ${message()}${more}`);
  }

  /**
   * Makes kafkajs continue `p` where Sluice does (`offset`) after an assignment. Batches of
   * this generation already queued that start exactly there, each where the previous
   * ended, are kept and kafkajs is sought to the end of the last one; otherwise they are
   * dropped and kafkajs is sought to `offset`. The seek also replaces any seek kafkajs
   * still holds for the partition.
   */
  resync(p: Partition, offset: number): void {
    let next = offset;
    for (const b of this.#queue) {
      if (b.settled || b.partition !== p) continue;
      if (b.generation !== this.#c.generation() || b.fetchedOffset !== next) {
        this.#refetch(p, offset);
        return;
      }
      next = b.lastOffset + 1;
    }
    this.#c.seek(p, next);
  }

  /** Drops the queued batches of `p` and makes kafkajs fetch it again from `offset`. */
  #refetch(p: Partition, offset: number): void {
    this.drop((b) => b.partition === p, false);
    this.#c.seek(p, offset);
  }
}
