/**
 * Sending the processor's commits (private to `processing/`): what the {@link CommitLedger}
 * says may be committed goes to the consumer, one commit in flight at a time; what the
 * consumer did not commit goes back to the ledger for the next commit; a commit that fails
 * outright is kept, for the loop to throw.
 *
 * @module
 */
import type { Consumer } from "../backends/abstract.ts";
import type { Clock } from "../clock.ts";
import type { ConsumerMeter } from "../metrics/consumer.ts";
import type { CommitPolicyState } from "./commit_policy.ts";
import type { CommitLedger } from "./offsets.ts";

/** What a {@link Committer} counts, in the processor's stats. */
export interface CommitCounters {
  /** Commits sent to the consumer. */
  commits: number;
  /** Commits that left offsets uncommitted (kept and sent again with the next commit). */
  commitsIncomplete: number;
}

/** What a {@link Committer} works with. */
export interface CommitterParts {
  /** The consumer to stage and commit on. */
  consumer: Consumer<unknown>;
  /** Clock for the policy and the commit latency. */
  clock: Clock;
  /** What may be committed. */
  ledger: CommitLedger;
  /** Told of every commit sent. */
  policy: CommitPolicyState;
  /** Counters to update. */
  stats: CommitCounters;
  /** Commit latency and failures, when metered. */
  meter: ConsumerMeter | undefined;
}

/** Commits the ledger's committable offsets, one commit in flight at a time. */
export class Committer {
  readonly #parts: CommitterParts;
  #inFlight: Promise<void> | undefined;
  #again = false;
  #error: unknown;
  #stopped = false;

  /** Creates the committer. */
  constructor(parts: CommitterParts) {
    this.#parts = parts;
  }

  /** The first commit that failed outright (the loop throws it), if any. */
  get error(): unknown {
    return this.#error;
  }

  /** Nothing more is committed (a second shutdown signal: stop at once). */
  stop(): void {
    this.#stopped = true;
  }

  /** Sends what may be committed now; with a commit in flight, once it is done. */
  start(): void {
    const { consumer, clock, ledger, policy, stats, meter } = this.#parts;
    if (!ledger.hasDirty || this.#stopped) return;
    if (this.#inFlight !== undefined) {
      this.#again = true;
      return;
    }
    const offsets = ledger.take();
    if (offsets.size === 0) return;
    policy.didCommit(clock.now(), offsets);
    consumer.stageOffsets(offsets);
    stats.commits++;
    const startedAt = meter === undefined ? 0 : clock.now();
    this.#inFlight = consumer.commitOffsets().then(
      (committed) => {
        this.#inFlight = undefined;
        if (ledger.keepUncommitted(offsets, committed)) {
          stats.commitsIncomplete++;
          if (committed.size > 0) meter?.committed(committed, startedAt);
          meter?.commitFailed(startedAt);
        } else meter?.committed(offsets, startedAt);
        if (this.#again) {
          this.#again = false;
          this.start();
        }
      },
      (e) => {
        this.#inFlight = undefined;
        meter?.commitFailed(startedAt);
        this.#error ??= e;
      },
    );
  }

  /** Commits everything committable now and waits for it (revoke, shutdown); throws a failure. */
  async flush(): Promise<void> {
    while (this.#inFlight !== undefined) await this.#inFlight;
    this.start();
    while (this.#inFlight !== undefined) await this.#inFlight;
    if (this.#error !== undefined) throw this.#error;
  }
}
