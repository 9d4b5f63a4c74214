/**
 * The stream processor: polls the consumer, submits to the pipeline, waits (never spins)
 * under backpressure, pauses the consumer when pressure lasts, commits by policy, and
 * closes, joins and commits the pipeline on every revoke and on shutdown.
 *
 * @module
 */
import type { Consumer } from "../backends/abstract.ts";
import { type Clock, macrotask, systemClock } from "../clock.ts";
import {
  Backpressure,
  PAUSED_BACKOFF_MS,
  PAUSED_BACKOFF_MS_WITH_EVENTS,
  RoomWait,
} from "./_backpressure.ts";
import { CatchUpTargets } from "./_caught_up.ts";
import { CarriedMessages } from "./_carried.ts";
import { Committer } from "./_committer.ts";
import { CommitPolicy, type CommitPolicyState } from "./commit_policy.ts";
import { type ConsumerMeter, Phase, PHASE_DESCRIPTIONS } from "../metrics/consumer.ts";
import type { MetricSeries, SluiceMetrics } from "../metrics/otel.ts";
import { meterProcessor, reportStuck, startStatusLog } from "./_metering.ts";
import { type ProcessorStatus, renderStatusLine, StatusWindow } from "../metrics/status.ts";
import { withStepMetrics } from "../metrics/step.ts";
import { StuckDetector } from "../metrics/stuck.ts";
import { handleShutdownSignals, handlesSignals } from "./_signals.ts";
import { DlqPolicy } from "./dlq.ts";
import { DlqRunner } from "./_dlq_runner.ts";
import { CommitLedger } from "./offsets.ts";
import type {
  Commit,
  ProcessingStrategy,
  ProcessingStrategyFactory,
} from "../strategies/abstract.ts";
import { type BrokerValue, InvalidMessage, type Partition } from "../types.ts";
import { ClosedError, ConfigurationError, InvalidStateError, MessageRejected } from "../errors.ts";
import { requireNonNegative } from "../_validate.ts";
import {
  type ProcessorStats,
  requireProcessorParts,
  type RunOptions,
  type StreamProcessorOptions,
  zeroStats,
} from "./processor_options.ts";

export type {
  MeterProviderLike,
  ProcessorStats,
  RunOptions,
  StreamProcessorOptions,
} from "./processor_options.ts";

/**
 * `run()` was called on a processor that has already stopped (its consumer is closed).
 * Create a new consumer and processor to consume again.
 *
 * @example `run()` on a processor that already stopped
 * ```ts
 * import { CommitOffsets, ProcessorStoppedError, StreamProcessor } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 1);
 * const processor = new StreamProcessor<string>({
 *   consumer: broker.getConsumer("example"),
 *   topics: ["events"],
 *   factory: { createWithPartitions: (commit) => new CommitOffsets(commit) },
 *   handleSignals: false,
 * });
 * await processor.run({ untilCaughtUp: true }); // nothing to read: returns at once
 * try {
 *   await processor.run();
 * } catch (e) {
 *   if (e instanceof ProcessorStoppedError) console.log("already stopped");
 * }
 * ```
 */
export class ProcessorStoppedError extends ClosedError {}

/** First wait (ms) between checks whether revoked partitions' work is done. */
const DRAIN_MIN_BACKOFF_MS = 1;
/** Longest wait (ms) between checks whether revoked partitions' work is done. */
const DRAIN_MAX_BACKOFF_MS = 20;
/** Give timers, I/O and signals a turn at least this often (wall-clock ms) when busy. */
const YIELD_EVERY_MS = 20;

/**
 * Runs a pipeline over a consumer.
 *
 * @example Consume, process and commit
 * ```ts
 * import { CommitOffsets, RunTask, StreamProcessor } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 2);
 * for (let i = 0; i < 10; i++) broker.produce("events", `event ${i}`);
 *
 * const processor = new StreamProcessor({
 *   consumer: broker.getConsumer("example"),
 *   topics: ["events"],
 *   factory: {
 *     createWithPartitions: (commit) =>
 *       new RunTask((m) => m.payload.length, new CommitOffsets(commit)),
 *   },
 *   handleSignals: false,
 * });
 * const running = processor.run();
 * setTimeout(() => processor.signalShutdown(), 200);
 * await running;
 * ```
 */
export class StreamProcessor<T> {
  /** Counters; see {@link ProcessorStats}. */
  readonly stats: ProcessorStats = zeroStats();

  readonly #consumer: Consumer<T>;
  readonly #factory: ProcessingStrategyFactory<T>;
  readonly #clock: Clock;
  readonly #policy: CommitPolicyState;
  readonly #joinTimeoutMs: number;
  readonly #pollTimeoutMs: number;
  readonly #handleSignals: boolean;
  /** The clock is the system clock: its readings also serve as the loop's wall clock. */
  readonly #clockIsWall: boolean;

  #strategy: ProcessingStrategy<T> | undefined;
  /** Polled messages the pipeline has not accepted yet. */
  readonly #carried = new CarriedMessages<T>();
  /** The current backpressure episode, the pause, and the waits between retries. */
  readonly #backpressure: Backpressure;
  #shutdownRequested = false;
  #stopping = false;
  #running = false;
  /** `run()` has returned (or thrown): the consumer is closed. */
  #stopped = false;
  /** The pipeline `#closeStrategy` is joining, if any. */
  #joiningStrategy: ProcessingStrategy<T> | undefined;
  /** With `untilCaughtUp`: per partition, the end offset when first seen assigned. */
  #targets: CatchUpTargets | undefined;
  /** When the loop last yielded, by {@link StreamProcessor.#wallNow}. */
  #lastYield: number;
  /**
   * The metered clock reading taken as this iteration's poll returned, while `strategy.poll()`
   * runs right after it: commit checks made meanwhile reuse it instead of reading again.
   */
  #polledAt: number | undefined;
  /** Metrics on the MeterProvider (shared), if any, and this processor's share of them. */
  readonly #metrics: SluiceMetrics | undefined;
  /** The series this processor's steps count into (the provider's, or its own). */
  readonly #series: MetricSeries | undefined;
  readonly #meter: ConsumerMeter | undefined;
  readonly #window: StatusWindow;
  readonly #statusLogMs: number | undefined;
  /** When the current rebalance began: a revoke started, or no assignment yet. */
  #rebalancingSince: number | undefined;
  readonly #stuck: StuckDetector | undefined;
  /** What the loop is doing, for the stuck detector (and time accounting when metered). */
  #phase: Phase = Phase.Idle;

  /** Finished, staged and blocked offsets per partition: what may be committed. */
  readonly #ledger = new CommitLedger();
  /** Sends what the ledger says may be committed, one commit at a time. */
  readonly #committer: Committer;
  /**
   * Per partition of the current pipeline, the first offset it was not given at creation
   * (the consumer's position, or the first carried message): where its work began.
   */
  #pipelineStart = new Map<Partition, number>();
  /** True while `#closeStrategy` joins a pipeline (commits are deferred to its end). */
  #joining = false;
  /** Dead-letter machinery (raw-message buffer, limits, deliveries), when configured. */
  readonly #dlq: DlqRunner<T> | undefined;

  /** Creates the processor and subscribes the consumer. */
  constructor(options: StreamProcessorOptions<T>) {
    requireProcessorParts(options);
    this.#consumer = options.consumer;
    this.#factory = options.factory;
    this.#clock = options.clock ?? systemClock;
    this.#clockIsWall = this.#clock === systemClock;
    this.#lastYield = this.#wallNow();
    this.#policy = (options.commitPolicy ?? CommitPolicy.ONCE_PER_SECOND).createState(
      this.#clock.now(),
    );
    this.#joinTimeoutMs = requireNonNegative("joinTimeoutMs", options.joinTimeoutMs ?? 25_000);
    const pauseAfterMs = requireNonNegative("pauseAfterMs", options.pauseAfterMs ?? 1000);
    this.#pollTimeoutMs = requireNonNegative("pollTimeoutMs", options.pollTimeoutMs ?? 100);
    const maxBackoffMs = requireNonNegative("maxBackoffMs", options.maxBackoffMs ?? 100);
    this.#backpressure = new Backpressure(this.#consumer, this.#clock, this.stats, {
      pauseAfterMs,
      maxBackoffMs,
      pausedBackoffMs: requireNonNegative(
        "pausedBackoffMs",
        options.pausedBackoffMs ?? Math.max(
          typeof this.#consumer.onGroupEvent === "function"
            ? PAUSED_BACKOFF_MS_WITH_EVENTS
            : PAUSED_BACKOFF_MS,
          maxBackoffMs,
        ),
      ),
    });
    this.#handleSignals = handlesSignals(options.handleSignals);
    ({ metrics: this.#metrics, series: this.#series, meter: this.#meter } = meterProcessor(
      options,
      this.#consumer,
      this.#clock,
      this.stats,
      () => this.#backpressure.since,
    ));
    this.#committer = new Committer({
      consumer: this.#consumer,
      clock: this.#clock,
      ledger: this.#ledger,
      policy: this.#policy,
      stats: this.stats,
      meter: this.#meter,
    });
    this.#window = new StatusWindow(this.#clock, this.#series?.steps ?? new Map(), this.#meter);
    if (options.statusLogMs !== undefined) {
      this.#statusLogMs = requireNonNegative("statusLogMs", options.statusLogMs);
    }
    if (options.stuckTimeoutMs !== undefined) {
      this.#stuck = new StuckDetector({
        clock: this.#clock,
        timeoutMs: options.stuckTimeoutMs,
        progress: () => this.stats.iterations,
        describe: () => this.#describe(),
        onStuck: (ms, doing) => reportStuck(this.#meter, ms, doing),
      });
    }
    if (options.dlqPolicy !== undefined && !(options.dlqPolicy instanceof DlqPolicy)) {
      throw new ConfigurationError(
        'dlqPolicy must be a DlqPolicy, e.g. new DlqPolicy({ producer, topic: "my-dlq" })',
      );
    }
    this.#dlq = options.dlqPolicy === undefined ? undefined : new DlqRunner(options.dlqPolicy, {
      clock: this.#clock,
      stats: this.stats,
      resolved: (p, offset) => this.#onDlqResolved(p, offset),
    });
    this.#consumer.subscribe(options.topics, {
      onAssign: (partitions) => this.#onAssign(partitions),
      onRevoke: (partitions) => this.#onRevoke(partitions),
    });
  }

  /** True while all assigned partitions are paused for backpressure. */
  get paused(): boolean {
    return this.#backpressure.paused;
  }

  /** True while a rejected message is being held and retried. */
  get backpressured(): boolean {
    return this.#backpressure.since !== undefined;
  }

  /** Messages polled but not yet accepted by the pipeline. */
  get carriedCount(): number {
    return this.#carried.count;
  }

  /**
   * What the processor is doing now: per-step throughput and backpressure (share of time,
   * origin), whether it is backpressured and for how long (and whether fetching is
   * paused, as part of that), rebalancing, lag and progress per partition, and the
   * bottleneck. Rates cover about the last second (since the processor was built, at
   * first). Cheap enough to call every second; `HealthServer` serves it as `/status`.
   *
   * @example Print the status screen
   * ```ts
   * import type { StreamProcessor } from "@sluice/sluice";
   * import { renderStatus } from "@sluice/sluice/status";
   * function show(processor: StreamProcessor<string>): void {
   *   const status = processor.status();
   *   console.log(status.bottleneck.name, status.lag);
   *   console.log(renderStatus(status));
   * }
   * ```
   */
  status(): ProcessorStatus {
    return this.#window.status({
      running: this.#running,
      rebalancingSince: this.#rebalancingSince,
      backpressureSince: this.#backpressure.since,
      paused: this.#backpressure.paused,
      heldMessages: this.carriedCount,
      iterations: this.stats.iterations,
      messagesPolled: this.stats.messagesPolled,
    });
  }

  /**
   * Asks `run()` to stop after the current iteration (a paused processor's back-off ends at
   * once): the pipeline is closed, joined and committed.
   */
  signalShutdown(): void {
    this.#shutdownRequested = true;
    // A paused processor may be in a long back-off (pausedBackoffMs): it stops now.
    this.#backpressure.interrupt();
  }

  /**
   * Runs until {@link StreamProcessor.signalShutdown} (or SIGINT/SIGTERM, or, with
   * `{ untilCaughtUp: true }`, until the assigned partitions are caught up), then shuts
   * down gracefully. On an error the pipeline is terminated, the consumer closed, and the
   * error rethrown. A processor runs once: `run()` after it stopped throws
   * {@link ProcessorStoppedError}.
   *
   * @example Process what is there, then stop
   * ```ts
   * import { CommitOffsets, RunTask, StreamProcessor } from "@sluice/sluice";
   * import { LocalBroker } from "@sluice/sluice/local";
   *
   * const broker = new LocalBroker<string>();
   * broker.createTopic("events", 2);
   * for (let i = 0; i < 10; i++) broker.produce("events", `event ${i}`);
   * const processor = new StreamProcessor({
   *   consumer: broker.getConsumer("batch-job"),
   *   topics: ["events"],
   *   factory: {
   *     createWithPartitions: (commit) =>
   *       new RunTask((m) => m.payload.length, new CommitOffsets(commit)),
   *   },
   * });
   * await processor.run({ untilCaughtUp: true }); // all 10 processed and committed
   * ```
   */
  async run(options: RunOptions = {}): Promise<void> {
    if (this.#running) throw new InvalidStateError("run() is already running");
    this.#checkNotStopped();
    const untilCaughtUp = options?.untilCaughtUp === true;
    if (untilCaughtUp && typeof this.#consumer.endOffsets !== "function") {
      throw new ConfigurationError(
        "run({ untilCaughtUp: true }) needs a consumer with endOffsets(partitions); this " +
          "consumer has none: implement it, or stop the processor with signalShutdown()",
      );
    }
    this.#running = true;
    const removeSignals = this.#handleSignals ? this.#installSignals() : () => {};
    this.#stuck?.start();
    if (this.#strategy === undefined) this.#rebalancingSince ??= this.#clock.now();
    const stopLog = startStatusLog(
      this.#clock,
      this.#statusLogMs,
      () => renderStatusLine(this.status()),
    );
    try {
      while (!this.#shutdownRequested) {
        await this.runOnce();
        if (untilCaughtUp && await this.#caughtUp()) this.#shutdownRequested = true;
      }
      await this.#shutdown();
    } catch (e) {
      await this.#crash();
      throw e;
    } finally {
      this.#stuck?.stop();
      stopLog();
      this.#rebalancingSince = undefined;
      this.#enter(Phase.Idle);
      if (this.#meter !== undefined) this.#metrics?.retire(this.#meter);
      removeSignals();
      this.#backpressure.close();
      this.#running = false;
      this.#stopped = true;
    }
  }

  #checkNotStopped(): void {
    if (this.#stopped) {
      throw new ProcessorStoppedError(
        "this StreamProcessor has stopped (run() returned and its consumer is closed); " +
          "create a new consumer and StreamProcessor to consume again",
      );
    }
  }

  /**
   * True when every assigned partition has been processed up to its target (its end
   * offset when first seen assigned).
   */
  async #caughtUp(): Promise<boolean> {
    const assigned = this.#consumer.tell();
    if (assigned.size === 0 || this.#strategy === undefined) return false;
    this.#targets ??= new CatchUpTargets(this.#consumer);
    return await this.#targets.reached(
      assigned.keys(),
      (p) => this.#ledger.finished(p, this.#pipelineStart.get(p)),
    );
  }

  /** One loop iteration: poll, submit, wait if rejected, commit. Public for deterministic tests. */
  async runOnce(): Promise<void> {
    this.#checkNotStopped();
    this.stats.iterations++;
    if (this.#committer.error !== undefined) throw this.#committer.error;
    this.#dlq?.throwIfFailed();
    // Give timers, I/O and signals a turn at least every YIELD_EVERY_MS when busy. With the
    // system clock, this reading also ends the last iteration's processing phase: taken
    // here, after the microtasks in which its pipeline went on processing, not before them.
    let now: number | undefined = this.#wallNow();
    if (now - this.#lastYield >= YIELD_EVERY_MS || now < this.#lastYield) {
      this.#lastYield = now;
      await macrotask();
      now = undefined; // time passed: the meter reads the clock itself
    }
    let polledAt: number | undefined;
    if (this.#carried.empty) {
      this.#enter(Phase.Poll, this.#clockIsWall ? now : undefined);
      const batch = await this.#consumer.poll(this.#pollTimeoutMs);
      polledAt = this.#enter(Phase.Process);
      if (batch.length > 0) {
        this.#received(batch);
        this.#carried.carry(batch);
      }
    }
    this.#meter?.track(polledAt);
    const strategy = this.#strategy;
    if (strategy === undefined) {
      if (!this.#carried.empty) {
        throw new InvalidStateError(
          "received messages without an active pipeline: the consumer returned messages " +
            "before calling onAssign",
        );
      }
      return;
    }
    let invalid: InvalidMessage | undefined;
    this.#polledAt = polledAt;
    try {
      strategy.poll();
    } catch (e) {
      if (!(e instanceof InvalidMessage)) throw e;
      invalid = e;
    } finally {
      this.#polledAt = undefined;
    }
    if (invalid !== undefined) {
      await this.#onInvalid(invalid);
      return;
    }
    if (this.#carried.empty) return;
    const refused = this.#submitCarried(strategy);
    if (refused === undefined) return this.#backpressure.end();
    if (refused instanceof MessageRejected) return await this.#onRejected(strategy);
    if (!(refused instanceof InvalidMessage)) throw refused;
    // Drop the carried message only if it is the invalid one; once nothing is left carried,
    // backpressure is over (paused partitions resume).
    this.#carried.dropInvalid(refused);
    const waitForDlq = this.#onInvalid(refused);
    if (this.#carried.empty) this.#backpressure.end();
    await waitForDlq;
  }

  /** Counts freshly polled messages, samples their latency, keeps raw copies for the DLQ. */
  #received(batch: BrokerValue<T>[]): void {
    this.stats.messagesPolled += batch.length;
    this.#meter?.sample(batch);
    this.#dlq?.record(batch);
  }

  /**
   * Hands the carried messages to the pipeline as far as it takes them, and counts them.
   * Returns what stopped the submission, if anything (see {@link CarriedMessages.submitTo}).
   */
  #submitCarried(strategy: ProcessingStrategy<T>): unknown {
    const before = this.#carried.count;
    const refused = this.#carried.submitTo(strategy);
    const accepted = before - this.#carried.count;
    this.stats.messagesSubmitted += accepted;
    if (accepted > 0) this.#backpressure.progressed();
    return refused;
  }

  /**
   * Wall-clock milliseconds for the yield check: the clock's own reading when it is the
   * system clock (`Date.now()`, cheaper than `performance.now()` and shared with the
   * metrics), else `performance.now()` (a manual clock may never move).
   */
  #wallNow(): number {
    return this.#clockIsWall ? this.#clock.now() : performance.now();
  }

  /** The commit callback handed to the factory. */
  readonly #commit: Commit = (offsets, force = false) => {
    const incremental = this.#factory.incremental === true;
    for (const [p, o] of offsets) {
      if (incremental) {
        // A running pipeline outlives assignment changes: an offset of a partition it no
        // longer has (or of an earlier time it had it) must not be committed.
        const start = this.#pipelineStart.get(p);
        if (start === undefined || o < start) continue;
      }
      this.#ledger.record(p, o);
    }
    // While a pipeline is being joined, an invalid message surfaces through `join()`'s
    // promise, i.e. *after* microtasks in which the step may already have forwarded its
    // filtered marker: offsets are only recorded then, and committed (clamped by the
    // blocks set meanwhile) once the join is over.
    if (this.#joining) return;
    this.#dlq?.prune(offsets);
    if (force || this.#policy.shouldCommit(this.#polledAt ?? this.#clock.now(), offsets)) {
      this.#committer.start();
    }
  };

  /**
   * Blocks commits past the invalid message, then stops (no DLQ) or hands it to the DLQ,
   * which lifts the block once the delivery is confirmed. Throws when the processor must
   * stop; returns a promise when too many DLQ deliveries are in flight.
   */
  #onInvalid(e: InvalidMessage): void | Promise<void> {
    this.stats.invalidMessages++;
    // Block commits past the invalid message *synchronously*, before any step can forward
    // its filtered marker: until it is dead-lettered it went nowhere.
    this.#ledger.block(e.partition, e.offset);
    if (this.#dlq === undefined) throw e;
    return this.#dlq.handle(e);
  }

  /** A dead-lettered (or dropped and counted) message no longer blocks its partition's commits. */
  #onDlqResolved(p: Partition, offset: number): void {
    if (!this.#ledger.unblock(p, offset)) return;
    const dirty = this.#ledger.dirty(p);
    if (
      dirty !== undefined && !this.#consumer.closed && !this.#joining &&
      this.#policy.shouldCommit(this.#clock.now(), new Map([[p, dirty]]))
    ) this.#committer.start();
  }

  async #onRejected(strategy: ProcessingStrategy<T>): Promise<void> {
    this.stats.rejections++;
    const backpressure = this.#backpressure;
    backpressure.rejected(this.#clock.now());
    // Wait for room, or a short timer (held work retries on its own backoff).
    this.#enter(Phase.Backpressure);
    const waitedFrom = this.#wallNow();
    await backpressure.wait(strategy);
    // A paused wait that lasted (its timer, or a group event from I/O, ended it): timers,
    // I/O and signals just had their turn, so the next iteration need not yield for them (a
    // paused processor wakes once, not twice). A short wait may have ended in microtasks.
    const waitedTo = this.#wallNow();
    if (backpressure.paused && waitedTo - waitedFrom >= YIELD_EVERY_MS) this.#lastYield = waitedTo;
    this.#enter(Phase.Process);
    if (backpressure.paused || this.#consumer.rebalancePending?.() === true) {
      // Keep group membership alive and let rebalances through while paused; a rebalance
      // is let through at once (its onRevoke drops what is carried of revoked partitions).
      const batch = await this.#consumer.poll(0);
      if (batch.length > 0) {
        if (backpressure.paused) {
          throw new InvalidStateError(
            "the consumer returned messages from paused partitions; this is a backend bug",
          );
        }
        // A rebalance ran inside that poll and resumed the kept partitions: their next
        // messages follow what is still carried of them (a partition read again from an
        // earlier offset had its carried messages dropped by the rewind), so they queue up
        // behind it, in order. At most one poll's worth, once per rebalance.
        this.#received(batch);
        this.#carried.append(batch);
      }
    }
  }

  async #onAssign(partitions: ReadonlyMap<Partition, number>): Promise<void> {
    this.stats.assignments++;
    if (this.#stopping) return;
    this.#meter?.assigned(partitions);
    const current = this.#consumer.tell();
    for (const [p, o] of partitions) current.set(p, o);
    if (this.#strategy !== undefined && this.#factory.incremental === true) {
      // Incremental: the new partitions join the running pipeline; nothing stops.
      for (const [p, o] of partitions) this.#pipelineStart.set(p, o);
      this.#policy.start(partitions);
      // Paused for backpressure: the new partitions wait with the others.
      this.#backpressure.assigned(partitions);
      this.#strategy.addPartitions?.(partitions);
      this.#rebalancingSince = undefined;
      return;
    }
    if (this.#strategy !== undefined) {
      await this.#closeStrategy();
      this.#rewindUnfinished(this.#consumer.tell().keys(), current);
    }
    this.#backpressure.end();
    this.#policy.start(current);
    this.#createStrategy(current);
  }

  /** Builds the pipeline for `partitions` (partition → next offset to read). */
  #createStrategy(partitions: Map<Partition, number>): void {
    const start = new Map(partitions);
    for (const [p, o] of this.#carried.firstOffsets()) if (start.has(p)) start.set(p, o);
    this.#pipelineStart = start;
    this.#strategy = withStepMetrics(
      this.#series,
      () => this.#factory.createWithPartitions(this.#commit, partitions),
    );
    this.#rebalancingSince = undefined;
  }

  /**
   * After the pipeline was closed for an assignment change: a partition that stays
   * assigned and whose accepted messages did not all finish (the join timed out, or gave
   * up on held work) is read again from its first unfinished offset, so the next pipeline
   * never commits past the abandoned ones. Its carried messages are dropped: they come
   * again, in order, after the seek. `partitions` gets the rewound offsets.
   */
  #rewindUnfinished(kept: Iterable<Partition>, partitions?: Map<Partition, number>): void {
    const positions = this.#consumer.tell();
    const firstCarried = this.#carried.firstOffsets();
    const rewind = new Map<Partition, number>();
    for (const p of kept) {
      const start = this.#pipelineStart.get(p);
      const position = positions.get(p);
      if (start === undefined || position === undefined) continue;
      const accepted = firstCarried.get(p) ?? position;
      const finished = this.#ledger.finished(p, start);
      if (finished < accepted) rewind.set(p, finished);
    }
    if (rewind.size === 0) return;
    this.#consumer.seek(rewind);
    for (const [p, o] of rewind) partitions?.set(p, o);
    this.#carried.drop(rewind);
    console.warn(
      `sluice: the pipeline closed for an assignment change did not finish its work on ${
        [...rewind].map(([p, o]) => `${p} (from ${o})`).join(", ")
      } within joinTimeoutMs; those partitions stay assigned and are read again from their ` +
        "first unfinished message: duplicates, not loss",
    );
  }

  async #onRevoke(partitions: readonly Partition[]): Promise<void> {
    this.stats.revocations++;
    this.#rebalancingSince ??= this.#clock.now();
    const revoked = new Set(partitions);
    let joinTimeoutMs = this.#joinTimeoutMs;
    if (this.#strategy !== undefined && this.#factory.incremental === true && !this.#stopping) {
      const keeps = [...this.#consumer.tell().keys()].some((p) => !revoked.has(p));
      if (keeps) {
        const started = this.#clock.now();
        if (await this.#drainRevoked(revoked)) {
          this.#forgetRevoked(revoked, partitions);
          // The pipeline of the kept partitions never stopped: no rebalance to wait out.
          this.#rebalancingSince = undefined;
          return;
        }
        // Not finished in time: fall back to closing the whole pipeline (below), with what
        // is left of joinTimeoutMs; kept partitions' unfinished work is read again.
        joinTimeoutMs = Math.max(0, this.#joinTimeoutMs - (this.#clock.now() - started));
      }
    }
    const closed = this.#strategy !== undefined;
    if (closed) await this.#closeStrategy(joinTimeoutMs);
    // Messages of revoked partitions are re-read by their next owner from the commit point.
    this.#carried.drop(revoked);
    this.#backpressure.end();
    this.#forgetRevoked(revoked, partitions);
    if (this.#stopping) return;
    const remaining = this.#consumer.tell();
    for (const p of revoked) remaining.delete(p);
    if (remaining.size > 0) {
      if (closed) this.#rewindUnfinished(remaining.keys(), remaining);
      this.#createStrategy(remaining);
    }
  }

  /** Drops all state of revoked partitions (their next owner reads from the commit point). */
  #forgetRevoked(revoked: ReadonlySet<Partition>, partitions: readonly Partition[]): void {
    for (const p of revoked) {
      this.#ledger.forget(p);
      if (this.#factory.incremental === true) this.#pipelineStart.delete(p);
    }
    this.#dlq?.forget(revoked);
    this.#meter?.revoked(partitions);
    this.#policy.forget(revoked);
  }

  /**
   * Incremental revoke: the pipeline keeps running (it is polled, and takes carried
   * messages of kept partitions) while the work it accepted of `revoked` finishes; then that
   * work is committed. Carried messages of `revoked` are dropped (their next owner reads
   * them). Returns false when the work did not finish within `joinTimeoutMs`.
   */
  async #drainRevoked(revoked: ReadonlySet<Partition>): Promise<boolean> {
    const strategy = this.#strategy!;
    // Accepted so far, per revoked partition: up to its first carried message, else up to
    // the consumer's position.
    const accepted = new Map<Partition, number>();
    const positions = this.#consumer.tell();
    for (const p of revoked) {
      const position = positions.get(p);
      if (position !== undefined) accepted.set(p, position);
    }
    for (const [p, o] of this.#carried.firstOffsets()) if (revoked.has(p)) accepted.set(p, o);
    this.#carried.drop(revoked);
    if (this.#carried.empty) this.#backpressure.end();
    strategy.removePartitions?.([...revoked]);
    const phase = this.#phase;
    this.#enter(Phase.Join);
    const deadline = this.#clock.now() + this.#joinTimeoutMs;
    // Its own distrust of `ready` (see RoomWait): a `ready` that resolves at once while the
    // carried messages are refused must not make this loop spin.
    const room = new RoomWait();
    let backoff = DRAIN_MIN_BACKOFF_MS;
    try {
      let submitting = true;
      for (;;) {
        try {
          strategy.poll();
        } catch (e) {
          if (!(e instanceof InvalidMessage)) throw e;
          await this.#onInvalid(e);
        }
        if (submitting) {
          const before = this.#carried.count;
          submitting = this.#submitCarriedWhileDraining(strategy);
          if (this.#carried.count < before) room.progressed();
        }
        if (this.#revokedWorkDone(accepted)) break;
        const left = deadline - this.#clock.now();
        if (left <= 0) return false;
        // Wait a little (and for room, when carried messages wait for it): the pipeline's
        // own timers and promises finish its work meanwhile.
        const waitForRoom = !this.#carried.empty && submitting;
        await room.wait(this.#clock, Math.min(backoff, left), waitForRoom ? strategy : undefined);
        backoff = Math.min(backoff * 2, DRAIN_MAX_BACKOFF_MS);
      }
    } finally {
      this.#enter(phase);
    }
    await this.#finalCommit(`giving back ${[...revoked].map(String).join(", ")}`);
    return true;
  }

  /** Whether every revoked partition's accepted work is committed (or ready to be). */
  #revokedWorkDone(accepted: ReadonlyMap<Partition, number>): boolean {
    for (const [p, a] of accepted) {
      if (this.#ledger.finished(p, this.#pipelineStart.get(p)) < a) return false;
    }
    return true;
  }

  /**
   * Hands carried messages (of kept partitions) to the pipeline during an incremental
   * revoke, as far as it takes them. Returns false once a message is refused with an error
   * other than backpressure: the loop handles it after the revoke.
   */
  #submitCarriedWhileDraining(strategy: ProcessingStrategy<T>): boolean {
    if (this.#carried.empty) return true;
    const refused = this.#submitCarried(strategy);
    if (this.#carried.empty) this.#backpressure.end();
    if (refused === undefined || refused instanceof MessageRejected) return true;
    if (refused instanceof InvalidMessage) return false;
    throw refused;
  }

  /** close → join(timeout) → commit. Invalid messages reported during join are handled. */
  async #closeStrategy(joinTimeoutMs = this.#joinTimeoutMs): Promise<void> {
    const strategy = this.#strategy!;
    this.#strategy = undefined;
    // The held message is no longer waiting on this pipeline: its episode ends here.
    this.#backpressure.end();
    const phase = this.#phase;
    this.#enter(Phase.Join);
    strategy.close();
    const deadline = this.#clock.now() + joinTimeoutMs;
    this.#joining = true;
    this.#joiningStrategy = strategy;
    try {
      for (;;) {
        try {
          await strategy.join(Math.max(0, deadline - this.#clock.now()));
          break;
        } catch (e) {
          if (!(e instanceof InvalidMessage)) {
            strategy.terminate();
            throw e;
          }
          try {
            await this.#onInvalid(e);
          } catch (stop) {
            strategy.terminate();
            throw stop;
          }
        }
      }
    } finally {
      this.#joining = false;
      this.#joiningStrategy = undefined;
    }
    await this.#finalCommit(this.#stopping ? "shutdown" : "giving partitions back");
    this.#enter(phase);
  }

  /**
   * The final commit before partitions are given back or the processor stops: dead-letter
   * deliveries still in flight land first (or fail it); a commit that does not go through
   * is reported (that work is read again by the next owner: duplicates, not loss).
   */
  async #finalCommit(before: string): Promise<void> {
    await this.#dlq?.flush();
    const incomplete = this.stats.commitsIncomplete;
    await this.#committer.flush();
    if (this.stats.commitsIncomplete > incomplete) {
      console.warn(
        `sluice: the final commit before ${before} did not go through (${this.#ledger.describeDirty()}); ` +
          "that work will be read again by the partitions' next owner: duplicates, not loss",
      );
    }
  }

  async #shutdown(): Promise<void> {
    this.#stopping = true;
    if (this.#strategy !== undefined) await this.#closeStrategy();
    await this.#consumer.close();
    await this.#factory.shutdown?.();
  }

  async #crash(): Promise<void> {
    this.#stopping = true;
    const strategy = this.#strategy;
    this.#strategy = undefined;
    try {
      strategy?.terminate();
    } catch { /* already failing */ }
    try {
      // Offsets staged so far cover finished work only; committing them saves replays.
      if (this.#committer.error === undefined) await this.#committer.flush();
    } catch { /* the original error matters more */ }
    try {
      await this.#consumer.close();
    } catch { /* idem */ }
    try {
      await this.#factory.shutdown?.();
    } catch { /* idem */ }
  }

  /**
   * Switches the loop's phase (and accounts the time of the previous one when metered, at
   * `now` if the caller has just read the clock). Returns the meter's reading, if any.
   */
  #enter(phase: Phase, now?: number): number | undefined {
    this.#phase = phase;
    return this.#meter?.enter(phase, now);
  }

  #describe(): string {
    const assigned = [...this.#consumer.tell().keys()].map(String).join(", ") || "none";
    return `${PHASE_DESCRIPTIONS[this.#phase]} (iteration ${this.stats.iterations}, ` +
      `${this.carriedCount} message(s) held, paused: ${this.paused}, assigned: ${assigned})`;
  }

  /**
   * SIGINT/SIGTERM during `run()`: the first shuts down gracefully, saying what is drained
   * and until when; a second stops at once (nothing more is committed).
   */
  #installSignals(): () => void {
    return handleShutdownSignals({
      shutdown: () => this.signalShutdown(),
      plan: () => this.#drainPlan(),
      stopNow: () => {
        this.#committer.stop();
        try {
          (this.#joiningStrategy ?? this.#strategy)?.terminate();
        } catch { /* stopping anyway */ }
      },
    });
  }

  /** What a graceful shutdown will do now, in one sentence. */
  #drainPlan(): string {
    const assigned = [...this.#consumer.tell().keys()];
    const shown = assigned.slice(0, 8).map(String).join(", ") +
      (assigned.length > 8 ? `, +${assigned.length - 8} more` : "");
    const held = this.carriedCount;
    return (this.#strategy === undefined
      ? "no pipeline to drain (no partition assigned)"
      : `draining the pipeline of ${assigned.length} partition(s) (${shown}) and committing ` +
        `its finished work, for at most ${this.#joinTimeoutMs} ms (joinTimeoutMs)`) +
      (held > 0 ? `; ${held} polled message(s) not in the pipeline yet will be read again` : "");
  }
}
