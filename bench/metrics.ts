/**
 * The cost of metrics: the same in-memory pipelines with metrics off (no MeterProvider)
 * and on (an SDK MeterProvider whose reader collects every 250 ms, a far shorter interval
 * than any real exporter uses), interleaved in one run, reported as a ratio. The budget is
 * a cost under 5%.
 *
 * Run: `deno run -A bench/metrics.ts [--quick] [--messages N] [--repeat N] [--json]`
 *
 * @module
 */
import {
  InMemoryMetricExporter,
  MeterProvider,
  PeriodicExportingMetricReader,
} from "@opentelemetry/sdk-metrics";
import { AggregationTemporality } from "@opentelemetry/sdk-metrics";
import {
  type Commit,
  CommitOffsets,
  CommitPolicy,
  type Message,
  type ProcessingStrategy,
  RunTask,
  StreamProcessor,
} from "../mod.ts";
import type { LocalBroker } from "../backends/local/mod.ts";
import type { Topic } from "../types.ts";
import { makeBroker } from "./inmemory.ts";
import {
  cpuSeconds,
  fmtRate,
  fmtRatio,
  machineNotes,
  median,
  parseFlags,
  printTable,
  verdict,
} from "./lib.ts";

/** Most acceptable slowdown with metrics on. */
export const BUDGET = 0.05;
/** How often the bench's reader collects (real exporters: 10–60 s). */
const COLLECT_EVERY_MS = 250;

interface Variant {
  name: string;
  partitions: number;
  /** RunTask steps before CommitOffsets. */
  runTasks: number;
  /** Messages per consumer poll (small polls stress the per-iteration cost). */
  maxPoll: number;
}

const VARIANTS: Variant[] = [
  { name: "RunTask → CommitOffsets, 1 partition", partitions: 1, runTasks: 1, maxPoll: 1000 },
  { name: "5 × RunTask → CommitOffsets, 8 partitions", partitions: 8, runTasks: 5, maxPoll: 1000 },
  { name: "RunTask → CommitOffsets, polls of 16", partitions: 1, runTasks: 1, maxPoll: 16 },
];

let groupSeq = 0;

function pipeline(
  v: Variant,
  commit: Commit,
  onMessage: (m: Message<Uint8Array>) => number,
): ProcessingStrategy<Uint8Array> {
  // work (the user function, on the raw payload) → pass_1 … pass_n (hand the result on) → commit
  let next: ProcessingStrategy<number> = new CommitOffsets<number>(commit, { name: "commit" });
  for (let i = v.runTasks - 1; i >= 1; i--) {
    next = new RunTask((m: Message<number>) => m.payload, next, { name: `pass_${i}` });
  }
  return new RunTask(onMessage, next, { name: "work" });
}

/** One measured run. */
interface Sample {
  /** Messages per wall-clock second. */
  rate: number;
  /** CPU nanoseconds (user + system, whole process) per message. */
  cpuNs: number;
}

/** Runs the processor over every message once. */
async function run(
  broker: LocalBroker<Uint8Array>,
  topic: Topic,
  total: number,
  v: Variant,
  metricsOn: boolean,
): Promise<Sample> {
  let provider: MeterProvider | undefined;
  if (metricsOn) {
    const reader = new PeriodicExportingMetricReader({
      exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE),
      exportIntervalMillis: COLLECT_EVERY_MS,
    });
    provider = new MeterProvider({ readers: [reader] });
  }
  let processed = 0;
  let bytes = 0;
  const processor: StreamProcessor<Uint8Array> = new StreamProcessor<Uint8Array>({
    consumer: broker.getConsumer(`metrics-bench-${++groupSeq}`, { maxPollMessages: v.maxPoll }),
    topics: [topic],
    commitPolicy: CommitPolicy.ONCE_PER_SECOND,
    // The topic holds exactly what a run consumes: a longer poll timeout would add a random
    // idle tail (the last poll waiting on an exhausted topic) to the wall-clock figures.
    pollTimeoutMs: 1,
    handleSignals: false,
    meterProvider: provider,
    factory: {
      createWithPartitions: (commit) =>
        pipeline(v, commit, (m) => {
          bytes += m.payload.length;
          if (++processed === total) processor.signalShutdown();
          return m.payload.length;
        }),
    },
  });
  const cpu0 = cpuSeconds();
  const start = performance.now();
  await processor.run();
  const seconds = (performance.now() - start) / 1000;
  const cpu = cpuSeconds() - cpu0;
  await provider?.shutdown();
  // Shutdown joins what is in flight, so a run over part of the topic may process a bit more.
  if (processed < total || bytes === 0) throw new Error(`processed ${processed} of ${total}`);
  return { rate: total / seconds, cpuNs: (cpu * 1e9) / total };
}

/** One variant's rates with metrics off and on, measured alternately. */
export interface MetricsCostResult {
  /** The variant. */
  name: string;
  /** Messages per second, metrics off, every repeat. */
  off: number[];
  /** Messages per second, metrics on, every repeat. */
  on: number[];
  /** CPU ns per message, metrics off, every repeat. */
  cpuOff: number[];
  /** CPU ns per message, metrics on, every repeat. */
  cpuOn: number[];
  /** Extra CPU per message with metrics on: min(cpuOn) / min(cpuOff) − 1. */
  cost: number;
  /** The same from the medians. */
  medianCost: number;
  /** Wall-clock slowdown: 1 − median(on) / median(off). */
  wallCost: number;
}

async function main(args: string[]): Promise<void> {
  const flags = parseFlags(args);
  const total = flags.messages;
  // At least 7 alternations: single runs of a few hundred ms are noisy on a shared machine.
  const repeat = Math.max(flags.repeat, flags.quick ? 3 : 7);
  console.log(`## Metrics cost (in-memory, ${total.toLocaleString()} messages per run)`);
  console.log(
    `command: deno run -A bench/metrics.ts ${args.join(" ")}`.trimEnd(),
  );
  console.log(machineNotes());
  const results: MetricsCostResult[] = [];
  for (const v of VARIANTS) {
    const { broker, topic } = makeBroker(total, v.partitions);
    // Warm-up: the first runs of each path are JIT-compiling and several times slower.
    for (let i = 0; i < 2; i++) {
      await run(broker, topic, total, v, true);
      await run(broker, topic, total, v, false);
    }
    const off: Sample[] = [];
    const on: Sample[] = [];
    for (let i = 0; i < repeat; i++) {
      // Alternate the order so drift (thermal, other processes) hits both sides alike.
      if (i % 2 === 0) {
        off.push(await run(broker, topic, total, v, false));
        on.push(await run(broker, topic, total, v, true));
      } else {
        on.push(await run(broker, topic, total, v, true));
        off.push(await run(broker, topic, total, v, false));
      }
    }
    const r: MetricsCostResult = {
      name: v.name,
      off: off.map((x) => x.rate),
      on: on.map((x) => x.rate),
      cpuOff: off.map((x) => x.cpuNs),
      cpuOn: on.map((x) => x.cpuNs),
      cost: 0,
      medianCost: 0,
      wallCost: 0,
    };
    r.cost = Math.min(...r.cpuOn) / Math.min(...r.cpuOff) - 1;
    r.medianCost = median(r.cpuOn) / median(r.cpuOff) - 1;
    r.wallCost = 1 - median(r.on) / median(r.off);
    results.push(r);
  }
  printTable(
    `metrics off vs on (${repeat} alternations, reader collecting every ${COLLECT_EVERY_MS} ms)`,
    [
      "pipeline",
      "off: rate",
      "on: rate",
      "off: CPU/msg",
      "on: CPU/msg",
      "CPU cost (min)",
      "CPU cost (median)",
      "wall cost",
      `budget < ${BUDGET * 100}%`,
    ],
    results.map((r) => [
      r.name,
      fmtRate(median(r.off)),
      fmtRate(median(r.on)),
      `${Math.min(...r.cpuOff).toFixed(0)} ns`,
      `${Math.min(...r.cpuOn).toFixed(0)} ns`,
      fmtRatio(r.cost, true),
      fmtRatio(r.medianCost, true),
      fmtRatio(r.wallCost, true),
      verdict(r.cost < BUDGET),
    ]),
  );
  console.log(
    "\nrates: medians. CPU/msg: process CPU time (user + system) per message, the least of the\n" +
      "runs, which other load on the machine can only inflate. CPU cost = extra CPU per message\n" +
      "with metrics on, from the least (the verdict) and from the medians. wall cost =\n" +
      "1 − rate on / rate off. Negative values mean the difference is below the noise.",
  );
  if (flags.json) console.log(JSON.stringify({ metrics: results }));
}

if (import.meta.main) await main(Deno.args);
