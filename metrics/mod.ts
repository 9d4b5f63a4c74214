/**
 * Sluice's observability: OpenTelemetry metrics that name the bottleneck (per-step
 * backpressure episodes with their origin), consumer lag and latency, and a stuck
 * detector. Imported by strategies and the processor; imports neither.
 *
 * @module
 */
export { HistogramBuffer, MAX_BUFFERED_SAMPLES } from "./buffer.ts";
export {
  type ConsumerCounters,
  ConsumerMeter,
  type EndOffsets,
  type PartitionProgress,
  Phase,
  PHASE_DESCRIPTIONS,
  PROGRESS_CHECK_MS,
  type TimestampedOffset,
} from "./consumer.ts";
export { EpisodeStats, EpisodeTracker } from "./episode.ts";
export { DURATION_BUCKETS_S, METER_NAME, MetricSeries, SluiceMetrics } from "./otel.ts";
export type { SeriesAttributes } from "./attributes.ts";
export {
  type Bottleneck,
  BOTTLENECK_SHARE,
  describeState,
  type PartitionStatus,
  type ProcessorStatus,
  renderStatus,
  renderStatusLine,
  STALL_SHOWN_MS,
  STATUS_WINDOW_MS,
  type StatusInput,
  StatusWindow,
  type StepStatus,
} from "./status.ts";
export {
  type BackpressureSide,
  type DropCount,
  StepMeter,
  stepMeterFor,
  type StepMetricsSource,
  StepStats,
  withStepMetrics,
} from "./step.ts";
export { StuckDetector, type StuckDetectorOptions } from "./stuck.ts";
