/**
 * Live view: a pipeline with a deliberately slow step, and every second a table per step
 * (throughput, share of time backpressured, where the pressure comes from) plus consumer
 * lag, computed from Sluice's OpenTelemetry metrics. Finishes by itself after ~6 s.
 *
 * Run: `deno run -A examples/live_view.ts`
 *
 * Pipeline: parse (RunTask) → enrich (RunTask) → store (RunTaskAsync, 5 ms per message,
 * 8 at a time: about 1 500 msg/s) → commit. The producer writes 4 000 msg/s, so `store`
 * is the bottleneck: it sends backpressure that originates with itself, and every step
 * above it reports `store` as the origin, while lag grows.
 */
import {
  type DataPoint,
  type Histogram,
  MeterProvider,
  type MetricData,
  MetricReader,
} from "@opentelemetry/sdk-metrics";
import {
  CommitOffsets,
  CommitPolicy,
  type Message,
  RunTask,
  RunTaskAsync,
  StreamProcessor,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";

const RUN_SECONDS = 6;
const PRODUCE_PER_SECOND = 4_000;
const STORE_MS = 5;
const STORE_CONCURRENCY = 8;

/** The SDK's reader, collected by hand once per second. */
class LiveReader extends MetricReader {
  protected onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

// ---- the pipeline ----------------------------------------------------------------------

interface Order {
  id: number;
  amount: number;
  region?: string;
}

const broker = new LocalBroker<string>();
const topic = broker.createTopic("orders", 4);
let nextId = 0;
const producer = setInterval(() => {
  for (let i = 0; i < PRODUCE_PER_SECOND / 50; i++) {
    broker.produce(topic, JSON.stringify({ id: nextId, amount: nextId++ % 100 }));
  }
}, 20);

const reader = new LiveReader();
const meterProvider = new MeterProvider({ readers: [reader] });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const processor = new StreamProcessor<string>({
  consumer: broker.getConsumer("live-view"),
  topics: [topic],
  commitPolicy: new CommitPolicy({ intervalMs: 200 }),
  meterProvider,
  stuckTimeoutMs: 5_000,
  handleSignals: false,
  factory: {
    createWithPartitions: (commit) =>
      new RunTask(
        (m: Message<string>) => JSON.parse(m.payload) as Order,
        new RunTask(
          (m: Message<Order>) => ({ ...m.payload, region: m.payload.id % 2 ? "eu" : "us" }),
          new RunTaskAsync(
            async (_m: Message<Order>) => {
              await sleep(STORE_MS); // the deliberately slow write
              return true;
            },
            new CommitOffsets(commit, { name: "commit" }),
            { name: "store", concurrency: STORE_CONCURRENCY, highWaterMark: 256 },
          ),
          { name: "enrich", highWaterMark: 256 },
        ),
        { name: "parse", highWaterMark: 256 },
      ),
  },
});

// ---- reading the metrics ---------------------------------------------------------------

type Attrs = Record<string, unknown>;
type Snapshot = Map<string, MetricData>;

async function collect(): Promise<Snapshot> {
  const { resourceMetrics } = await reader.collect();
  const out: Snapshot = new Map();
  for (const s of resourceMetrics.scopeMetrics) {
    for (const m of s.metrics) out.set(m.descriptor.name, m);
  }
  return out;
}

/** Sum of the numeric points of `name` whose attributes match `where`, grouped by `by`. */
function sumBy(snap: Snapshot, name: string, by: string, where: Attrs = {}): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of (snap.get(name)?.dataPoints ?? []) as DataPoint<number>[]) {
    if (!Object.entries(where).every(([k, v]) => p.attributes[k] === v)) continue;
    const key = String(p.attributes[by] ?? "");
    out.set(key, (out.get(key) ?? 0) + p.value);
  }
  return out;
}

function total(snap: Snapshot, name: string): number {
  let t = 0;
  for (const p of (snap.get(name)?.dataPoints ?? []) as DataPoint<number>[]) t += p.value;
  return t;
}

function histogramTotals(snap: Snapshot, name: string): { count: number; sum: number } {
  let count = 0;
  let sum = 0;
  for (const p of (snap.get(name)?.dataPoints ?? []) as DataPoint<Histogram>[]) {
    count += p.value.count;
    sum += p.value.sum ?? 0;
  }
  return { count, sum };
}

const pct = (ms: number, elapsedMs: number) =>
  `${Math.min(100, Math.max(0, (100 * ms) / elapsedMs)).toFixed(0).padStart(3)}%`;

/** The origin with the most backpressure time in the interval, if any is significant. */
function mainOrigin(
  now: Snapshot,
  before: Snapshot,
  step: string,
  elapsedMs: number,
): string {
  const delta = new Map<string, number>();
  for (
    const name of ["sluice.step.send_backpressure_time", "sluice.step.receive_backpressure_time"]
  ) {
    const a = sumBy(now, name, "origin", { step });
    const b = sumBy(before, name, "origin", { step });
    for (const [origin, v] of a) {
      delta.set(origin, (delta.get(origin) ?? 0) + v - (b.get(origin) ?? 0));
    }
  }
  let best = "";
  let bestMs = 0;
  for (const [origin, ms] of delta) {
    if (ms > bestMs) [best, bestMs] = [origin, ms];
  }
  return bestMs >= elapsedMs * 0.01 ? (best === step ? `${best} (itself)` : best) : "—";
}

function render(now: Snapshot, before: Snapshot, elapsedMs: number, second: number): string {
  const lines: string[] = [];
  const messages = sumBy(now, "sluice.step.messages", "step");
  const messagesBefore = sumBy(before, "sluice.step.messages", "step");
  const send = sumBy(now, "sluice.step.send_backpressure_time", "step");
  const sendBefore = sumBy(before, "sluice.step.send_backpressure_time", "step");
  const recv = sumBy(now, "sluice.step.receive_backpressure_time", "step");
  const recvBefore = sumBy(before, "sluice.step.receive_backpressure_time", "step");
  lines.push(`t=${second}s  (window ${elapsedMs.toFixed(0)} ms)`);
  lines.push("step     msg/s   rejecting upstream   rejected by downstream   pressure from");
  for (const step of ["parse", "enrich", "store", "commit"]) {
    const rate = ((messages.get(step) ?? 0) - (messagesBefore.get(step) ?? 0)) * 1000 /
      elapsedMs;
    const s = (send.get(step) ?? 0) - (sendBefore.get(step) ?? 0);
    const r = (recv.get(step) ?? 0) - (recvBefore.get(step) ?? 0);
    lines.push(
      `${step.padEnd(7)} ${rate.toFixed(0).padStart(6)}   ${pct(s, elapsedMs).padStart(18)}   ${
        pct(r, elapsedMs).padStart(22)
      }   ${mainOrigin(now, before, step, elapsedMs)}`,
    );
  }
  const polled =
    (total(now, "sluice.consumer.messages") - total(before, "sluice.consumer.messages")) *
    1000 / elapsedMs;
  const bp = total(now, "sluice.consumer.backpressure.time") -
    total(before, "sluice.consumer.backpressure.time");
  const lag = sumBy(now, "sluice.consumer.lag", "partition");
  const lat = histogramTotals(now, "sluice.consumer.latency");
  const latBefore = histogramTotals(before, "sluice.consumer.latency");
  const latMs = lat.count > latBefore.count
    ? ((lat.sum - latBefore.sum) / (lat.count - latBefore.count)).toFixed(0) + " ms"
    : "—";
  lines.push(
    `consumer ${polled.toFixed(0)} msg/s polled, backpressured ${pct(bp, elapsedMs).trim()}, ` +
      `pauses ${total(now, "sluice.consumer.pause")}, commit latency (timestamp → commit) ${latMs}`,
  );
  const lagTotal = [...lag.values()].reduce((a, b) => a + b, 0);
  lines.push(
    `lag ${lagTotal} messages  (` +
      [...lag].sort().map(([p, l]) => `${topic.name}/${p}: ${l}`).join(", ") + ")",
  );
  return lines.join("\n");
}

// ---- run ---------------------------------------------------------------------------------

const tty = Deno.stdout.isTerminal();
const running = processor.run();
let before = await collect();
let last = performance.now();
for (let second = 1; second <= RUN_SECONDS; second++) {
  await sleep(1000);
  const now = await collect();
  const t = performance.now();
  const table = render(now, before, t - last, second);
  if (tty) console.log("\x1b[2J\x1b[H" + table);
  else console.log(table + "\n");
  before = now;
  last = t;
}
clearInterval(producer);
processor.signalShutdown();
await running;
await meterProvider.shutdown();
console.log(
  `\nstopped after ${RUN_SECONDS} s: produced ${nextId}, polled ${processor.stats.messagesPolled}, ` +
    `committed ${[...broker.committed("live-view").values()].reduce((a, b) => a + b, 0)}`,
);
