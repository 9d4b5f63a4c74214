/**
 * The processor's dead-letter machinery (private to `processing/`): the bounded buffer of
 * raw polled messages an invalid one is looked up in, the per-partition limit counts, and
 * the deliveries awaiting the broker's confirmation. The public side (policy, headers,
 * errors) is in `dlq.ts`.
 *
 * @module
 */
import { type Clock, sleepUnless } from "../clock.ts";
import type { BrokerValue, InvalidMessage, Partition } from "../types.ts";
import {
  DLQ_HEADERS,
  type DlqCounters,
  DlqDeliveryError,
  type DlqInfo,
  DlqLimitExceeded,
  DlqMessageMissing,
  type DlqPolicy,
  MAX_REASON_LENGTH,
} from "./dlq.ts";

/**
 * A run of one partition's messages: `values[start..end)`. `values` is the polled array
 * itself when it holds one partition only (never mutated), else a copy of the run.
 */
interface Segment<T> {
  readonly values: readonly BrokerValue<T>[];
  start: number;
  end: number;
}

interface PartitionState<T> {
  /** Buffered runs, by increasing offset, from `segHead`. */
  segments: Segment<T>[];
  segHead: number;
  /** Messages buffered. */
  size: number;
  /** Offsets already taken for dead-lettering (still inside a segment). */
  taken: Set<number>;
  /** Highest offset evicted, for error messages. */
  evictedUpTo: number;
  /** First offset seen since assignment (for the ratio). */
  first: number | undefined;
  invalid: number;
  consecutive: number;
  lastInvalid: number;
}

/** What the DLQ tells the processor. */
export interface DlqHooks {
  /** Clock for delivery timeouts. */
  clock: Clock;
  /** Counters to update. */
  stats: DlqCounters;
  /**
   * The invalid message at `partition`/`offset` is resolved (dead-lettered, or dropped and
   * counted): commits may move past it.
   */
  resolved(partition: Partition, offset: number): void;
}

/**
 * @internal The processor's dead-letter machinery: the bounded raw-message buffer, the
 * limit state and the in-flight deliveries. Not part of the public API.
 */
export class DlqRunner<T> {
  readonly #policy: DlqPolicy<T, unknown>;
  readonly #hooks: DlqHooks;
  readonly #parts = new Map<Partition, PartitionState<T>>();
  readonly #pending = new Set<Promise<void>>();
  #failure: unknown;

  /** Creates the runner. */
  constructor(policy: DlqPolicy<T, unknown>, hooks: DlqHooks) {
    this.#policy = policy;
    this.#hooks = hooks;
  }

  /** Deliveries awaiting confirmation. */
  get inFlight(): number {
    return this.#pending.size;
  }

  /** Raw messages buffered for `partition`. */
  buffered(partition: Partition): number {
    return this.#parts.get(partition)?.size ?? 0;
  }

  /** Buffers freshly polled raw messages (by reference, or a copy of each partition's run). */
  record(batch: readonly BrokerValue<T>[]): void {
    const max = this.#policy.maxBufferedPerPartition;
    const n = batch.length;
    let i = 0;
    while (i < n) {
      const p = batch[i].partition;
      let j = i + 1;
      while (j < n && batch[j].partition === p) j++;
      const s = this.#state(p);
      s.first ??= batch[i].offset;
      if (s.size > 0) this.#rewind(s, batch[i].offset);
      // A batch of one partition is kept by reference; runs of a mixed batch are copied,
      // so a buffered run never keeps other partitions' messages alive.
      s.segments.push(
        i === 0 && j === n
          ? { values: batch, start: 0, end: n }
          : { values: batch.slice(i, j), start: 0, end: j - i },
      );
      s.size += j - i;
      if (s.size > max) this.#evict(s, s.size - max);
      i = j;
    }
  }

  /** Drops buffered messages below the committable offsets (they are processed). */
  prune(offsets: ReadonlyMap<Partition, number>): void {
    for (const [p, next] of offsets) {
      const s = this.#parts.get(p);
      if (s === undefined || s.size === 0) continue;
      const segs = s.segments;
      let h = s.segHead;
      while (h < segs.length) {
        const seg = segs[h];
        const v = seg.values;
        if (v[seg.end - 1].offset < next) {
          s.size -= seg.end - seg.start;
          h++;
          continue;
        }
        if (v[seg.start].offset < next) {
          // First index with offset >= next.
          let lo = seg.start;
          let hi = seg.end - 1;
          while (lo < hi) {
            const mid = (lo + hi) >>> 1;
            if (v[mid].offset < next) lo = mid + 1;
            else hi = mid;
          }
          s.size -= lo - seg.start;
          seg.start = lo;
        }
        break;
      }
      this.#setHead(s, h);
      if (s.taken.size > 0) { for (const o of s.taken) if (o < next) s.taken.delete(o); }
    }
  }

  /** Forgets revoked partitions (buffers and limit counts). */
  forget(partitions: Iterable<Partition>): void {
    for (const p of partitions) this.#parts.delete(p);
  }

  /** Throws the first delivery failure, if any (policy "stop"). */
  throwIfFailed(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }

  /**
   * Handles an invalid message whose commit block the processor already set. Throws when
   * the consumer must stop (limit exceeded, raw message missing); otherwise starts the
   * delivery, and returns a promise when too many deliveries are in flight (wait for it).
   */
  handle(error: InvalidMessage): void | Promise<void> {
    const { partition, offset } = error;
    const s = this.#state(partition);
    this.#checkLimits(s, error);
    const raw = this.#take(s, offset);
    if (raw === undefined) {
      const missing = new DlqMessageMissing(partition, offset, offset <= s.evictedUpTo, error);
      if (this.#policy.onDeliveryFailure === "stop") throw missing;
      this.#hooks.stats.dlqDropped++;
      this.#hooks.resolved(partition, offset);
      return;
    }
    const headers: Record<string, string> = {
      [DLQ_HEADERS.topic]: partition.topic.name,
      [DLQ_HEADERS.partition]: String(partition.index),
      [DLQ_HEADERS.offset]: String(offset),
      [DLQ_HEADERS.timestamp]: String(raw.timestamp),
      [DLQ_HEADERS.reason]: error.reason.length > MAX_REASON_LENGTH
        ? error.reason.slice(0, MAX_REASON_LENGTH - 1) + "…"
        : error.reason,
      [DLQ_HEADERS.step]: error.step ?? "unknown",
    };
    const info: DlqInfo = {
      partition,
      offset,
      timestamp: raw.timestamp,
      reason: error.reason,
      step: error.step ?? "unknown",
      headers,
    };
    const delivery = this.#deliver(raw, info);
    this.#pending.add(delivery);
    delivery.then(() => this.#pending.delete(delivery));
    if (this.#pending.size >= this.#policy.maxInFlight) return this.#waitForRoom();
  }

  /** Waits for every delivery in flight; throws the first failure (policy "stop"). */
  async flush(): Promise<void> {
    while (this.#pending.size > 0) await Promise.all([...this.#pending]);
    this.throwIfFailed();
  }

  async #waitForRoom(): Promise<void> {
    while (this.#pending.size >= this.#policy.maxInFlight) await Promise.race(this.#pending);
  }

  /** Produces one message; never rejects (outcomes go through hooks and `#failure`). */
  async #deliver(raw: BrokerValue<T>, info: DlqInfo): Promise<void> {
    const policy = this.#policy;
    try {
      const payload = await policy.build(raw, info); // may be async (a schema lookup, say)
      let outcome: { refused: boolean; error?: unknown } | undefined;
      const settled = policy.producer.produce(policy.topic, payload).then(
        () => void (outcome = { refused: false }),
        (error) => void (outcome = { refused: true, error }),
      );
      await sleepUnless(this.#hooks.clock, policy.deliveryTimeoutMs, settled);
      if (outcome === undefined) {
        throw new Error(`delivery not confirmed within ${policy.deliveryTimeoutMs} ms`);
      }
      if (outcome.refused) throw outcome.error;
    } catch (e) {
      if (policy.onDeliveryFailure === "drop-and-count") {
        this.#hooks.stats.dlqDropped++;
        this.#resolved(info);
      } else {
        this.#failure ??= new DlqDeliveryError(info.partition, info.offset, policy.topic, e);
      }
      return;
    }
    this.#hooks.stats.deadLettered++;
    this.#resolved(info);
  }

  /** Tells the processor, from a delivery callback: a failure there stops it (never lost). */
  #resolved(info: DlqInfo): void {
    try {
      this.#hooks.resolved(info.partition, info.offset);
    } catch (e) {
      this.#failure ??= e;
    }
  }

  #checkLimits(s: PartitionState<T>, error: InvalidMessage): void {
    const { offset, partition } = error;
    s.consecutive = offset === s.lastInvalid + 1 ? s.consecutive + 1 : 1;
    if (offset > s.lastInvalid) s.lastInvalid = offset;
    s.invalid++;
    const limit = this.#policy.limit;
    const maxRun = limit.maxConsecutiveInvalid;
    if (maxRun !== undefined && s.consecutive > maxRun) {
      throw new DlqLimitExceeded(
        "maxConsecutiveInvalid",
        partition,
        offset,
        `${s.consecutive} invalid messages in a row (offsets ${offset - s.consecutive + 1}..` +
          `${offset}), more than maxConsecutiveInvalid ${maxRun}`,
        error,
      );
    }
    const maxRatio = limit.maxInvalidRatio;
    if (maxRatio !== undefined) {
      const seen = s.first === undefined ? s.invalid : Math.max(s.invalid, offset - s.first + 1);
      if (seen >= limit.minMessagesForRatio && s.invalid / seen > maxRatio) {
        throw new DlqLimitExceeded(
          "maxInvalidRatio",
          partition,
          offset,
          `${s.invalid} invalid out of ${seen} messages (${
            (100 * s.invalid / seen).toFixed(1)
          }%) since the partition was assigned, more than maxInvalidRatio ${maxRatio}`,
          error,
        );
      }
    }
  }

  /**
   * Drops buffered entries at or after `from` (the consumer re-delivered from there, e.g.
   * after a rejoin), so offsets stay increasing and the fresh copies are found.
   */
  #rewind(s: PartitionState<T>, from: number): void {
    if (s.taken.size > 0) { for (const o of s.taken) if (o >= from) s.taken.delete(o); }
    const segs = s.segments;
    while (segs.length > s.segHead) {
      const last = segs[segs.length - 1];
      if (last.values[last.end - 1].offset < from) return;
      let cut = last.end;
      while (cut > last.start && last.values[cut - 1].offset >= from) cut--;
      s.size -= last.end - cut;
      if (cut > last.start) {
        last.end = cut;
        return;
      }
      segs.pop();
    }
    this.#setHead(s, s.segHead);
  }

  /** Evicts the `count` oldest buffered messages of a full partition buffer. */
  #evict(s: PartitionState<T>, count: number): void {
    this.#hooks.stats.dlqBufferEvicted += count;
    s.size -= count;
    let h = s.segHead;
    while (count > 0) {
      const seg = s.segments[h];
      const drop = Math.min(count, seg.end - seg.start);
      seg.start += drop;
      count -= drop;
      s.evictedUpTo = Math.max(s.evictedUpTo, seg.values[seg.start - 1].offset);
      if (seg.start === seg.end) h++;
    }
    this.#setHead(s, h);
  }

  #setHead(s: PartitionState<T>, h: number): void {
    if (h >= s.segments.length) {
      s.segments = [];
      s.segHead = 0;
    } else if (h > 64 && h * 2 > s.segments.length) {
      s.segments = s.segments.slice(h);
      s.segHead = 0;
    } else s.segHead = h;
  }

  /** Takes the buffered raw message at `offset`, if present and not taken before. */
  #take(s: PartitionState<T>, offset: number): BrokerValue<T> | undefined {
    if (s.taken.has(offset)) return undefined;
    const segs = s.segments;
    // The last segment starting at or before `offset`.
    let lo = s.segHead;
    let hi = segs.length - 1;
    let found = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const seg = segs[mid];
      if (seg.start < seg.end && seg.values[seg.start].offset <= offset) {
        found = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (found < 0) return undefined;
    const seg = segs[found];
    const v = seg.values;
    lo = seg.start;
    hi = seg.end - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const o = v[mid].offset;
      if (o === offset) {
        s.taken.add(offset);
        return v[mid];
      }
      if (o < offset) lo = mid + 1;
      else hi = mid - 1;
    }
    return undefined;
  }

  #state(p: Partition): PartitionState<T> {
    let s = this.#parts.get(p);
    if (s === undefined) {
      s = {
        segments: [],
        segHead: 0,
        size: 0,
        taken: new Set(),
        evictedUpTo: -1,
        first: undefined,
        invalid: 0,
        consecutive: 0,
        lastInvalid: -2,
      };
      this.#parts.set(p, s);
    }
    return s;
  }
}
