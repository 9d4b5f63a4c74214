/**
 * What a {@link StreamProcessor} is built with ({@link StreamProcessorOptions}), what
 * `run()` takes ({@link RunOptions}), and what it counts ({@link ProcessorStats}). The
 * processor itself is in `processor.ts`, which exports these too.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { Consumer } from "../backends/abstract.ts";
import type { CommitPolicy } from "./commit_policy.ts";
import type { DlqCounters, DlqPolicy } from "./dlq.ts";
import type { SeriesAttributes } from "../metrics/attributes.ts";
import type { ProcessingStrategyFactory } from "../strategies/abstract.ts";
import type { Topic } from "../types.ts";
import { ConfigurationError } from "../errors.ts";

/**
 * Options of a {@link StreamProcessor}.
 *
 * @example A typical options object
 * ```ts
 * import {
 *   CommitOffsets,
 *   CommitPolicy,
 *   StreamProcessor,
 *   type StreamProcessorOptions,
 * } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 4);
 * const options: StreamProcessorOptions<string> = {
 *   consumer: broker.getConsumer("billing"),
 *   topics: ["events"],
 *   factory: { createWithPartitions: (commit) => new CommitOffsets(commit) },
 *   commitPolicy: new CommitPolicy({ intervalMs: 5_000 }),
 *   joinTimeoutMs: 10_000,
 *   handleSignals: false,
 * };
 * const processor = new StreamProcessor(options);
 * ```
 */
export interface StreamProcessorOptions<T> {
  /** The consumer to read from; the processor subscribes it. */
  consumer: Consumer<T>;
  /** Topics to subscribe to. */
  topics: readonly (Topic | string)[];
  /** Builds the pipeline on every assignment. */
  factory: ProcessingStrategyFactory<T>;
  /**
   * When to commit.
   * @default CommitPolicy.ONCE_PER_SECOND
   */
  commitPolicy?: CommitPolicy;
  /**
   * Longest wait (ms) for the pipeline to finish its work on revoke and shutdown; what is
   * unfinished then is not committed.
   * @default 25000
   */
  joinTimeoutMs?: number;
  /**
   * Continuous backpressure (ms) after which all assigned partitions are paused.
   * @default 1000
   */
  pauseAfterMs?: number;
  /**
   * How long (ms) `poll` waits for messages when there are none.
   * @default 100
   */
  pollTimeoutMs?: number;
  /**
   * Longest wait (ms) between retries while the pipeline rejects and does not signal `ready`.
   * @default 100
   */
  maxBackoffMs?: number;
  /**
   * The same bound once the partitions are paused: a paused consumer wakes this often (or
   * when the pipeline signals `ready`, or when the consumer reports a group event through
   * `Consumer.onGroupEvent`: a rebalance is let through at once) to poll the consumer and
   * retry, so a fully backpressured consumer costs next to no CPU. Default: 3000 for a
   * consumer with `onGroupEvent` (all of Sluice's), else 1000 (a consumer of your own
   * would only notice a rebalance when this ends); at least `maxBackoffMs`. With a
   * `LocalBroker`, keep its `sessionTimeoutMs` above it: a paused member polls this often.
   * @default 3000 (1000 for a consumer without onGroupEvent)
   */
  pausedBackoffMs?: number;
  /**
   * Clock for all timing; a `ManualClock` drives time in tests.
   * @default systemClock
   */
  clock?: Clock;
  /**
   * Handle SIGINT/SIGTERM during `run()` (Deno, Node, Bun). The first one shuts down
   * gracefully and prints a line (stderr) saying what is drained and the deadline
   * (`joinTimeoutMs`); a second one stops the process at once (exit code 130 for SIGINT,
   * 143 for SIGTERM): unfinished work is not committed and is read again. Default: true
   * where the runtime has process signals, false elsewhere (browsers, edge runtimes);
   * `true` there throws an `UnsupportedRuntimeError`.
   * @default true where the runtime has signals
   */
  handleSignals?: boolean;
  /**
   * OpenTelemetry `MeterProvider` for Sluice's metrics (`sluice.consumer.*`, and
   * `sluice.step.*` for every step the factory builds). Default: the global provider when
   * one is set when the processor is built (`metrics.setGlobalMeterProvider(...)` from
   * `@opentelemetry/api`, which `OTEL_DENO=true` does); `null`: no OpenTelemetry metrics
   * even then ({@link StreamProcessor.status} still works).
   * @default the global MeterProvider, if one is set
   */
  meterProvider?: MeterProviderLike | null;
  /**
   * `false` turns every metric off, OpenTelemetry and the numbers behind
   * {@link StreamProcessor.status} alike (its steps and partitions are then empty).
   * @default true
   */
  metrics?: boolean;
  /**
   * Attributes added to every metric of this processor, next to the `messaging.system`,
   * `messaging.consumer.group.name` and `messaging.client.id` taken from the consumer:
   * give two processors with the same group and client id distinct series.
   * @default {}
   */
  metricAttributes?: SeriesAttributes;
  /**
   * Log a one-line status (see {@link renderStatusLine}) this often while `run()` runs,
   * in milliseconds.
   * @default undefined (off)
   */
  statusLogMs?: number;
  /**
   * When `run()`'s loop has not advanced for this many milliseconds, log a warning saying
   * what it was doing and count `sluice.consumer.stuck`.
   * @default undefined (off)
   */
  stuckTimeoutMs?: number;
  /**
   * Dead-letter queue for `InvalidMessage`s. Without one, an invalid message stops the
   * processor (nothing is committed past it). See {@link DlqPolicy}.
   * @default undefined (an invalid message stops the processor)
   */
  // deno-lint-ignore no-explicit-any
  dlqPolicy?: DlqPolicy<T, any>;
}

/**
 * An OpenTelemetry `MeterProvider`: `metrics.getMeterProvider()` from `@opentelemetry/api`,
 * or `new MeterProvider(...)` from `@opentelemetry/sdk-metrics`. Declared by its shape so
 * that Sluice's API names no type of another package; Sluice only calls `getMeter`.
 *
 * @example Pass an SDK MeterProvider
 * ```ts
 * import { MeterProvider } from "@opentelemetry/sdk-metrics";
 * import type { MeterProviderLike } from "@sluice/sluice";
 * const provider: MeterProviderLike = new MeterProvider();
 * ```
 */
export interface MeterProviderLike {
  /** Returns the meter of the instrumentation scope `name`. */
  getMeter(name: string, version?: string, options?: { schemaUrl?: string }): object;
}

/**
 * Options of {@link StreamProcessor.run}.
 *
 * @example Process what is there, then stop
 * ```ts
 * import { CommitOffsets, type RunOptions, StreamProcessor } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 * import { assertEquals } from "@std/assert";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 1);
 * broker.produce("events", "a");
 * const processor = new StreamProcessor({
 *   consumer: broker.getConsumer("batch-job"),
 *   topics: ["events"],
 *   factory: { createWithPartitions: (commit) => new CommitOffsets(commit) },
 *   handleSignals: false,
 * });
 * const options: RunOptions = { untilCaughtUp: true };
 * await processor.run(options);
 * assertEquals(processor.stats.messagesPolled, 1);
 * ```
 */
export interface RunOptions {
  /**
   * Stop gracefully once the consumer has caught up: every assigned partition processed
   * (and, by the shutdown's final commit, committed) up to the end offset it had when the
   * processor first saw it assigned. For batch jobs, scripts and examples. Needs a consumer
   * with `endOffsets()` (the local and Kafka consumers have it). With no partition
   * assigned (yet), it keeps waiting for one.
   */
  untilCaughtUp?: boolean;
}

/**
 * Counters the processor keeps (also the source of its metrics), as its `stats`.
 *
 * @example Read the counters after a run
 * ```ts
 * import { CommitOffsets, type ProcessorStats, StreamProcessor } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 * import { assertEquals } from "@std/assert";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 1);
 * broker.produce("events", "a");
 * broker.produce("events", "b");
 * const processor = new StreamProcessor({
 *   consumer: broker.getConsumer("g"),
 *   topics: ["events"],
 *   factory: { createWithPartitions: (commit) => new CommitOffsets(commit) },
 *   handleSignals: false,
 * });
 * await processor.run({ untilCaughtUp: true });
 * const stats: ProcessorStats = processor.stats;
 * assertEquals(stats.messagesSubmitted, 2);
 * ```
 */
export interface ProcessorStats extends DlqCounters {
  /** Loop iterations. */
  iterations: number;
  /** Messages received from the consumer. */
  messagesPolled: number;
  /** Messages accepted by the pipeline. */
  messagesSubmitted: number;
  /** Times `submit` rejected. */
  rejections: number;
  /** Times all partitions were paused for backpressure. */
  pauses: number;
  /** Times they were resumed. */
  resumes: number;
  /** Commits sent to the consumer. */
  commits: number;
  /**
   * Commits that left offsets uncommitted (the broker was unreachable, or the group was
   * rebalancing): those offsets are kept and sent again with the next commit.
   */
  commitsIncomplete: number;
  /** Total milliseconds spent in finished backpressure episodes. */
  backpressureMs: number;
  /** Assignments received. */
  assignments: number;
  /** Revocations received. */
  revocations: number;
  /** Invalid messages reported by the pipeline. */
  invalidMessages: number;
}

/** @internal A processor's counters before it did anything. */
export function zeroStats(): ProcessorStats {
  return {
    iterations: 0,
    messagesPolled: 0,
    messagesSubmitted: 0,
    rejections: 0,
    pauses: 0,
    resumes: 0,
    commits: 0,
    commitsIncomplete: 0,
    backpressureMs: 0,
    assignments: 0,
    revocations: 0,
    invalidMessages: 0,
    deadLettered: 0,
    dlqDropped: 0,
    dlqBufferEvicted: 0,
  };
}

/**
 * @internal Checks the parts a processor cannot do without (`consumer`, `topics`, a
 * `factory` with `createWithPartitions`); throws {@link ConfigurationError} naming the
 * missing one.
 */
export function requireProcessorParts<T>(options: StreamProcessorOptions<T>): void {
  if (!options || !options.consumer || !options.factory) {
    throw new ConfigurationError(
      "StreamProcessor needs { consumer, topics, factory }; see the README's quick example",
    );
  }
  if (typeof options.factory.createWithPartitions !== "function") {
    throw new ConfigurationError(
      "factory must have createWithPartitions(commit, partitions) returning a ProcessingStrategy",
    );
  }
  if (!Array.isArray(options.topics) || options.topics.length === 0) {
    throw new ConfigurationError("StreamProcessor needs at least one topic in `topics`");
  }
}
