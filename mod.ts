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
export * from "./errors.ts";
export { type Clock, macrotask, ManualClock, systemClock } from "./clock.ts";
export {
  CommitPolicy,
  type CommitPolicyOptions,
  CommitPolicyState,
} from "./processing/commit_policy.ts";
export {
  type MeterProviderLike,
  type ProcessorStats,
  ProcessorStoppedError,
  type RunOptions,
  StreamProcessor,
  type StreamProcessorOptions,
} from "./processing/processor.ts";
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
  type StepOptions,
  StreamStep,
} from "./strategies/stream_step.ts";
export { MapStep, type SettledResult, SKIP, type TransformResult } from "./strategies/map_step.ts";
export { RunTask } from "./strategies/run_task.ts";
export { isThenable, requireSync } from "./strategies/thenable.ts";
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
} from "./processing/dlq.ts";
export { type Codec, Decode, JSON_CODEC } from "./strategies/decode.ts";
export { type BufferOptions, type BufferProtocol, BufferStep } from "./strategies/buffer.ts";
export { Reduce, type ReduceOptions } from "./strategies/reduce.ts";
export { type BatchOptions, BatchStep, UnbatchStep } from "./strategies/batching.ts";
export { Unfold } from "./strategies/unfold.ts";
export { Pipeline, pipeline, type StepFactory } from "./strategies/pipeline.ts";
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
} from "./strategies/workers/run_task_in_workers.ts";
export {
  AdaptiveBatch,
  type AdaptiveBatchOptions,
  type BatchRecord,
} from "./strategies/adaptive_batch.ts";
export {
  type BackpressureSide,
  type Bottleneck,
  BOTTLENECK_SHARE,
  type ConsumerCounters,
  ConsumerMeter,
  describeState,
  DURATION_BUCKETS_S,
  type EndOffsets,
  EpisodeStats,
  EpisodeTracker,
  HistogramBuffer,
  MAX_BUFFERED_SAMPLES,
  METER_NAME,
  MetricSeries,
  type PartitionProgress,
  type PartitionStatus,
  Phase,
  PHASE_DESCRIPTIONS,
  type ProcessorStatus,
  PROGRESS_CHECK_MS,
  renderStatus,
  renderStatusLine,
  type SeriesAttributes,
  SluiceMetrics,
  STALL_SHOWN_MS,
  STATUS_WINDOW_MS,
  type StatusInput,
  StatusWindow,
  StepMeter,
  stepMeterFor,
  type StepMetricsSource,
  StepStats,
  type StepStatus,
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
export { Healthcheck, type HealthcheckOptions } from "./strategies/healthcheck.ts";
export {
  HealthServer,
  type HealthServerOptions,
  type HealthSource,
  type HealthStatus,
  type PartitionHealth,
} from "./strategies/health_server.ts";
export { KeyedConcurrency, type KeyedConcurrencyOptions } from "./strategies/keyed_concurrency.ts";
export {
  type ConsumerReadable,
  consumerReadable,
  type ConsumerReadableOptions,
} from "./processing/consumer_readable.ts";
export type { DropCount } from "./metrics/mod.ts";
export {
  detectRuntime,
  type RuntimeFeature,
  type RuntimeName,
  UnsupportedRuntimeError,
} from "./runtime/mod.ts";
