/**
 * Sluice: stream processing with real backpressure, on web streams.
 *
 * Pipelines are chains of processing strategies (`RunTask`, `FilterStep`,
 * `CommitOffsets`, ...) driven by a {@link StreamProcessor} that polls a consumer, submits
 * messages, waits when a step is full, pauses the consumer when pressure lasts, and
 * commits only finished work. Each strategy's input queue is a standard `WritableStream`.
 *
 * @example
 * ```ts
 * import { CommitOffsets, FilterStep, RunTask, StreamProcessor } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 4);
 * broker.produce("events", JSON.stringify({ user: "ada", amount: 3 }));
 *
 * const processor = new StreamProcessor({
 *   consumer: broker.getConsumer("billing"),
 *   topics: ["events"],
 *   factory: {
 *     createWithPartitions: (commit) =>
 *       new FilterStep(
 *         (m) => m.payload.length > 0,
 *         new RunTask((m) => JSON.parse(m.payload), new CommitOffsets(commit)),
 *       ),
 *   },
 *   handleSignals: false,
 * });
 * setTimeout(() => processor.signalShutdown(), 100);
 * await processor.run();
 * ```
 *
 * @module
 */
export * from "./types.ts";
export { type Clock, macrotask, ManualClock, systemClock } from "./clock.ts";
export { CommitPolicy, type CommitPolicyOptions, CommitPolicyState } from "./commit_policy.ts";
export {
  type MeterProviderLike,
  type ProcessorStats,
  ProcessorStoppedError,
  type RunOptions,
  StreamProcessor,
  type StreamProcessorOptions,
} from "./processor.ts";
export type { AssignmentCallbacks, Consumer, Producer } from "./backends/abstract.ts";
export type {
  Commit,
  ProcessingStrategy,
  ProcessingStrategyFactory,
} from "./strategies/abstract.ts";
export {
  type Chunk,
  DEFAULT_CHUNK_SIZE,
  DEFAULT_HIGH_WATER_MARK,
  HOLD,
  MapStep,
  SKIP,
  type StepOptions,
  StreamStep,
  type TransformResult,
} from "./strategies/bridge.ts";
export { RunTask } from "./strategies/run_task.ts";
export { CommitOffsets, highestOffsets } from "./strategies/commit_offsets.ts";
export { FilterStep } from "./strategies/filter.ts";
export { Noop } from "./strategies/noop.ts";
export { RateLimit, type RateLimitOptions } from "./strategies/rate_limit.ts";
export { byteLength, payloadByteLength, utf8Length } from "./strategies/size.ts";
export {
  type AsyncTask,
  RunTaskAsync,
  type RunTaskAsyncOptions,
} from "./strategies/run_task_async.ts";
export { Produce, type ProduceOptions } from "./strategies/produce.ts";
export {
  DLQ_HEADERS,
  type DlqCounters,
  DlqDeliveryError,
  type DlqFailureMode,
  type DlqInfo,
  type DlqLimit,
  DlqLimitExceeded,
  DlqMessageMissing,
  DlqPolicy,
  type DlqPolicyOptions,
  type DlqRecord,
  MAX_REASON_LENGTH,
  withDlqHeaders,
} from "./dlq.ts";
export { type Codec, Decode, JSON_CODEC } from "./strategies/decode.ts";
export { Buffer, type BufferOptions, type BufferProtocol } from "./strategies/buffer.ts";
export { Reduce, type ReduceOptions } from "./strategies/reduce.ts";
export { type BatchOptions, BatchStep, UnbatchStep } from "./strategies/batching.ts";
export { Unfold } from "./strategies/unfold.ts";
export {
  type DropReason,
  LoadShed,
  type LoadShedOptions,
  type ShedPolicy,
} from "./strategies/load_shed.ts";
export {
  CircuitBreaker,
  type CircuitBreakerOptions,
  type CircuitState,
  type CircuitStateChange,
} from "./strategies/circuit_breaker.ts";
export {
  RunTaskInWorkers,
  type RunTaskInWorkersOptions,
} from "./strategies/run_task_in_workers.ts";
export {
  AdaptiveBatch,
  type AdaptiveBatchOptions,
  type BatchRecord,
} from "./strategies/adaptive_batch.ts";
export {
  type BackpressureSide,
  type ConsumerCounters,
  ConsumerMeter,
  DURATION_BUCKETS_MS,
  type EndOffsets,
  EpisodeStats,
  EpisodeTracker,
  HistogramBuffer,
  MAX_BUFFERED_SAMPLES,
  METER_NAME,
  Phase,
  PHASE_DESCRIPTIONS,
  SluiceMetrics,
  StepMeter,
  stepMeterFor,
  type StepMetricsSource,
  StepStats,
  StuckDetector,
  type StuckDetectorOptions,
  type TimestampedOffset,
  withStepMetrics,
} from "./metrics/mod.ts";
export {
  type TransformPair,
  TransformStep,
  type TransformStepOptions,
} from "./strategies/transform.ts";
export {
  Healthcheck,
  type HealthcheckOptions,
  HealthServer,
  type HealthServerOptions,
  type HealthStatus,
} from "./strategies/healthcheck.ts";
export { KeyedConcurrency, type KeyedConcurrencyOptions } from "./strategies/keyed_concurrency.ts";
export {
  type ConsumerReadable,
  consumerReadable,
  type ConsumerReadableOptions,
} from "./backends/readable.ts";
export type { DropCount } from "./metrics/mod.ts";
