/**
 * In-memory throughput: LocalBroker → RunTask → CommitOffsets (the issue-2 figure), the
 * same with a reduce step and with five chained steps, on 1 and 8 partitions; the cost of
 * the web-stream bridge with per-message versus batched chunks; and Arroyo's Python
 * implementation on the same machine when it is installed.
 *
 * Every figure is measured in one run next to its baseline, a plain loop over the same
 * consumer's poll batches doing the same user function and tracking offsets (the floor).
 *
 * Run: `deno run -A bench/inmemory.ts [--quick] [--messages N] [--repeat N] [--only WORD]`
 *
 * @module
 */
import {
  type Commit,
  CommitOffsets,
  CommitPolicy,
  Message,
  MessageRejected,
  type Partition,
  type ProcessingStrategy,
  Reduce,
  RunTask,
  type StepOptions,
  StreamProcessor,
} from "../mod.ts";
import { LocalBroker } from "../backends/local/mod.ts";
import { READ } from "../backends/local/_symbols.ts";
import type { BrokerValue, Topic } from "../types.ts";
import {
  type BenchFlags,
  cpuSeconds,
  fmtInt,
  fmtRate,
  fmtRatio,
  machineNotes,
  median,
  parseFlags,
  printTable,
  turn,
  verdict,
} from "./lib.ts";

/** Bytes per message payload. */
export const PAYLOAD_BYTES = 100;
/** Arroyo's in-memory rate cited in DESIGN section 8, used when Arroyo is not installed. */
export const ARROYO_REFERENCE_RATE = 200_000;

/** One measured variant. */
export interface ThroughputResult {
  /** What ran. */
  name: string;
  /** Partitions of the topic. */
  partitions: number;
  /** Steps in the pipeline, CommitOffsets included (0 for the floor loop). */
  steps: number;
  /** Messages per chunk written to each step's stream (undefined where not applicable). */
  chunkSize?: number;
  /** Messages per second (wall clock) of every repeat. */
  rates: number[];
  /** CPU nanoseconds per message (all threads, GC included) of every repeat. */
  cpuNs: number[];
}

// ---------------------------------------------------------------------------------------
// Data

/** A broker with `messages` messages of {@link PAYLOAD_BYTES} bytes spread over `partitions`. */
export function makeBroker(
  messages: number,
  partitions: number,
  options: { distinct?: boolean } = {},
): { broker: LocalBroker<Uint8Array>; topic: Topic } {
  const broker = new LocalBroker<Uint8Array>();
  const topic = broker.createTopic(`bench-${partitions}p`, partitions);
  // By default 1024 distinct payloads reused round-robin: the broker copies the bytes of each
  // message into its own storage, so this only saves building a million arrays here.
  const pool = Array.from({ length: 1024 }, (_, i) => new Uint8Array(PAYLOAD_BYTES).fill(i & 255));
  const ts = Date.now();
  for (let i = 0; i < messages; i++) {
    const payload = options.distinct ? new Uint8Array(PAYLOAD_BYTES).fill(i & 255) : pool[i & 1023];
    broker.produce(topic, payload, { timestamp: ts });
  }
  return { broker, topic };
}

/**
 * The messages stored in `partition`, as `BrokerValue`s (built now: the broker stores
 * payloads and timestamps, not `BrokerValue`s), for the strategies-only runs.
 */
function storedValues(
  broker: LocalBroker<Uint8Array>,
  partition: Partition,
): BrokerValue<Uint8Array>[] {
  const n = broker.endOffset(partition);
  const values = new Array<BrokerValue<Uint8Array>>(n);
  broker[READ](partition, 0, n, values, 0);
  return values;
}

let groupSeq = 0;
function freshGroup(): string {
  return `bench-group-${++groupSeq}`;
}

/** The user function every variant runs once per message: the same work everywhere. */
class Work {
  processed = 0;
  bytes = 0;
  /** Called once, when `processed` reaches `target`. */
  constructor(readonly target = Infinity, readonly onDone: () => void = () => {}) {}
  readonly fn = (payload: Uint8Array): number => {
    if (++this.processed === this.target) this.onDone();
    this.bytes += payload.length;
    return payload.length;
  };
}

function checkCommitted(broker: LocalBroker<Uint8Array>, topic: Topic, group: string): void {
  const committed = broker.committed(group);
  for (const p of broker.partitions(topic)) {
    const c = committed.get(p) ?? 0;
    if (c !== broker.endOffset(p)) {
      throw new Error(`bench bug: ${p} committed ${c}, end offset ${broker.endOffset(p)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------
// The floor: a plain loop over poll batches, same work, same offset tracking and commits.

/** The floor: polls, runs the same function, tracks and commits offsets; returns msg/s. */
export async function runFloor(broker: LocalBroker<Uint8Array>, topic: Topic, total: number) {
  const group = freshGroup();
  const consumer = broker.getConsumer(group);
  consumer.subscribe([topic]);
  const work = new Work();
  const fn = work.fn;
  const start = performance.now();
  let lastCommit = start;
  const highest = new Map<Partition, number>();
  let done = 0;
  while (done < total) {
    const batch: BrokerValue<Uint8Array>[] = await consumer.poll(100);
    let lastP: Partition | undefined;
    let lastO = 0;
    for (let i = 0; i < batch.length; i++) {
      const v = batch[i];
      fn(v.payload);
      if (v.partition !== lastP) {
        if (lastP !== undefined) highest.set(lastP, lastO);
        lastP = v.partition;
      }
      lastO = v.offset + 1;
    }
    if (lastP !== undefined) highest.set(lastP, lastO);
    done += batch.length;
    const now = performance.now();
    if (now - lastCommit >= 1000) {
      consumer.stageOffsets(highest);
      await consumer.commitOffsets();
      lastCommit = now;
    }
  }
  consumer.stageOffsets(highest);
  await consumer.commitOffsets();
  const seconds = (performance.now() - start) / 1000;
  await consumer.close();
  checkCommitted(broker, topic, group);
  if (work.processed !== total) throw new Error("floor: processed count mismatch");
  return total / seconds;
}

// ---------------------------------------------------------------------------------------
// Sluice pipelines under a StreamProcessor.

/** The pipelines measured: RunTask → CommitOffsets, with Reduce, and five RunTasks. */
export type Shape = "runtask" | "reduce" | "chain5";

function buildPipeline(
  shape: Shape,
  work: Work,
  commit: Commit,
  chunkSize: number,
): ProcessingStrategy<Uint8Array> {
  const opts: StepOptions = { chunkSize };
  const terminal = new CommitOffsets(commit, opts);
  const fn = work.fn;
  switch (shape) {
    case "runtask":
      return new RunTask((m: Message<Uint8Array>) => fn(m.payload), terminal, opts);
    case "reduce": {
      const reduce = new Reduce<number, number>((acc, m) => acc + m.payload, () => 0, terminal, {
        ...opts,
        maxBatchSize: 1000,
        maxBatchTimeMs: 1000,
      });
      return new RunTask((m: Message<Uint8Array>) => fn(m.payload), reduce, opts);
    }
    case "chain5": {
      let next: ProcessingStrategy<Uint8Array> = terminal as ProcessingStrategy<Uint8Array>;
      for (let i = 0; i < 4; i++) {
        next = new RunTask((m: Message<Uint8Array>) => m.payload, next, opts);
      }
      return new RunTask(
        (m: Message<Uint8Array>) => {
          fn(m.payload);
          return m.payload;
        },
        next,
        opts,
      );
    }
  }
}

const SHAPE_STEPS: Record<Shape, number> = { runtask: 2, reduce: 3, chain5: 6 };

/** Runs `total` messages through a StreamProcessor with the `shape` pipeline; returns msg/s. */
export async function runProcessor(
  broker: LocalBroker<Uint8Array>,
  topic: Topic,
  total: number,
  shape: Shape,
  chunkSize: number,
): Promise<number> {
  const group = freshGroup();
  // The last message trips the shutdown from inside the user function; run() then closes,
  // joins (everything in flight is processed) and commits before it resolves.
  const work = new Work(total, () => processor.signalShutdown());
  const processor: StreamProcessor<Uint8Array> = new StreamProcessor<Uint8Array>({
    consumer: broker.getConsumer(group),
    topics: [topic],
    commitPolicy: CommitPolicy.ONCE_PER_SECOND,
    handleSignals: false,
    // The broker holds every message before the clock starts, so a poll never waits while
    // the run lasts; at the end, the default 100 ms wait for new messages would be counted
    // (signalShutdown does not cut a poll short), so do not wait.
    pollTimeoutMs: 0,
    factory: { createWithPartitions: (commit) => buildPipeline(shape, work, commit, chunkSize) },
  });
  const start = performance.now();
  await processor.run();
  const seconds = (performance.now() - start) / 1000;
  checkCommitted(broker, topic, group);
  if (work.processed !== total) {
    throw new Error(`${shape}: processed ${work.processed} of ${total}`);
  }
  return total / seconds;
}

// ---------------------------------------------------------------------------------------
// The bridge alone: submit straight into a chain of steps (no broker, no processor).

/** Submits `values` straight into a chain of `steps` steps (no processor); returns msg/s. */
export async function runStrategyOnly(
  values: readonly BrokerValue<Uint8Array>[],
  steps: number,
  chunkSize: number,
  ctor: (v: BrokerValue<Uint8Array>) => Message<Uint8Array>,
): Promise<number> {
  let committed = 0;
  const opts: StepOptions = { chunkSize };
  let s: ProcessingStrategy<Uint8Array> = new CommitOffsets<Uint8Array>((offsets) => {
    for (const o of offsets.values()) committed = o;
  }, opts);
  for (let i = 1; i < steps; i++) {
    s = new RunTask((m: Message<Uint8Array>) => m.payload, s, opts);
  }
  const head = s;
  const n = values.length;
  const start = performance.now();
  let i = 0;
  while (i < n) {
    try {
      for (; i < n; i++) head.submit(ctor(values[i]));
    } catch (e) {
      if (!(e instanceof MessageRejected)) throw e;
      head.poll();
      await head.ready;
    }
  }
  await head.join();
  const seconds = (performance.now() - start) / 1000;
  if (committed !== n) throw new Error(`strategy-only: committed ${committed} of ${n}`);
  return n / seconds;
}

// ---------------------------------------------------------------------------------------
// Arroyo (Python), when installed.

/** Arroyo's rate for the same pipeline, or why it could not be measured. */
export async function runArroyo(
  messages: number,
  partitions: number,
  chain = 1,
): Promise<{ rate: number; version: string } | { error: string }> {
  const python = Deno.env.get("ARROYO_PYTHON") ?? "python3";
  const script = new URL("./arroyo_inmemory.py", import.meta.url).pathname;
  try {
    const out = await new Deno.Command(python, {
      args: [
        script,
        "--messages",
        String(messages),
        "--partitions",
        String(partitions),
        "--chain",
        String(chain),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      const err = new TextDecoder().decode(out.stderr).trim().split("\n").pop() ?? "";
      return {
        error: `${python} could not run Arroyo (${err}); ` +
          "install it with `pip install sentry-arroyo` or set ARROYO_PYTHON",
      };
    }
    const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop()!;
    const r = JSON.parse(line);
    return { rate: r.rate, version: r.version };
  } catch (e) {
    return { error: `${python} not runnable: ${(e as Error).message}` };
  }
}

// ---------------------------------------------------------------------------------------
// Rust Arroyo (crate sentry_arroyo), when cargo is installed: bench/rust_arroyo.

/** Path of the Rust Arroyo binary once built, or why it is not available. */
let rustBinary: Promise<{ path: string } | { error: string }> | undefined;

/** Builds bench/rust_arroyo (`cargo build --release`, once per process). */
export function buildRustArroyo(): Promise<{ path: string } | { error: string }> {
  return rustBinary ??= (async () => {
    const dir = new URL("./rust_arroyo/", import.meta.url).pathname;
    try {
      const out = await new Deno.Command("cargo", {
        args: ["build", "--release", "--quiet"],
        cwd: dir,
        stdout: "inherit",
        stderr: "piped",
      }).output();
      if (!out.success) {
        const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-3).join(" ");
        return { error: `cargo build --release in ${dir} failed: ${err}` };
      }
    } catch (e) {
      return {
        error: `cargo not runnable (${(e as Error).message}); install Rust (rustup.rs) ` +
          "to measure Rust Arroyo",
      };
    }
    return { path: `${dir}target/release/sluice_bench_rust_arroyo` };
  })();
}

/** One Rust Arroyo run in its own process: msg/s and CPU ns/msg (its own, all threads). */
export async function runRustArroyo(
  messages: number,
  partitions: number,
  chain: number,
): Promise<{ rate: number; cpuNs: number }> {
  const bin = await buildRustArroyo();
  if ("error" in bin) throw new Error(bin.error);
  const out = await new Deno.Command(bin.path, {
    args: [
      "--messages",
      String(messages),
      "--partitions",
      String(partitions),
      "--chain",
      String(chain),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`${bin.path} failed (exit ${out.code})`);
  const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
  return { rate: r.rate, cpuNs: r.cpu_ns };
}

// ---------------------------------------------------------------------------------------

interface Variant {
  name: string;
  partitions: number;
  steps: number;
  chunkSize?: number;
  run: () => Promise<number>;
  /** Runs in another process: its CPU per message, read after `run` (not this process's). */
  externalCpuNs?: () => number;
}

/** The Rust Arroyo rows' names, by shape. */
const RUST_RUNTASK = "Rust Arroyo 2.49: RunTask → CommitOffsets";
const RUST_CHAIN5 = "Rust Arroyo 2.49: 5 × RunTask → CommitOffsets";

/** Runs the in-memory benchmarks and prints their tables. */
export async function runInMemory(
  flags: BenchFlags,
  only?: string,
): Promise<ThroughputResult[]> {
  const N = flags.messages;
  console.log(`\n## In-memory throughput (${fmtInt(N)} messages × ${PAYLOAD_BYTES} bytes)\n`);
  console.log(machineNotes());
  const t0 = performance.now();
  const b1 = makeBroker(N, 1);
  const b8 = makeBroker(N, 8);
  console.log(`produced 2 × ${fmtInt(N)} messages in ${(performance.now() - t0).toFixed(0)} ms`);
  const values1 = storedValues(b1.broker, b1.broker.partitions(b1.topic)[0]);
  const wrap = (v: BrokerValue<Uint8Array>) => new Message(v);

  const variants: Variant[] = [];
  for (const [p, b] of [[1, b1], [8, b8]] as const) {
    variants.push({
      name: "floor: poll loop + same work",
      partitions: p,
      steps: 0,
      run: () => runFloor(b.broker, b.topic, N),
    });
    for (const shape of ["runtask", "reduce", "chain5"] as const) {
      const label = shape === "runtask"
        ? "RunTask → CommitOffsets"
        : shape === "reduce"
        ? "RunTask → Reduce(1000) → CommitOffsets"
        : "5 × RunTask → CommitOffsets";
      const chunks = p === 1 && shape !== "reduce" ? [256, 1024, 1] : [256];
      for (const c of chunks) {
        variants.push({
          name: label,
          partitions: p,
          steps: SHAPE_STEPS[shape],
          chunkSize: c,
          run: () => runProcessor(b.broker, b.topic, N, shape, c),
        });
      }
    }
  }
  for (const steps of [1, 2, 6]) {
    for (const c of [256, 1]) {
      variants.push({
        name: `strategies only: ${steps === 1 ? "" : `${steps - 1} × RunTask → `}CommitOffsets`,
        partitions: 1,
        steps,
        chunkSize: c,
        run: () => runStrategyOnly(values1, steps, c, wrap),
      });
    }
  }
  const rust = await buildRustArroyo();
  if ("error" in rust) console.log(`Rust Arroyo not measured: ${rust.error}`);
  else {
    for (const [p, chain] of [[1, 1], [8, 1], [1, 5]] as const) {
      let cpu = NaN;
      variants.push({
        name: chain === 1 ? RUST_RUNTASK : RUST_CHAIN5,
        partitions: p,
        steps: chain + 1,
        run: async () => {
          const r = await runRustArroyo(N, p, chain);
          cpu = r.cpuNs;
          return r.rate;
        },
        externalCpuNs: () => cpu,
      });
    }
  }
  const selected = only ? variants.filter((v) => v.name.includes(only)) : variants;

  // Warm the JIT on every path once, then measure in interleaved rounds so that noise from
  // other processes hits every variant alike.
  const warm = Math.min(N, 100_000);
  const wb = makeBroker(warm, 1);
  const wb8 = makeBroker(warm, 8);
  const wvals = storedValues(wb.broker, wb.broker.partitions(wb.topic)[0]);
  for (const v of selected) {
    if (v.externalCpuNs !== undefined) continue; // another process: nothing to warm here
    if (v.name.startsWith("strategies")) {
      await runStrategyOnly(wvals, v.steps, v.chunkSize!, wrap);
    } else if (v.steps === 0) {
      await runFloor(
        v.partitions === 1 ? wb.broker : wb8.broker,
        v.partitions === 1 ? wb.topic : wb8.topic,
        warm,
      );
    } else {
      const shape: Shape = v.steps === 2 ? "runtask" : v.steps === 3 ? "reduce" : "chain5";
      const b = v.partitions === 1 ? wb : wb8;
      await runProcessor(b.broker, b.topic, warm, shape, v.chunkSize!);
    }
  }
  const results: ThroughputResult[] = selected.map((v) => ({
    name: v.name,
    partitions: v.partitions,
    steps: v.steps,
    chunkSize: v.chunkSize,
    rates: [],
    cpuNs: [],
  }));
  for (let r = 0; r < flags.repeat; r++) {
    for (let i = 0; i < selected.length; i++) {
      const c0 = cpuSeconds();
      results[i].rates.push(await selected[i].run());
      const external = selected[i].externalCpuNs;
      results[i].cpuNs.push(external ? external() : ((cpuSeconds() - c0) * 1e9) / N);
      await turn();
    }
  }

  const best = (r: ThroughputResult) => Math.max(...r.rates);
  const bestCpu = (r: ThroughputResult) => Math.min(...r.cpuNs);
  const find = (name: string, p: number, c?: number) =>
    results.find((r) =>
      r.name === name && r.partitions === p && (c === undefined || r.chunkSize === c)
    );

  // Table 1: pipelines against the floor.
  const rows: string[][] = [];
  for (const r of results.filter((r) => !r.name.startsWith("strategies"))) {
    const floor = find("floor: poll loop + same work", r.partitions);
    const b = best(r);
    const ns = 1e9 / b;
    rows.push([
      r.name,
      String(r.partitions),
      r.chunkSize === undefined ? "—" : String(r.chunkSize),
      fmtRate(b),
      fmtRate(median(r.rates)),
      `${ns.toFixed(0)}`,
      r.steps === 0 ? "—" : `${(ns / r.steps).toFixed(0)}`,
      bestCpu(r).toFixed(0),
      floor ? fmtRatio(b / best(floor), true) : "—",
    ]);
  }
  printTable(
    `LocalBroker → pipeline → commit, best of ${flags.repeat} (median beside it)`,
    [
      "pipeline",
      "partitions",
      "chunk",
      "msg/s",
      "median",
      "ns/msg",
      "ns/msg/step",
      "CPU ns/msg",
      "vs floor",
    ],
    rows,
  );

  // Table 1b: against Rust Arroyo, same shapes, same rounds.
  const rrows: string[][] = [];
  for (
    const [label, sName, rName, p] of [
      ["RunTask → CommitOffsets", "RunTask → CommitOffsets", RUST_RUNTASK, 1],
      ["RunTask → CommitOffsets", "RunTask → CommitOffsets", RUST_RUNTASK, 8],
      ["5 × RunTask → CommitOffsets", "5 × RunTask → CommitOffsets", RUST_CHAIN5, 1],
    ] as const
  ) {
    const s = find(sName, p, 256);
    const r = find(rName, p);
    if (!s || !r) continue;
    rrows.push([
      label,
      String(p),
      `${fmtRate(best(s))} / ${fmtRate(median(s.rates))}`,
      `${fmtRate(best(r))} / ${fmtRate(median(r.rates))}`,
      fmtRatio(median(s.rates) / median(r.rates)),
      `${median(s.cpuNs).toFixed(0)} / ${median(r.cpuNs).toFixed(0)}`,
      fmtRatio(median(r.cpuNs) / median(s.cpuNs)),
    ]);
  }
  if (rrows.length > 0) {
    printTable(
      `Sluice against Rust Arroyo (each round runs both; best / median of ${flags.repeat})`,
      [
        "pipeline",
        "partitions",
        "Sluice msg/s",
        "Rust Arroyo msg/s",
        "Sluice ÷ Rust (medians)",
        "CPU ns/msg Sluice / Rust (medians)",
        "Rust CPU ÷ Sluice CPU",
      ],
      rrows,
    );
  }

  // Table 2: the bridge alone, per-message versus batched chunks.
  const srows: string[][] = [];
  for (const c of [256, 1]) {
    const s1 = find("strategies only: CommitOffsets", 1, c);
    const s2 = find("strategies only: 1 × RunTask → CommitOffsets", 1, c);
    const s6 = find("strategies only: 5 × RunTask → CommitOffsets", 1, c);
    for (const r of [s1, s2, s6]) {
      if (!r) continue;
      const ns = 1e9 / best(r);
      srows.push([
        r.name.replace("strategies only: ", ""),
        String(c),
        fmtRate(best(r)),
        ns.toFixed(0),
        (ns / r.steps).toFixed(0),
        bestCpu(r).toFixed(0),
      ]);
    }
    if (s2 && s6) {
      const extra = (1e9 / best(s6) - 1e9 / best(s2)) / 4;
      const extraCpu = (bestCpu(s6) - bestCpu(s2)) / 4;
      srows.push([
        `→ each extra RunTask (budget ≤ 100 ns)`,
        String(c),
        "",
        extra.toFixed(0),
        verdict(extra <= 100),
        extraCpu.toFixed(0),
      ]);
    }
  }
  printTable(
    "The web-stream bridge alone (submit → steps → commit, no broker or processor)",
    ["steps", "chunk", "msg/s", "ns/msg", "ns/msg/step", "CPU ns/msg"],
    srows,
  );

  // Table 3: budgets, with Arroyo measured in the same run when installed.
  const main1 = find("RunTask → CommitOffsets", 1, 256);
  const chain1 = find("5 × RunTask → CommitOffsets", 1, 256);
  if (main1 && (!only || only.length === 0)) {
    const arroyoN = Math.min(N, flags.quick ? 100_000 : 300_000);
    const arroyo = await runArroyo(arroyoN, 1);
    const sluiceRate = best(main1);
    const arroyoRate = "rate" in arroyo ? arroyo.rate : ARROYO_REFERENCE_RATE;
    const arroyoNote = "rate" in arroyo
      ? `Arroyo ${arroyo.version} (Python, this machine, this run): ${
        fmtInt(arroyoN)
      } messages, 1 partition`
      : `Arroyo not measured: ${arroyo.error}; using DESIGN's cited ${
        fmtRate(ARROYO_REFERENCE_RATE)
      }`;
    const brows: string[][] = [
      [
        "RunTask → CommitOffsets, 1 partition",
        `${fmtRate(sluiceRate)} (by CPU time ${fmtRate(1e9 / bestCpu(main1))})`,
        "≥ 5 M/s",
        verdict(sluiceRate >= 5e6),
      ],
      [
        "… against Arroyo LocalBroker → RunTask → CommitOffsets",
        `${fmtRate(arroyoRate)} → ${fmtRatio(sluiceRate / arroyoRate)}`,
        "≥ 25×",
        verdict(sluiceRate / arroyoRate >= 25),
      ],
    ];
    if (chain1) {
      const extra = (1e9 / best(chain1) - 1e9 / sluiceRate) / 4;
      const extraCpu = (bestCpu(chain1) - bestCpu(main1)) / 4;
      brows.push([
        "each extra synchronous step (pipeline)",
        `${extra.toFixed(0)} ns/msg (CPU ${extraCpu.toFixed(0)})`,
        "≤ 100 ns",
        verdict(extra <= 100),
      ]);
      if ("rate" in arroyo) {
        // Arroyo's own cost of an extra RunTask, for comparison (no budget).
        const arroyo5 = await runArroyo(arroyoN, 1, 5);
        if ("rate" in arroyo5) {
          const aExtra = (1e9 / arroyo5.rate - 1e9 / arroyo.rate) / 4;
          brows.push([
            "… Arroyo's extra RunTask, same run",
            `${aExtra.toFixed(0)} ns/msg → ${fmtRatio(aExtra / extra)} Sluice's`,
            "",
            "",
          ]);
        }
      }
    }
    printTable("Budgets (DESIGN section 8)", ["measure", "figure", "budget", ""], brows);
    console.log(`\n${arroyoNote}`);
  }
  if (flags.json) console.log(JSON.stringify({ bench: "inmemory", messages: N, results }));
  return results;
}

if (import.meta.main) {
  const args = Deno.args;
  const i = args.indexOf("--only");
  await runInMemory(parseFlags(args), i >= 0 ? args[i + 1] : undefined);
}
