/**
 * Where a processor's metrics go (private to `processing/`): the OpenTelemetry provider
 * (given, or the global one), the series its steps count into, and its consumer meter,
 * labelled with what the consumer says about itself; and its reports: the periodic
 * status line and the stuck-loop warning.
 *
 * @module
 */
import type { MeterProvider } from "@opentelemetry/api";
import type { Clock } from "../clock.ts";
import type { Consumer } from "../backends/abstract.ts";
import { ConfigurationError } from "../errors.ts";
import { type ConsumerCounters, ConsumerMeter } from "../metrics/consumer.ts";
import { MetricSeries, SluiceMetrics } from "../metrics/otel.ts";
import type { MeterProviderLike, StreamProcessorOptions } from "./processor_options.ts";

/** A processor's metrics; all undefined with `metrics: false`. */
export interface ProcessorMeters {
  /** Metrics on the MeterProvider (shared), if any. */
  metrics: SluiceMetrics | undefined;
  /** The series this processor's steps count into (the provider's, or its own). */
  series: MetricSeries | undefined;
  /** This processor's consumer meter, registered with `metrics`. */
  meter: ConsumerMeter | undefined;
}

/**
 * Builds a processor's metrics from its options (`metrics`, `meterProvider`,
 * `metricAttributes`); throws {@link ConfigurationError} when `metrics` is not a boolean.
 */
export function meterProcessor(
  options: Pick<StreamProcessorOptions<unknown>, "metrics" | "meterProvider" | "metricAttributes">,
  consumer: Consumer<unknown>,
  clock: Clock,
  counters: ConsumerCounters,
  backpressureSince: () => number | undefined,
): ProcessorMeters {
  if (options.metrics !== undefined && typeof options.metrics !== "boolean") {
    throw new ConfigurationError(
      `metrics must be true or false, got ${JSON.stringify(options.metrics)}; to choose ` +
        "where metrics go, use meterProvider",
    );
  }
  if (options.metrics === false) return { metrics: undefined, series: undefined, meter: undefined };
  const provider = options.meterProvider === undefined
    ? globalMeterProvider()
    : options.meterProvider ?? undefined;
  const attributes = { ...consumerAttributes(consumer), ...options.metricAttributes };
  const metrics = provider === undefined ? undefined : SluiceMetrics.for(provider as MeterProvider);
  const series = metrics?.series(attributes) ?? new MetricSeries(attributes);
  const meter = new ConsumerMeter(clock, counters, consumer, backpressureSince, attributes);
  metrics?.addConsumer(meter, series);
  return { metrics, series, meter };
}

/** Abort reason that ends the status log's timer (cheaper than the default DOMException). */
const WAIT_OVER = "wait over";

/** Logs `line()` every `everyMs` on `clock` (never when undefined or 0) until the returned function is called. */
export function startStatusLog(
  clock: Clock,
  everyMs: number | undefined,
  line: () => string,
): () => void {
  if (everyMs === undefined || everyMs <= 0) return () => {};
  const stop = new AbortController();
  (async () => {
    while (!stop.signal.aborted) {
      await clock.sleep(everyMs, stop.signal);
      if (stop.signal.aborted) return;
      console.log(line());
    }
  })().catch(() => {/* aborted */});
  return () => stop.abort(WAIT_OVER);
}

/** The loop has not advanced for `stuckForMs` while `doing`: counted (when metered) and said. */
export function reportStuck(
  meter: ConsumerMeter | undefined,
  stuckForMs: number,
  doing: string,
): void {
  if (meter !== undefined) meter.stuck++;
  console.warn(
    `sluice: the stream processor loop has not advanced for ${stuckForMs} ms; it is ${doing}. ` +
      `A consumer call, commit or pipeline join that never settles keeps it there.`,
  );
}

/**
 * Where every copy of `@opentelemetry/api` 1.x keeps its globals (`metrics.setGlobalMeterProvider`
 * writes the provider there): read directly, so the core needs no OpenTelemetry code at run time.
 */
const OTEL_API_GLOBAL = Symbol.for("opentelemetry.js.api.1");

/** The global MeterProvider, if one was registered (`metrics.setGlobalMeterProvider`). */
function globalMeterProvider(): MeterProviderLike | undefined {
  const api = (globalThis as Record<symbol, { metrics?: unknown } | undefined>)[OTEL_API_GLOBAL];
  const provider = api?.metrics as Partial<MeterProviderLike> | undefined;
  return typeof provider?.getMeter === "function" ? provider as MeterProviderLike : undefined;
}

/** `messaging.*` attributes from what the consumer says about itself. */
function consumerAttributes(consumer: Consumer<unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof consumer.messagingSystem === "string") {
    out["messaging.system"] = consumer.messagingSystem;
  }
  if (typeof consumer.group === "string") out["messaging.consumer.group.name"] = consumer.group;
  if (typeof consumer.clientId === "string") out["messaging.client.id"] = consumer.clientId;
  return out;
}
