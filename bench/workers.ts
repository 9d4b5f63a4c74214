/**
 * When does `RunTaskInWorkers` beat `RunTask`? A CPU-bound function (a hash loop
 * calibrated to a given cost per message) runs through LocalBroker → step → CommitOffsets
 * under the StreamProcessor, on the main thread (`RunTask`) and on a pool of Web Workers,
 * side by side in one run, for several costs per message. Wall time runs from `run()` to
 * the last offset committed, worker start-up included.
 *
 * Run: `deno run -A bench/workers.ts [--quick] [--repeat N] [--costs 5,50,300,1000] [--bytes N]
 * [--records [--fetch-bytes N]]`
 *
 * `--bytes N` makes every payload a `Uint8Array` of N bytes (at least 8) holding the job, the
 * way Kafka payloads are bytes: the LocalBroker hands out views of one buffer per read, and
 * the worker function decodes the job from them (`hashBytes`). With `--records` too, every
 * payload is a record shaped like a consumed `KafkaPayload` (`key`, `value` holding those N
 * bytes, `headers`, `timestamp`) whose bytes are slices of one 1 MiB buffer, as kafkajs
 * slices a fetch response (`maxBytesPerPartition` is 1 MiB by default) (`hashRecord`);
 * `--fetch-bytes N` slices them from N-byte buffers instead (a compressed record batch).
 * Default: `Job` objects.
 *
 * Throughput and ratios use the best of the interleaved runs (the least disturbed by other
 * processes); the median wall time is shown next to it.
 *
 * This file is also the worker module: the workers import it and call `hashLoop`.
 *
 * @module
 */
import process from "node:process";
import {
  type Commit,
  CommitOffsets,
  CommitPolicy,
  type Message,
  type ProcessingStrategy,
  RunTask,
  RunTaskInWorkers,
  StreamProcessor,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";

/** One message's work: `rounds` passes of FNV-1a over a short text. */
export interface Job {
  seed: number;
  rounds: number;
}

/** The CPU-bound user function (runs on the main thread or in a worker). */
export function hashLoop(job: Job): number {
  // Read the fields once: objects that arrive by structured clone can make property loads
  // in a hot loop much slower in a worker than on the main thread (measured: ~2×).
  const rounds = job.rounds;
  let h = 0x811c9dc5 ^ job.seed;
  const text = "the quick brown fox jumps over the lazy dog";
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  }
  return h >>> 0;
}

/** {@link hashLoop} on a job encoded by {@link encodeJob}. */
export function hashBytes(payload: Uint8Array): number {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  return hashLoop({ seed: view.getUint32(0, true), rounds: view.getUint32(4, true) });
}

/** A consumed Kafka record's shape (`KafkaPayload`), the job in its `value`. */
export interface JobRecord {
  key: Uint8Array;
  value: Uint8Array;
  headers: Record<string, Uint8Array>;
  timestamp: number;
}

/** {@link hashBytes} on a record's value. */
export function hashRecord(record: JobRecord): number {
  return hashBytes(record.value);
}

/** `--fetch-bytes N`: the size of the buffers `--records` slices its records from (1 MiB). */
const FETCH_BYTES = (() => {
  const at = Deno.args.indexOf("--fetch-bytes");
  const n = at < 0 ? 2 ** 20 : Number(Deno.args[at + 1]);
  if (!(Number.isInteger(n) && n > 0)) {
    throw new Error(`--fetch-bytes must be a positive integer, got ${Deno.args[at + 1]}`);
  }
  return n;
})();

/**
 * Records of `size`-byte jobs, with an 8-byte key and header, sliced from 1 MiB buffers as
 * the records of a fetch response are.
 */
function jobRecords(jobs: Job[], size: number, fetchBytes = 2 ** 20): JobRecord[] {
  const perFetch = Math.max(1, Math.floor(fetchBytes / (size + 16)));
  const out: JobRecord[] = [];
  for (let start = 0; start < jobs.length; start += perFetch) {
    const n = Math.min(perFetch, jobs.length - start);
    const fetched = new Uint8Array(n * (size + 16));
    for (let i = 0; i < n; i++) {
      const at = i * (size + 16);
      const value = fetched.subarray(at + 16, at + 16 + size);
      encodeJob(jobs[start + i], size, value);
      out.push({
        key: fetched.subarray(at, at + 8),
        value,
        headers: { trace: fetched.subarray(at + 8, at + 16) },
        timestamp: 1_795_480_000_000 + start + i,
      });
    }
  }
  return out;
}

/** A job as `size` bytes: seed and rounds (little-endian `u32`s), then filler. */
function encodeJob(job: Job, size: number, bytes = new Uint8Array(size)): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  view.setUint32(0, job.seed, true);
  view.setUint32(4, job.rounds, true);
  for (let i = 8; i < size; i++) bytes[i] = (job.seed + i) & 255;
  return bytes;
}

/**
 * Rounds of {@link hashLoop} that cost about `micros` µs of CPU here. Calibrated on CPU
 * time, not wall time, so that other processes competing for the cores do not skew it.
 */
function calibrate(micros: number): number {
  const rounds = 2000;
  for (let i = 0; i < 200; i++) hashLoop({ seed: i, rounds }); // warm up
  const n = 1000;
  const c0 = cpuSeconds();
  for (let i = 0; i < n; i++) hashLoop({ seed: i, rounds });
  const perRound = (cpuSeconds() - c0) * 1e6 / (n * rounds);
  return Math.max(1, Math.round(micros / perRound));
}

interface Config {
  label: string;
  workers: number; // 0 = RunTask on the main thread
  maxBatchSize: number;
}

interface Result {
  wallMs: number;
  cpuS: number;
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

async function runOnce(
  config: Config,
  messages: number,
  rounds: number,
  bytes: number,
  records: boolean,
): Promise<Result> {
  type Payload = Job | Uint8Array | JobRecord;
  const broker = new LocalBroker<Payload>();
  const topic = broker.createTopic("jobs", 2);
  const jobs = Array.from({ length: messages }, (_, i) => ({ seed: i, rounds }));
  const payloads: Payload[] = records
    ? jobRecords(jobs, bytes, FETCH_BYTES)
    : bytes > 0
    ? jobs.map((job) => encodeJob(job, bytes))
    : jobs;
  for (const p of payloads) broker.produce(topic, p);
  const [exportName, run] = records
    ? ["hashRecord", (m: Message<Payload>) => hashRecord(m.payload as JobRecord)] as const
    : bytes > 0
    ? ["hashBytes", (m: Message<Payload>) => hashBytes(m.payload as Uint8Array)] as const
    : ["hashLoop", (m: Message<Payload>) => hashLoop(m.payload as Job)] as const;
  let checksum = 0;
  const sink = (commit: Commit) =>
    new RunTask((m: Message<number>) => {
      checksum ^= m.payload;
      return m.payload;
    }, new CommitOffsets(commit));
  const group = `bench-${config.label}`;
  const processor = new StreamProcessor<Payload>({
    consumer: broker.getConsumer(group),
    topics: [topic],
    commitPolicy: new CommitPolicy({ intervalMs: 20 }),
    handleSignals: false,
    factory: {
      createWithPartitions: (commit): ProcessingStrategy<Payload> =>
        config.workers === 0
          ? new RunTask(run, sink(commit))
          : new RunTaskInWorkers<Payload, number>(new URL(import.meta.url), sink(commit), {
            exportName,
            workers: config.workers,
            maxBatchSize: config.maxBatchSize,
            maxBatchTimeMs: 2,
            prefetch: 2,
          }),
    },
  });
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  const running = processor.run();
  const partitions = broker.partitions(topic);
  while (!partitions.every((p) => broker.committed(group).get(p) === broker.endOffset(p))) {
    await new Promise((r) => setTimeout(r, 2));
  }
  const wallMs = performance.now() - t0;
  const cpuS = cpuSeconds() - cpu0;
  processor.signalShutdown();
  await running;
  if (checksum === 0.5) console.log("unreachable"); // keep the work observable
  return { wallMs, cpuS };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function printTable(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    "| " + cells.map((c, i) => c.padEnd(widths[i])).join(" | ") + " |";
  console.log(line(header));
  console.log("|" + widths.map((w) => "-".repeat(w + 2)).join("|") + "|");
  for (const r of rows) console.log(line(r));
}

async function main(args: string[]): Promise<void> {
  const quick = args.includes("--quick");
  const arg = (name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const repeat = Number(arg("--repeat") ?? (quick ? 1 : 5));
  const costs = (arg("--costs") ?? "5,50,300,1000").split(",").map(Number);
  const bytes = Number(arg("--bytes") ?? 0);
  if (bytes !== 0 && !(Number.isInteger(bytes) && bytes >= 8)) {
    throw new Error(`--bytes must be an integer of at least 8, got ${arg("--bytes")}`);
  }
  const records = args.includes("--records");
  if (records && bytes === 0) throw new Error("--records needs --bytes N");
  const budgetMs = quick ? 300 : 1000; // single-threaded work per run
  const loadavg = () => Deno.loadavg().map((l) => l.toFixed(2)).join(" ");
  console.log(
    `machine: ${navigator.hardwareConcurrency} cores, deno ${Deno.version.deno}, ` +
      `load average ${loadavg()} at start; ${repeat} interleaved run(s) per row; payloads: ` +
      (records
        ? `records with ${bytes}-byte values (slices of ${FETCH_BYTES}-byte buffers)`
        : bytes > 0
        ? `Uint8Array of ${bytes} bytes`
        : "Job objects"),
  );
  const configs: Config[] = [
    { label: "RunTask (main thread)", workers: 0, maxBatchSize: 0 },
    { label: "RunTaskInWorkers ×1", workers: 1, maxBatchSize: 100 },
    { label: "RunTaskInWorkers ×2", workers: 2, maxBatchSize: 100 },
    { label: "RunTaskInWorkers ×2, batch 10", workers: 2, maxBatchSize: 10 },
  ];
  const rows: string[][] = [];
  const summary: string[] = [];
  for (const cost of costs) {
    const rounds = calibrate(cost);
    const messages = Math.max(1000, Math.round(budgetMs * 1000 / cost));
    // Interleave the configurations (A B C D A B C D ...) so that a change in the
    // machine's load during the run affects them alike.
    const results: Result[][] = configs.map(() => []);
    for (let r = 0; r < repeat; r++) {
      for (let c = 0; c < configs.length; c++) {
        results[c].push(await runOnce(configs[c], messages, rounds, bytes, records));
      }
    }
    let base = NaN;
    let best2 = NaN;
    for (let c = 0; c < configs.length; c++) {
      const config = configs[c];
      // The best run is the one least disturbed by other processes; the median shows
      // how much disturbance there was.
      const best = Math.min(...results[c].map((r) => r.wallMs));
      const med = median(results[c].map((r) => r.wallMs));
      const cpu = median(results[c].map((r) => r.cpuS));
      const rate = messages / (best / 1000);
      if (config.workers === 0) base = rate;
      if (config.workers === 2 && config.maxBatchSize === 100) best2 = rate;
      rows.push([
        `${cost} µs`,
        config.label,
        String(messages),
        `${best.toFixed(0)} / ${med.toFixed(0)}`,
        `${Math.round(rate).toLocaleString("en")} /s`,
        cpu.toFixed(2),
        `${(rate / base).toFixed(2)}×`,
      ]);
    }
    summary.push(`${cost} µs/msg: RunTaskInWorkers ×2 / RunTask = ${(best2 / base).toFixed(2)}×`);
  }
  console.log("");
  printTable(
    [
      "cost/msg",
      "step",
      "messages",
      "wall ms best / median",
      "throughput (best)",
      "CPU s (median)",
      "vs RunTask",
    ],
    rows,
  );
  console.log("");
  for (const s of summary) console.log(s);
  console.log(`load average ${loadavg()} at the end (other processes compete for the cores)`);
}

if (import.meta.main) await main(Deno.args);
