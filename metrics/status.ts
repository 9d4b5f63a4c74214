/**
 * The status view: what a running processor is doing, computed from the numbers its
 * metrics keep (no OpenTelemetry needed): per-step throughput and backpressure with its
 * origin, lag and progress per partition, and the bottleneck. Rates are over a sliding
 * window of about a second; {@link renderStatus} turns a status into a terminal screen.
 *
 * @module
 */
import type { Clock } from "../clock.ts";
import type { ConsumerMeter, PartitionProgress } from "./consumer.ts";
import type { StepStats } from "./step.ts";

/** {@link renderStatus} shows a partition's time without progress from this long (ms). */
export const STALL_SHOWN_MS = 5000;

/** Shortest window rates are computed over, in milliseconds. */
export const STATUS_WINDOW_MS = 1000;

/**
 * Share of the window the processor must spend holding a rejected message before a step
 * is named the bottleneck.
 */
export const BOTTLENECK_SHARE = 0.5;

/**
 * One step in a {@link ProcessorStatus}.
 *
 * @example Find the busiest step
 * ```ts
 * import type { StepStatus, StreamProcessor } from "@sluice/sluice";
 * function busiest(processor: StreamProcessor<string>): string | undefined {
 *   const steps: StepStatus[] = processor.status().steps;
 *   return steps.toSorted((a, b) => b.rejectingShare - a.rejectingShare)[0]?.name;
 * }
 * ```
 */
export interface StepStatus {
  /** The step's name (attribute `step`). */
  name: string;
  /** Messages it accepted so far. */
  messages: number;
  /** Messages it accepted per second over the window. */
  messagesPerSecond: number;
  /** Share of the window (0..1) it spent rejecting its upstream (its queue was full). */
  rejectingShare: number;
  /** Share of the window (0..1) its downstream spent rejecting it. */
  rejectedShare: number;
  /**
   * Where the pressure it saw in the window came from (the step that was full while
   * nothing below held it back), or null when it saw none.
   */
  origin: string | null;
}

/**
 * One assigned partition in a {@link ProcessorStatus}.
 *
 * @example List stalled partitions
 * ```ts
 * import type { PartitionStatus, StreamProcessor } from "@sluice/sluice";
 * function stalled(processor: StreamProcessor<string>): PartitionStatus[] {
 *   return processor.status().partitions.filter((p) => p.stalledMs > 60_000);
 * }
 * ```
 */
export interface PartitionStatus {
  /** Topic name. */
  topic: string;
  /** Partition index. */
  partition: number;
  /** Committed offset (next to read) as this processor last committed it. */
  committed: number;
  /** End offset minus committed offset; null when the consumer cannot tell. */
  lag: number | null;
  /** How long it has had lag while its committed offset did not move, in ms (0: moving). */
  stalledMs: number;
}

/**
 * What limits throughput now, per {@link ProcessorStatus.bottleneck}.
 *
 * @example Say what limits throughput
 * ```ts
 * import type { Bottleneck, StreamProcessor } from "@sluice/sluice";
 * function limit(processor: StreamProcessor<string>): string {
 *   const b: Bottleneck = processor.status().bottleneck;
 *   return b.kind === "none" ? "keeping up" : `${b.name}: ${b.reason}`;
 * }
 * ```
 */
export interface Bottleneck {
  /**
   * "step": a step of the pipeline (named); "consumer": the pipeline has room and lag
   * grows, so fetching from the broker is the limit ("consumer/broker"); "none": keeping up.
   */
  kind: "step" | "consumer" | "none";
  /** The step's name, "consumer/broker", or "none". */
  name: string;
  /** One sentence saying why. */
  reason: string;
}

/**
 * A processor's state, from {@link StreamProcessor.status}. JSON-serialisable.
 *
 * @example Summarise a status
 * ```ts
 * import type { ProcessorStatus, StreamProcessor } from "@sluice/sluice";
 * function summary(processor: StreamProcessor<string>): string {
 *   const s: ProcessorStatus = processor.status();
 *   return `${s.state}, ${s.polledPerSecond.toFixed(0)} msg/s, lag ${s.lag ?? "unknown"}`;
 * }
 * ```
 */
export interface ProcessorStatus {
  /** Clock reading (ms) the status was taken at. */
  at: number;
  /** Length of the window the rates cover, in ms (0 right after the processor was built). */
  windowMs: number;
  /**
   * One word: "stopped" (not running), "rebalancing" (partitions being revoked or not
   * yet assigned), "backpressured" (holding a message the pipeline rejected; `paused`
   * says whether fetching is paused as well), or "running".
   */
  state: "stopped" | "rebalancing" | "backpressured" | "running";
  /** Since when (ms ago) the current rebalance lasts; null when none is under way. */
  rebalancingForMs: number | null;
  /** True while a rejected message is held (the pipeline is full). */
  backpressured: boolean;
  /** How long (ms) the current backpressure lasts; null when not backpressured. */
  backpressuredForMs: number | null;
  /**
   * True while every assigned partition is paused because backpressure lasted
   * `pauseAfterMs`: always together with `backpressured` (paused is how a long
   * backpressure spares the broker), never instead of it.
   */
  paused: boolean;
  /** Messages polled and not yet accepted by the pipeline. */
  heldMessages: number;
  /** Loop iterations so far. */
  iterations: number;
  /** Messages received from the consumer per second over the window. */
  polledPerSecond: number;
  /** Share of the window (0..1) spent holding a rejected message. */
  backpressureShare: number;
  /** Sum of the partitions' lag; null when no partition's lag is known. */
  lag: number | null;
  /** Change of `lag` per second over the window; null when unknown. */
  lagPerSecond: number | null;
  /** Steps, first to last (empty when metrics are off). */
  steps: StepStatus[];
  /** Assigned partitions. */
  partitions: PartitionStatus[];
  /** What limits throughput now. */
  bottleneck: Bottleneck;
}

/** What {@link StatusWindow.status} needs from the processor at one moment. */
export interface StatusInput {
  /** Whether `run()` is running. */
  running: boolean;
  /** When the current rebalance began (clock ms), if one is under way. */
  rebalancingSince: number | undefined;
  /** When the current backpressure began (clock ms), if any. */
  backpressureSince: number | undefined;
  /** Whether all assigned partitions are paused. */
  paused: boolean;
  /** Messages held. */
  heldMessages: number;
  /** Loop iterations. */
  iterations: number;
  /** Messages polled. */
  messagesPolled: number;
}

interface StepSnapshot {
  messages: number;
  sendMs: number;
  receiveMs: number;
  /** Send + receive time by origin. */
  byOrigin: Map<string, number>;
  /** Send time whose origin is the step itself. */
  ownMs: number;
}

interface Snapshot {
  at: number;
  polled: number;
  backpressureMs: number;
  lag: number | null;
  steps: Map<string, StepSnapshot>;
}

/**
 * Keeps a few snapshots of a processor's totals so that a status can give rates over the
 * last second or so, whoever asks and however often.
 *
 * @example Rates over a window
 * ```ts
 * import { ManualClock } from "@sluice/sluice";
 * import { ConsumerMeter } from "./consumer.ts";
 * import { StatusWindow } from "./status.ts";
 * const clock = new ManualClock(0);
 * const counters = { iterations: 0, messagesPolled: 0, pauses: 0, resumes: 0, backpressureMs: 0, invalidMessages: 0 };
 * const window = new StatusWindow(clock, new Map(), new ConsumerMeter(clock, counters, {}));
 * counters.messagesPolled = 500;
 * await clock.advance(1000);
 * const input = { running: true, rebalancingSince: undefined, backpressureSince: undefined, paused: false, heldMessages: 0, iterations: 1, messagesPolled: 500 };
 * console.log(window.status(input).polledPerSecond); // 500
 * ```
 */
export class StatusWindow {
  readonly #clock: Clock;
  readonly #steps: ReadonlyMap<string, StepStats>;
  readonly #meter: ConsumerMeter | undefined;
  #snapshots: Snapshot[];

  /** Starts the window now, from zero totals. */
  constructor(
    clock: Clock,
    steps: ReadonlyMap<string, StepStats>,
    meter: ConsumerMeter | undefined,
  ) {
    this.#clock = clock;
    this.#steps = steps;
    this.#meter = meter;
    this.#snapshots = [{
      at: clock.now(),
      polled: 0,
      backpressureMs: 0,
      lag: null,
      steps: new Map(),
    }];
  }

  /** The status now. */
  status(input: StatusInput): ProcessorStatus {
    const now = this.#clock.now();
    const partitions = (this.#meter?.partitions() ?? []).map(partitionStatus);
    let lag: number | null = null;
    for (const p of partitions) if (p.lag !== null) lag = (lag ?? 0) + p.lag;
    const current = this.#snapshot(now, input.messagesPolled, lag);
    const base = this.#base(now);
    this.#keep(current, now);
    const windowMs = Math.max(0, now - base.at);
    const perSecond = (d: number) => windowMs > 0 ? Math.max(0, d) * 1000 / windowMs : 0;
    const share = (d: number) => windowMs > 0 ? Math.min(1, Math.max(0, d / windowMs)) : 0;

    const steps: StepStatus[] = [];
    let own: { name: string; ms: number } | undefined;
    for (const [name, s] of current.steps) {
      const b = base.steps.get(name);
      let origin: string | null = null;
      let best = 0;
      for (const [o, ms] of s.byOrigin) {
        const d = ms - (b?.byOrigin.get(o) ?? 0);
        if (d > best) {
          best = d;
          origin = o;
        }
      }
      const ownMs = s.ownMs - (b?.ownMs ?? 0);
      if (ownMs > 0 && (own === undefined || ownMs > own.ms)) own = { name, ms: ownMs };
      steps.push({
        name,
        messages: s.messages,
        messagesPerSecond: perSecond(s.messages - (b?.messages ?? 0)),
        rejectingShare: share(s.sendMs - (b?.sendMs ?? 0)),
        rejectedShare: share(s.receiveMs - (b?.receiveMs ?? 0)),
        origin,
      });
    }
    const backpressureShare = share(current.backpressureMs - base.backpressureMs);
    const lagPerSecond = lag === null || base.lag === null || windowMs === 0
      ? null
      : (lag - base.lag) * 1000 / windowMs;

    let bottleneck: Bottleneck;
    const pct = (x: number) => `${Math.round(x * 100)}%`;
    if (backpressureShare >= BOTTLENECK_SHARE && own !== undefined) {
      bottleneck = {
        kind: "step",
        name: own.name,
        reason: `the pipeline was full ${pct(backpressureShare)} of the window; "${own.name}" ` +
          `rejected its upstream ${pct(share(own.ms))} of it while nothing below held it back`,
      };
    } else if (backpressureShare >= BOTTLENECK_SHARE) {
      const origins = steps.map((s) => s.origin).filter((o) => o !== null);
      const name = origins.length > 0 ? origins[origins.length - 1]! : "pipeline";
      bottleneck = {
        kind: "step",
        name,
        reason: `the pipeline was full ${pct(backpressureShare)} of the window (the origin ` +
          `is a step without metrics)`,
      };
    } else if (lagPerSecond !== null && lagPerSecond > 0 && lag !== null && lag > 0) {
      bottleneck = {
        kind: "consumer",
        name: "consumer/broker",
        reason: `the pipeline had room ${pct(1 - backpressureShare)} of the window while lag ` +
          `grew by ${Math.round(lagPerSecond)}/s: fetching is the limit`,
      };
    } else {
      bottleneck = { kind: "none", name: "none", reason: "keeping up: lag is not growing" };
    }

    const rebalancing = input.rebalancingSince !== undefined;
    const backpressured = input.backpressureSince !== undefined;
    return {
      at: now,
      windowMs,
      state: !input.running
        ? "stopped"
        : rebalancing
        ? "rebalancing"
        : backpressured
        ? "backpressured"
        : "running",
      rebalancingForMs: rebalancing ? Math.max(0, now - input.rebalancingSince!) : null,
      backpressured,
      backpressuredForMs: backpressured ? Math.max(0, now - input.backpressureSince!) : null,
      paused: input.paused,
      heldMessages: input.heldMessages,
      iterations: input.iterations,
      polledPerSecond: perSecond(current.polled - base.polled),
      backpressureShare,
      lag,
      lagPerSecond,
      steps,
      partitions,
      bottleneck,
    };
  }

  #snapshot(now: number, polled: number, lag: number | null): Snapshot {
    const steps = new Map<string, StepSnapshot>();
    for (const [name, s] of this.#steps) {
      const byOrigin = new Map<string, number>();
      let sendMs = 0;
      let receiveMs = 0;
      let ownMs = 0;
      for (const [o, e] of s.send) {
        const ms = e.timeMs(now);
        sendMs += ms;
        if (o === name) ownMs += ms;
        byOrigin.set(o, (byOrigin.get(o) ?? 0) + ms);
      }
      for (const [o, e] of s.receive) {
        const ms = e.timeMs(now);
        receiveMs += ms;
        byOrigin.set(o, (byOrigin.get(o) ?? 0) + ms);
      }
      steps.set(name, { messages: s.messages, sendMs, receiveMs, byOrigin, ownMs });
    }
    const backpressureMs = this.#meter?.backpressureMs() ?? 0;
    return { at: now, polled, backpressureMs, lag, steps };
  }

  /** The newest snapshot at least a window old, else the oldest. */
  #base(now: number): Snapshot {
    const list = this.#snapshots;
    for (let i = list.length - 1; i >= 0; i--) {
      if (now - list[i].at >= STATUS_WINDOW_MS) return list[i];
    }
    return list[0];
  }

  #keep(current: Snapshot, now: number): void {
    const list = this.#snapshots;
    while (list.length > 1 && now - list[1].at >= STATUS_WINDOW_MS) list.shift();
    if (current.at - list[list.length - 1].at >= STATUS_WINDOW_MS) list.push(current);
  }
}

function partitionStatus(p: PartitionProgress): PartitionStatus {
  return {
    topic: p.partition.topic.name,
    partition: p.partition.index,
    committed: p.committed,
    lag: p.lag ?? null,
    stalledMs: p.stalledMs,
  };
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

/**
 * One line saying what the state is: "backpressured for 3.2 s, fetching paused" rather
 * than "paused" and "backpressured" side by side.
 *
 * @example Describe the state in words
 * ```ts
 * import type { StreamProcessor } from "@sluice/sluice";
 * import { describeState } from "./status.ts";
 * function state(processor: StreamProcessor<string>): string {
 *   return describeState(processor.status()); // e.g. "backpressured for 3.2 s, fetching paused"
 * }
 * ```
 */
export function describeState(s: ProcessorStatus): string {
  switch (s.state) {
    case "stopped":
      return "stopped";
    case "rebalancing":
      return `rebalancing for ${seconds(s.rebalancingForMs ?? 0)}`;
    case "backpressured":
      return `backpressured for ${seconds(s.backpressuredForMs ?? 0)}` +
        (s.paused ? ", fetching paused" : ", still fetching");
    default:
      return "running";
  }
}

function pad(text: string, width: number, right = false): string {
  return right ? text.padStart(width) : text.padEnd(width);
}

function percent(x: number): string {
  return `${Math.round(x * 100)}%`;
}

/**
 * Renders a status as a terminal screen: a header with the state, one row per step
 * (throughput, share of time rejecting its upstream and rejected by its downstream, where
 * the pressure comes from), the bottleneck, and lag per partition.
 *
 * @example Print the status screen
 * ```ts
 * import type { StreamProcessor } from "@sluice/sluice";
 * import { renderStatus } from "@sluice/sluice/status";
 * function show(processor: StreamProcessor<string>): void {
 *   console.log(renderStatus(processor.status()));
 * }
 * ```
 */
export function renderStatus(s: ProcessorStatus): string {
  const lines: string[] = [];
  const lag = s.lag === null ? "lag unknown" : `lag ${s.lag}` +
    (s.lagPerSecond === null
      ? ""
      : ` (${s.lagPerSecond >= 0 ? "+" : ""}${Math.round(s.lagPerSecond)}/s)`);
  lines.push(
    `state: ${describeState(s)} · polled ${Math.round(s.polledPerSecond)} msg/s · ` +
      `held ${s.heldMessages} · ${lag} · window ${seconds(s.windowMs)}`,
  );
  if (s.steps.length > 0) {
    const w = Math.max(8, ...s.steps.map((x) => x.name.length + 2));
    lines.push(
      `${pad("step", w)}${pad("msg/s", 9, true)}  ${pad("rejecting upstream", 18, true)}  ` +
        `${pad("rejected by next", 16, true)}  pressure from`,
    );
    for (const x of s.steps) {
      const origin = x.origin === null
        ? "—"
        : x.origin === x.name
        ? `${x.origin} (itself)`
        : x.origin;
      lines.push(
        `${pad(x.name, w)}${pad(String(Math.round(x.messagesPerSecond)), 9, true)}  ` +
          `${pad(percent(x.rejectingShare), 18, true)}  ${
            pad(percent(x.rejectedShare), 16, true)
          }  ` +
          origin,
      );
    }
  }
  lines.push(`bottleneck: ${s.bottleneck.name} (${s.bottleneck.reason})`);
  if (s.partitions.length > 0) {
    const parts = s.partitions.map((p) =>
      `${p.topic}/${p.partition} ${p.lag ?? "?"}` +
      (p.stalledMs >= STALL_SHOWN_MS ? ` (no progress for ${seconds(p.stalledMs)})` : "")
    );
    lines.push(`lag by partition: ${parts.join(", ")}`);
  }
  return lines.join("\n");
}

/**
 * The status in one log line (for a periodic log, see the processor's `statusLogMs`).
 *
 * @example Log a status line
 * ```ts
 * import type { StreamProcessor } from "@sluice/sluice";
 * import { renderStatusLine } from "@sluice/sluice/status";
 * function log(processor: StreamProcessor<string>): void {
 *   console.log(renderStatusLine(processor.status()));
 * }
 * ```
 */
export function renderStatusLine(s: ProcessorStatus): string {
  const steps = s.steps.map((x) =>
    `${x.name} ${Math.round(x.messagesPerSecond)}/s` +
    (x.rejectingShare > 0 ? ` full ${percent(x.rejectingShare)}` : "")
  ).join(", ");
  return `sluice: ${describeState(s)}; polled ${Math.round(s.polledPerSecond)} msg/s; ` +
    (steps ? `steps: ${steps}; ` : "") +
    `lag ${s.lag ?? "unknown"}; bottleneck: ${s.bottleneck.name}`;
}
