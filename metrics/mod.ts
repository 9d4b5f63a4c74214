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
  Phase,
  PHASE_DESCRIPTIONS,
  type TimestampedOffset,
} from "./consumer.ts";
export { EpisodeStats, EpisodeTracker } from "./episode.ts";
export { DURATION_BUCKETS_MS, METER_NAME, SluiceMetrics } from "./otel.ts";
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
