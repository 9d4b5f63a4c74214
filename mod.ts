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
 * The dead-letter queue (`DlqPolicy` and its headers) is imported from
 * `@sluice/sluice/dlq`, the health check step and HTTP server from `@sluice/sluice/health`,
 * the status view from `@sluice/sluice/status`, and each backend from its own entry
 * (`./local`, `./kafka`, `./platformatic`, `./stream`).
 *
 * @module
 */
export {
  BrokerValue,
  type Committable,
  FILTERED_PAYLOAD,
  FilteredPayload,
  InvalidMessage,
  Message,
  Partition,
  StepError,
  Topic,
  Value,
} from "./types.ts";
export {
  ClosedError,
  ConfigurationError,
  ConsumerError,
  InvalidStateError,
  MessageRejected,
  ProducerError,
  SluiceError,
  UnknownTopicError,
} from "./errors.ts";
export { type Clock, ManualClock } from "./clock.ts";
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
export { type Chunk, HOLD, type StepOptions, StreamStep } from "./strategies/stream_step.ts";
export { MapStep, type SettledResult, SKIP, type TransformResult } from "./strategies/map_step.ts";
export { RunTask } from "./strategies/run_task.ts";
export { CommitOffsets } from "./strategies/commit_offsets.ts";
export { FilterStep } from "./strategies/filter.ts";
export { Noop } from "./strategies/noop.ts";
export { RateLimit, type RateLimitOptions } from "./strategies/rate_limit.ts";
export { byteLength } from "./strategies/size.ts";
export {
  type AsyncTask,
  RunTaskAsync,
  type RunTaskAsyncOptions,
} from "./strategies/run_task_async.ts";
export { Produce, type ProduceOptions } from "./strategies/produce.ts";
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
export { DURATION_BUCKETS_S, METER_NAME, SluiceMetrics } from "./metrics/otel.ts";
export type { SeriesAttributes } from "./metrics/attributes.ts";
export {
  type Bottleneck,
  type PartitionStatus,
  type ProcessorStatus,
  type StepStatus,
} from "./metrics/status.ts";
export {
  type TransformPair,
  TransformStep,
  type TransformStepOptions,
} from "./strategies/transform.ts";
export { KeyedConcurrency, type KeyedConcurrencyOptions } from "./strategies/keyed_concurrency.ts";
export {
  type ConsumerReadable,
  consumerReadable,
  type ConsumerReadableOptions,
} from "./processing/consumer_readable.ts";
export { UnsupportedRuntimeError } from "./runtime/mod.ts";
// The dead-letter types the processor's own options and stats name (`dlqPolicy`, the
// counters `ProcessorStats` extends), so that this entry's documentation is complete by itself;
// the dead-letter queue itself (headers, errors, `withDlqHeaders`) is `@sluice/sluice/dlq`.
export type {
  DlqCounters,
  DlqFailureMode,
  DlqInfo,
  DlqLimit,
  DlqPolicy,
  DlqRecord,
} from "./processing/dlq.ts";
// What `UnsupportedRuntimeError` names; the runtime layer itself is `@sluice/sluice/runtime`.
export type { RuntimeFeature, RuntimeName } from "./runtime/mod.ts";
