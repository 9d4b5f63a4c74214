/**
 * Latency at low load: messages produced at 1 000 per second into the LocalBroker;
 * p50/p99/max from `produce` to the commit that covers the message. Baseline from the same
 * run: a plain loop that polls, runs the same function and commits after every batch.
 * Latencies are those of the first `seconds × 1 000` messages; production goes on at the
 * same rate until they are all committed.
 *
 * Run: `deno run -A bench/latency.ts [--quick] [--seconds N]`
 *
 * @module
 */
import {
  CommitOffsets,
  CommitPolicy,
  type Message,
  type Partition,
  RunTask,
  StreamProcessor,
} from "../mod.ts";
import { LocalBroker, type LocalConsumer } from "../backends/local/mod.ts";
import {
  type BenchFlags,
  fmtInt,
  machineNotes,
  parseFlags,
  percentile,
  printTable,
  sleep,
} from "./lib.ts";
import { PAYLOAD_BYTES } from "./inmemory.ts";

/** Messages produced per second. */
export const RATE = 1000;

/** Latencies of one run, in milliseconds. */
export interface LatencyResult {
  /** What ran. */
  name: string;
  /** Produce → commit latency of every message, in ms. */
  latencies: number[];
}

/**
 * Produces `RATE` messages per second for `seconds` into a 1-partition topic while
 * `consume` runs, and records, for every message, the time from `produce` to the commit
 * that covered it (wrapping the consumer's `commitOffsets`).
 */
async function measure(
  name: string,
  seconds: number,
  consume: (
    consumer: LocalConsumer<Uint8Array>,
    work: (payload: Uint8Array) => number,
    total: number,
  ) => { done: Promise<void>; stop: () => void },
): Promise<LatencyResult> {
  const broker = new LocalBroker<Uint8Array>();
  const topic = broker.createTopic("latency", 1);
  const total = Math.round(seconds * RATE);
  const producedAt = new Float64Array(total + 20 * RATE);
  const committedAt = new Float64Array(total);
  let committed = 0;
  const consumer = broker.getConsumer("latency");
  const commitOffsets = consumer.commitOffsets.bind(consumer);
  consumer.commitOffsets = async (): Promise<Map<Partition, number>> => {
    const r = await commitOffsets();
    const now = performance.now();
    for (const o of r.values()) {
      for (; committed < o && committed < total; committed++) committedAt[committed] = now;
    }
    return r;
  };
  let processed = 0;
  const work = (payload: Uint8Array) => {
    processed++;
    return payload.length;
  };
  const { done, stop } = consume(consumer, work, total);
  const payload = new Uint8Array(PAYLOAD_BYTES);
  const start = performance.now();
  let produced = 0;
  // Keep producing at the same rate until every measured message is committed, so the
  // last measured messages see the same conditions as the others (no end-of-run tail).
  const deadline = start + seconds * 1000 + 10_000;
  while (committed < total && performance.now() < deadline) {
    const due = Math.min(
      producedAt.length,
      Math.floor(((performance.now() - start) * RATE) / 1000) + 1,
    );
    for (; produced < due; produced++) {
      producedAt[produced] = performance.now();
      broker.produce(topic, payload);
    }
    await sleep(1);
  }
  stop();
  await done;
  if (committed < total || processed < total) {
    throw new Error(`${name}: committed ${committed}, processed ${processed} of ${total}`);
  }
  const latencies = Array.from(committedAt, (c, i) => c - producedAt[i]);
  return { name, latencies };
}

function sluice(commitPolicy: CommitPolicy) {
  return (
    consumer: LocalConsumer<Uint8Array>,
    work: (payload: Uint8Array) => number,
  ) => {
    const processor = new StreamProcessor<Uint8Array>({
      consumer,
      topics: ["latency"],
      commitPolicy,
      handleSignals: false,
      factory: {
        createWithPartitions: (commit) =>
          new RunTask((m: Message<Uint8Array>) => work(m.payload), new CommitOffsets(commit)),
      },
    });
    return { done: processor.run(), stop: () => processor.signalShutdown() };
  };
}

function floorLoop(consumer: LocalConsumer<Uint8Array>, work: (payload: Uint8Array) => number) {
  let stopped = false;
  const done = (async () => {
    consumer.subscribe(["latency"]);
    const highest = new Map<Partition, number>();
    while (!stopped) {
      const batch = await consumer.poll(100);
      if (batch.length === 0) continue;
      for (const v of batch) {
        work(v.payload);
        highest.set(v.partition, v.offset + 1);
      }
      consumer.stageOffsets(highest);
      await consumer.commitOffsets();
    }
    await consumer.close();
  })();
  return { done, stop: () => stopped = true };
}

/** Runs the latency benchmark and prints its table. */
export async function runLatency(flags: BenchFlags): Promise<LatencyResult[]> {
  const seconds = flags.seconds;
  console.log(
    `\n## Latency at low load: ${fmtInt(RATE)} messages/s for ${seconds} s, produce → commit\n`,
  );
  console.log(machineNotes());
  const results = [
    await measure(
      "floor: poll loop, same work, commit every batch",
      seconds,
      floorLoop,
    ),
    await measure(
      "Sluice RunTask → CommitOffsets, CommitPolicy.IMMEDIATE",
      seconds,
      sluice(CommitPolicy.IMMEDIATE),
    ),
    await measure(
      "Sluice RunTask → CommitOffsets, commit at most every 100 ms",
      seconds,
      sluice(new CommitPolicy({ intervalMs: 100 })),
    ),
  ];
  const floor = results[0].latencies.slice();
  const f50 = percentile(floor, 50);
  const f99 = percentile(floor, 99);
  const rows = results.map((r) => {
    const l = r.latencies;
    const p50 = percentile(l, 50);
    const p99 = percentile(l, 99);
    return [
      r.name,
      fmtInt(l.length),
      p50.toFixed(3),
      p99.toFixed(3),
      percentile(l, 100).toFixed(3),
      `+${(p50 - f50).toFixed(3)} / +${(p99 - f99).toFixed(3)}`,
    ];
  });
  printTable(
    "Produce → commit latency (ms)",
    ["run", "messages", "p50", "p99", "max", "p50 / p99 over floor"],
    rows,
  );
  console.log(
    "\nThe producer wakes on a 1 ms timer and writes the messages due; every consumer here " +
      "wakes on the broker's produce notification, so the floor is the event loop's own delay.",
  );
  if (flags.json) {
    const summary = results.map((r) => ({
      name: r.name,
      messages: r.latencies.length,
      p50: percentile(r.latencies, 50),
      p99: percentile(r.latencies, 99),
      max: percentile(r.latencies, 100),
    }));
    console.log(JSON.stringify({ bench: "latency", rate: RATE, seconds, results: summary }));
  }
  return results;
}

if (import.meta.main) {
  await runLatency(parseFlags(Deno.args));
}
