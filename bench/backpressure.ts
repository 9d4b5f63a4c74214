/**
 * Backpressure: a step that takes 50 ms per message holds the pipeline back while 1 M
 * messages wait upstream in the broker. Reports CPU seconds per wall second (budget < 1% of
 * a core), memory over the window (it should stay flat), and how many messages the
 * pipeline buffers (bounded by the high-water marks). Baselines from the same run: this
 * process idling for the same window, and Arroyo's processor under the same pressure when
 * Arroyo is installed.
 *
 * Every run is its own Deno process (`--run=SPEC`, started by this one), so what one run leaves
 * for the garbage collector is not collected in the next run's window.
 *
 * Run: `deno run -A --v8-flags=--expose-gc bench/backpressure.ts [--quick] [--seconds N]`
 *
 * @module
 */
import {
  CommitOffsets,
  type Message,
  type ProcessingStrategy,
  type StepOptions,
  StreamProcessor,
  StreamStep,
} from "../mod.ts";
import { makeBroker } from "./inmemory.ts";
import {
  type BenchFlags,
  cpuSeconds,
  flagsToArgs,
  fmtInt,
  fmtMiB,
  gc,
  gcAvailable,
  machineNotes,
  memory,
  type MemorySample,
  parseFlags,
  printTable,
  runChildJson,
  sleep,
  verdict,
} from "./lib.ts";

/** Milliseconds the slow step spends on each message. */
export const SLOW_STEP_MS = 50;
/** Seconds of start-up (fill, back-off, pause) measured apart from the steady window. */
export const SETTLE_SECONDS = 1.5;
/** The smaller backlog: far above the high-water marks, and 50 times smaller than the default. */
export const SMALL_BACKLOG = 20_000;
/** High-water mark of the slow step's queue, in messages. */
export const SLOW_STEP_HWM = 1024;

/** An asynchronous step that spends `delayMs` on every message, one at a time. */
class SlowStep<T> extends StreamStep<T, T> {
  processed = 0;
  constructor(readonly delayMs: number, next: ProcessingStrategy<T>, options?: StepOptions) {
    super("slow", next, options);
  }
  protected async process(batch: Message<T>[]): Promise<void> {
    for (const m of batch) {
      await this.clock.sleep(this.delayMs);
      if (this.abandoned) return;
      this.processed++;
      await this.emitWhenRoom(m);
      if (this.abandoned) return;
    }
  }
  /** Messages queued in this step's stream and not yet processed. */
  get queued(): number {
    return SLOW_STEP_HWM - this.desiredSize;
  }
}

/** What one backpressure window measured. */
export interface WindowResult {
  /** What ran. */
  name: string;
  /** Wall-clock seconds of the window. */
  wall: number;
  /** CPU seconds used in the window. */
  cpu: number;
  /** Memory at the start of the window, the peak, and at the end. */
  first?: MemorySample;
  peak?: MemorySample;
  last?: MemorySample;
  /** Most messages held by the pipeline and the processor at any sample. */
  maxBuffered?: number;
  /** Messages the slow step finished in the window. */
  processed?: number;
  /** Extra notes. */
  note?: string;
}

async function sampleWindow(
  seconds: number,
  probe: () => number,
): Promise<{
  wall: number;
  cpu: number;
  samples: MemorySample[];
  retained: [MemorySample, MemorySample] | undefined;
  maxBuffered: number;
}> {
  const samples: MemorySample[] = [];
  let maxBuffered = 0;
  // With --v8-flags=--expose-gc (bench/main.ts passes it), the heap retained at the start
  // and at the end is measured after a full collection, outside the CPU window.
  gc();
  const retainedStart = gcAvailable() ? memory() : undefined;
  const c0 = cpuSeconds();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  for (;;) {
    samples.push(memory());
    maxBuffered = Math.max(maxBuffered, probe());
    const left = end - performance.now();
    if (left <= 0) break;
    await sleep(Math.min(500, left));
  }
  const wall = (performance.now() - t0) / 1000;
  const cpu = cpuSeconds() - c0;
  gc();
  const retained: [MemorySample, MemorySample] | undefined = retainedStart
    ? [retainedStart, memory()]
    : undefined;
  return { wall, cpu, samples, retained, maxBuffered };
}

function summarise(name: string, w: Awaited<ReturnType<typeof sampleWindow>>): WindowResult {
  const peak = w.samples.reduce((a, b) => ({
    rss: Math.max(a.rss, b.rss),
    heapUsed: Math.max(a.heapUsed, b.heapUsed),
  }));
  return {
    name,
    wall: w.wall,
    cpu: w.cpu,
    first: w.retained?.[0] ?? w.samples[0],
    peak,
    last: w.retained?.[1] ?? w.samples[w.samples.length - 1],
    maxBuffered: w.maxBuffered,
  };
}

/** Runs Sluice with a 50 ms/message step: a start-up window, then `seconds` of steady state. */
async function runSluice(
  messages: number,
  seconds: number,
  maxBackoffMs?: number,
): Promise<WindowResult[]> {
  // Every message its own payload, as a real producer would send them.
  const { broker, topic } = makeBroker(messages, 1, { distinct: true });
  let slow: SlowStep<Uint8Array> | undefined;
  const processor = new StreamProcessor<Uint8Array>({
    consumer: broker.getConsumer("backpressure"),
    topics: [topic],
    handleSignals: false,
    joinTimeoutMs: 50,
    maxBackoffMs,
    factory: {
      createWithPartitions: (commit) =>
        slow = new SlowStep(SLOW_STEP_MS, new CommitOffsets(commit), {
          highWaterMark: SLOW_STEP_HWM,
        }),
    },
  });
  const running = processor.run();
  const buffered = () => (slow?.queued ?? 0) + processor.carriedCount;
  // Start-up: first poll, the queue fills, rejections back off, the consumer is paused
  // after pauseAfterMs (1 s). JIT compilation lands here too.
  const settle = await sampleWindow(SETTLE_SECONDS, buffered);
  const processedSettle = slow?.processed ?? 0;
  // Steady state: fully backpressured and paused.
  const steady = await sampleWindow(seconds, buffered);
  const processedSteady = (slow?.processed ?? 0) - processedSettle;
  const paused = processor.paused;
  // Shutdown would wait for the slow step to drain ~1 000 messages: abandon them instead
  // (nothing more is committed), so this run's timers do not bleed into the next window.
  // (joinTimeoutMs is short for that reason.)
  processor.signalShutdown();
  await running;
  const label = `Sluice, ${fmtInt(messages)} waiting` +
    (maxBackoffMs === undefined ? "" : `, maxBackoffMs ${maxBackoffMs}`);
  const a = summarise(`${label}, first ${SETTLE_SECONDS} s (fill, back off, pause)`, settle);
  a.processed = processedSettle;
  const b = summarise(`${label}, next ${seconds} s (paused, backpressured)`, steady);
  b.processed = processedSteady;
  b.note = `paused=${paused}, pauses=${processor.stats.pauses}, ` +
    `rejections=${fmtInt(processor.stats.rejections)}, loop iterations=${
      fmtInt(processor.stats.iterations)
    }`;
  return [a, b];
}

/** The slow step's own work without Sluice: a loop that waits 50 ms per message. */
async function runSlowWorkAlone(seconds: number): Promise<WindowResult> {
  let processed = 0;
  let stop = false;
  const loop = (async () => {
    while (!stop) {
      await sleep(SLOW_STEP_MS);
      processed++;
    }
  })();
  const w = await sampleWindow(seconds, () => 0);
  stop = true;
  await loop;
  const r = summarise(`floor: the slow work alone (a timer every ${SLOW_STEP_MS} ms)`, w);
  r.processed = processed;
  return r;
}

/** Arroyo's StreamProcessor against a strategy that takes one message per 50 ms. */
async function runArroyo(messages: number, seconds: number): Promise<WindowResult | string> {
  const python = Deno.env.get("ARROYO_PYTHON") ?? "python3";
  const script = new URL("./arroyo_inmemory.py", import.meta.url).pathname;
  try {
    const out = await new Deno.Command(python, {
      args: [
        script,
        "--messages",
        String(messages),
        "--backpressure",
        String(seconds + SETTLE_SECONDS),
        "--delay-ms",
        String(SLOW_STEP_MS),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) {
      const err = new TextDecoder().decode(out.stderr).trim().split("\n").pop() ?? "";
      return `Arroyo not measured: ${python} failed (${err}); pip install sentry-arroyo or set ARROYO_PYTHON`;
    }
    const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
    return {
      name: `Arroyo ${r.version}: same slow step (LocalBroker)`,
      wall: r.wall,
      cpu: r.cpu,
      peak: { rss: r.max_rss, heapUsed: NaN },
      processed: r.processed,
      note: `paused=${r.paused}`,
    };
  } catch (e) {
    return `Arroyo not measured: ${python} not runnable (${(e as Error).message})`;
  }
}

/** Runs the backpressure benchmark and prints its table. */
export async function runBackpressure(flags: BenchFlags): Promise<WindowResult[]> {
  const seconds = flags.seconds;
  const messages = flags.messages;
  console.log(
    `\n## Backpressure: ${SLOW_STEP_MS} ms/message step, ${fmtInt(messages)} messages waiting, ` +
      `${seconds} s window\n`,
  );
  console.log(machineNotes());

  // Each run is a fresh process: the garbage one run leaves (a million messages' worth) is not
  // collected inside the next run's window.
  const [idle] = await runChild("idle", flags);
  const [slowOnly] = await runChild("slow", flags);
  const sluice = await runChild(`sluice:${messages}`, flags);
  // The same with a backlog that still dwarfs the high-water marks but is 50 times smaller.
  const small = await runChild(`sluice:${SMALL_BACKLOG}`, flags);
  const smallLong = await runChild(`sluice:${SMALL_BACKLOG}:1000`, flags);
  const arroyo = await runArroyo(messages, seconds);
  const results = [idle, slowOnly, ...sluice, small[1], smallLong[1]];
  if (typeof arroyo !== "string") results.push(arroyo);

  const rows = results.map((r) => {
    const perWall = r.cpu / r.wall;
    return [
      r.name,
      `${r.cpu.toFixed(3)} s / ${r.wall.toFixed(1)} s`,
      `${(perWall * 100).toFixed(2)}%`,
      r.first ? `${fmtMiB(r.first.heapUsed)} → ${fmtMiB(r.last!.heapUsed)}` : "—",
      r.peak && Number.isFinite(r.peak.heapUsed) ? fmtMiB(r.peak.heapUsed) : "—",
      r.peak ? fmtMiB(r.peak.rss) : "—",
      r.maxBuffered === undefined ? "—" : fmtInt(r.maxBuffered),
      r.processed === undefined ? "—" : fmtInt(r.processed),
    ];
  });
  printTable(
    "CPU and memory while fully backpressured",
    [
      "run",
      "CPU / wall",
      "% of a core",
      gcAvailable() ? "heap start → end (after full GC)" : "heap start → end",
      "peak heap",
      "peak RSS",
      "max buffered msgs",
      "processed",
    ],
    rows,
  );
  const s = sluice[1];
  const pct = (r: WindowResult) => (r.cpu / r.wall) * 100;
  const cpuPct = pct(small[1]);
  const overheadPct = cpuPct - pct(slowOnly);
  const bigPct = pct(s);
  const heapGrowth = s.last!.heapUsed - s.first!.heapUsed;
  const bound = SLOW_STEP_HWM + 1000; // slow step's queue + one carried poll batch
  printTable("Budgets (DESIGN section 8)", ["measure", "figure", "budget", ""], [
    [
      `CPU while backpressured, total (${fmtInt(SMALL_BACKLOG)} waiting)`,
      `${cpuPct.toFixed(2)}% of a core`,
      "< 1%",
      verdict(cpuPct < 1),
    ],
    [
      "… of which Sluice (total − the slow work alone)",
      `${overheadPct.toFixed(2)}% of a core`,
      "< 1%",
      verdict(overheadPct < 1),
    ],
    [
      `CPU while backpressured, total (${fmtInt(messages)} waiting in this process)`,
      `${bigPct.toFixed(2)}% of a core`,
      "< 1%",
      verdict(bigPct < 1),
    ],
    [
      gcAvailable() ? "heap retained: growth over the window" : "heap growth over the window",
      fmtMiB(heapGrowth),
      "flat (< 5 MiB)",
      verdict(heapGrowth < 5 * 1048576),
    ],
    [
      "messages buffered by the pipeline",
      fmtInt(s.maxBuffered!),
      `≤ hwm ${SLOW_STEP_HWM} + poll batch 1000`,
      verdict(s.maxBuffered! <= bound),
    ],
  ]);
  console.log(`\n${s.note}`);
  if (typeof arroyo === "string") console.log(arroyo);
  else {
    console.log(
      `Arroyo: ${arroyo.note}. RunTaskInThreads frees a slot each time a message finishes ` +
        `(every ${SLOW_STEP_MS} ms), so no rejection episode lasts the 5 s after which Arroyo ` +
        `pauses; it sleeps 10 ms per rejection instead. (Once paused on its LocalBroker it ` +
        `would spin: that consumer's poll ignores its timeout.)`,
    );
  }
  if (flags.json) {
    console.log(JSON.stringify({ bench: "backpressure", messages, seconds, results }));
  }
  return results;
}

/**
 * One run, in this process: `idle`, `slow` (the slow work alone), or
 * `sluice:MESSAGES[:MAX_BACKOFF_MS]`.
 */
async function runOne(spec: string, flags: BenchFlags): Promise<WindowResult[]> {
  const [kind, messages, maxBackoffMs] = spec.split(":");
  if (kind === "idle") {
    const w = await sampleWindow(flags.seconds, () => 0);
    return [summarise("floor: this process idle (sleep)", w)];
  }
  if (kind === "slow") return [await runSlowWorkAlone(flags.seconds)];
  if (kind === "sluice" && Number(messages) > 0) {
    const backoff = maxBackoffMs === undefined ? undefined : Number(maxBackoffMs);
    return await runSluice(Number(messages), flags.seconds, backoff);
  }
  throw new Error(`--run=${spec}: use idle, slow, or sluice:MESSAGES[:MAX_BACKOFF_MS]`);
}

/** Runs `spec` in a fresh Deno process. */
function runChild(spec: string, flags: BenchFlags): Promise<WindowResult[]> {
  const args = [...flagsToArgs({ ...flags, json: false }), `--run=${spec}`];
  return runChildJson<WindowResult[]>(new URL(import.meta.url), args);
}

if (import.meta.main) {
  const run = Deno.args.find((a) => a.startsWith("--run="))?.slice("--run=".length);
  const flags = parseFlags(Deno.args);
  if (run !== undefined) console.log(JSON.stringify(await runOne(run, flags)));
  else await runBackpressure(flags);
  // The slow step still holds ~1 000 messages at 50 ms each; do not wait for it.
  Deno.exit(0);
}
