/**
 * When the processor commits: at most every N milliseconds, every N messages, or both.
 *
 * @module
 */
import type { Committable, Partition } from "../types.ts";
import { ConfigurationError } from "../errors.ts";

/**
 * Options of a {@link CommitPolicy}; at least one must be set.
 *
 * @example Commit every 5 seconds or every 10 000 messages
 * ```ts
 * import { CommitPolicy, type CommitPolicyOptions } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const options: CommitPolicyOptions = { intervalMs: 5_000, messages: 10_000 };
 * const policy = new CommitPolicy(options);
 * assertEquals(policy.messages, 10_000);
 * ```
 */
export interface CommitPolicyOptions {
  /** Commit when at least this many milliseconds passed since the last commit. */
  intervalMs?: number;
  /** Commit when at least this many messages were processed since the last commit. */
  messages?: number;
}

/**
 * Throttles commits: a commit happens when either rule holds (time since the last commit,
 * or messages processed since it). Offsets are always committed on revoke and shutdown.
 *
 * @example Commit by time and count, or after every message
 * ```ts
 * import { CommitPolicy } from "@sluice/sluice";
 * const everyFiveSecondsOr10k = new CommitPolicy({ intervalMs: 5_000, messages: 10_000 });
 * const eachMessage = CommitPolicy.IMMEDIATE;
 * ```
 */
export class CommitPolicy {
  /** At most once per second (the default). */
  static readonly ONCE_PER_SECOND: CommitPolicy = new CommitPolicy({ intervalMs: 1000 });
  /** After every processed message (expensive on Kafka; handy in tests). */
  static readonly IMMEDIATE: CommitPolicy = new CommitPolicy({ messages: 1 });

  /** Minimum milliseconds between commits, if set. */
  readonly intervalMs: number | undefined;
  /** Messages between commits, if set. */
  readonly messages: number | undefined;

  /** Creates a policy; throws {@link ConfigurationError} when neither rule is valid. */
  constructor(options: CommitPolicyOptions) {
    const { intervalMs, messages } = options ?? {};
    if (intervalMs === undefined && messages === undefined) {
      throw new ConfigurationError(
        "CommitPolicy needs intervalMs and/or messages, e.g. new CommitPolicy({ intervalMs: 1000 })",
      );
    }
    if (intervalMs !== undefined && !(Number.isFinite(intervalMs) && intervalMs >= 0)) {
      throw new ConfigurationError(
        `CommitPolicy intervalMs must be a finite number >= 0, got ${intervalMs}`,
      );
    }
    if (messages !== undefined && !(Number.isInteger(messages) && messages > 0)) {
      throw new ConfigurationError(
        `CommitPolicy messages must be a positive integer, got ${messages}`,
      );
    }
    this.intervalMs = intervalMs;
    this.messages = messages;
  }

  /** A fresh state machine for one processor. */
  createState(now: number): CommitPolicyState {
    return new CommitPolicyState(this, now);
  }
}

/**
 * The running state of a {@link CommitPolicy}: what was committed, and when. The processor
 * makes one with {@link CommitPolicy.createState}; a custom driver loop may too.
 *
 * @example Ask whether newly committable offsets are due
 * ```ts
 * import { CommitPolicy, Partition } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const p = Partition.of("t", 0);
 * const state = new CommitPolicy({ intervalMs: 1_000, messages: 2 }).createState(0);
 * state.start(new Map([[p, 0]])); // the partition was assigned at offset 0
 * assertEquals(state.shouldCommit(10, new Map([[p, 1]])), false); // 1 message, 10 ms
 * assertEquals(state.shouldCommit(20, new Map([[p, 2]])), true); // 2 messages
 * state.didCommit(20, new Map([[p, 2]]));
 * ```
 */
export class CommitPolicyState {
  readonly #policy: CommitPolicy;
  #lastCommit: number;
  readonly #committed = new Map<Partition, number>();

  /** Starts the interval at `now`. */
  constructor(policy: CommitPolicy, now: number) {
    this.#policy = policy;
    this.#lastCommit = now;
  }

  /** True when `offsets` (newly committable) should trigger a commit at `now`. */
  shouldCommit(now: number, offsets: Committable): boolean {
    const { intervalMs, messages } = this.#policy;
    if (intervalMs !== undefined && now - this.#lastCommit >= intervalMs) return true;
    if (messages === undefined) return false;
    let count = 0;
    for (const [p, o] of offsets) {
      let prev = this.#committed.get(p);
      if (prev === undefined) {
        prev = o - 1;
        this.#committed.set(p, prev);
      }
      count += o - prev;
    }
    return count >= messages;
  }

  /** Records a commit of `offsets` at `now`. */
  didCommit(now: number, offsets: Committable): void {
    this.#lastCommit = now;
    for (const [p, o] of offsets) this.#committed.set(p, o);
  }

  /** Records where newly assigned partitions start, so the first messages count fully. */
  start(offsets: ReadonlyMap<Partition, number>): void {
    for (const [p, o] of offsets) if (!this.#committed.has(p)) this.#committed.set(p, o);
  }

  /** Forgets `partitions` (after a revoke). */
  forget(partitions: Iterable<Partition>): void {
    for (const p of partitions) this.#committed.delete(p);
  }
}
