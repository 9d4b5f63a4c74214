/**
 * Kafka, fully backpressured: a topic with 1.5 M messages waiting and a consumer whose
 * pipeline never has room. Once the consumer has paused, how much memory does it hold and
 * how much CPU does it burn doing nothing? Sluice, raw kafkajs (paused in its first
 * `eachBatch`) and Python Arroyo (on librdkafka) in one run, each in a fresh process,
 * interleaved, the order reversed every other round.
 *
 * ```sh
 * deno task kafka:up
 * ARROYO_PYTHON=/tmp/venv/bin/python deno run -A bench/kafka_backpressure.ts
 * deno run -A bench/kafka_backpressure.ts --messages=2000000 --rounds=3 --hold=20
 * ```
 *
 * Options: `--messages=N` waiting (default 1 500 000), `--bytes=N` (100), `--partitions=N`
 * (4), `--rounds=N` (2), `--settle=S` seconds after the pause before measuring (3),
 * `--hold=S` seconds measured (10), `--only=LIST` (sluice, sluice-10m, sluice-young4,
 * sluice-step-3s, sluice-before, kafkajs, deno-idle, arroyo), `--before=DIR` a checkout of
 * an earlier Sluice whose own copy of this bench runs as `sluice-before` (interleaved with
 * the others: e.g. `git archive main | tar -x -C DIR`), `--topic=NAME` / `--keep-topic` as
 * in bench/kafka.ts. Brokers:
 * `KAFKA_BROKERS`, else the development broker. Python Arroyo runs with `$ARROYO_PYTHON`
 * (a virtualenv with `pip install confluent-kafka sentry-arroyo`), skipped when it cannot
 * import them.
 *
 * Each run reports the time from start to pause, the CPU of the whole process (all
 * threads) over the hold as a percentage of one core, and its RSS: while paused, at the end,
 * and the kernel's high-water mark (which includes the fetching before the pause). A Deno
 * run reads its RSS at both ends of the hold and sleeps in between (a sampling timer would
 * add wake-ups that Python Arroyo, which samples inside its own loop, does not pay). Sluice
 * uses its default fetch sizes (`maxBytes` 2 MiB, `maxBytesPerPartition` 512 KiB;
 * `sluice-10m` 10 MiB / 1 MiB), kafkajs
 * its own (10 MiB / 1 MiB); Arroyo uses its own librdkafka
 * defaults (`queued.max.messages.kbytes` 50 000, pause after 5 s of backpressure).
 * `deno-idle` is a Deno process that only sleeps: the runtime's own floor.
 *
 * @module
 */
import { Kafka, logLevel } from "kafkajs";
import process from "node:process";
import type { KafkaPayload } from "../backends/kafka/mod.ts";
import type { Message } from "../mod.ts";
import { machineNotes, runChildJson } from "./lib.ts";
import {
  benchBrokers,
  deleteTopic,
  fillTopic,
  medianOf,
  numberFlag,
  pythonMissing,
  runKafkaPython,
  textFlag as text,
} from "./kafka_lib.ts";

const MESSAGES = numberFlag("messages", 1_500_000);
const BYTES = numberFlag("bytes", 100);
const PARTITIONS = numberFlag("partitions", 4);
const ROUNDS = numberFlag("rounds", 2);
const SETTLE_S = numberFlag("settle", 3, true);
const HOLD_S = numberFlag("hold", 10, true);
const RUN = text("run");
/** A checkout of an earlier Sluice (e.g. `git archive main | tar -x -C DIR`): adds `sluice-before`. */
const BEFORE = text("before");

/** One run's figures. */
interface Result {
  name: string;
  /** Seconds from start to the consumer pausing. */
  pauseAfterS: number;
  /** Process CPU (all threads) over the hold, percent of one core. */
  cpuPct: number;
  rssMedian: number;
  rssEnd: number;
  /** Kernel high-water mark (VmHWM), bytes. */
  rssPeak: number;
  /** V8 heap in use and external memory at the end (Deno runs only), bytes. */
  heapUsed?: number;
  external?: number;
}

const brokers = await benchBrokers(RUN !== undefined);
const topic = text("topic") ?? `sluice-bp-bench-${crypto.randomUUID().slice(0, 8)}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/** Waits for `paused()`, settles, then measures CPU and RSS over the hold. */
async function measure(name: string, t0: number, paused: () => boolean): Promise<Result> {
  while (!paused()) await sleep(20);
  const pauseAfterS = (performance.now() - t0) / 1000;
  await sleep(SETTLE_S * 1000);
  // No sampling timer during the hold: one would wake the process 5 times a second, which
  // Python Arroyo does not pay (it samples inside its own loop, on wake-ups it has anyway).
  // RSS is read at both ends of the hold (it is flat while paused) and as the kernel's
  // high-water mark.
  const samples: number[] = [Deno.memoryUsage().rss];
  const c0 = cpuUs();
  const w0 = performance.now();
  await sleep(HOLD_S * 1000);
  const cpuPct = 100 * (cpuUs() - c0) / 1000 / (performance.now() - w0);
  samples.push(Deno.memoryUsage().rss);
  if (!paused()) throw new Error(`${name}: no longer paused after the hold`);
  const m = Deno.memoryUsage();
  const hwm = Deno.readTextFileSync("/proc/self/status").match(/VmHWM:\s+(\d+) kB/);
  return {
    name,
    pauseAfterS,
    cpuPct,
    rssMedian: medianOf([...samples]),
    rssEnd: m.rss,
    rssPeak: hwm ? Number(hwm[1]) * 1024 : 0,
    heapUsed: m.heapUsed,
    external: m.external,
  };
}

/** Sluice with the default KafkaConsumer options; the only step rejects every message. */
async function sluice(
  label: string,
  fetch: Record<string, number> = {},
  stepBackoffMs?: number,
): Promise<Result> {
  const t0 = performance.now();
  const { CommitOffsets, CommitPolicy, RunTask, StreamProcessor } = await import("../mod.ts");
  const { MessageRejected } = await import("../errors.ts");
  const { KafkaConsumer } = await import("../backends/kafka/mod.ts");
  const processor = new StreamProcessor<KafkaPayload>({
    consumer: new KafkaConsumer({
      brokers: brokers!,
      group: `bench-bp-${crypto.randomUUID().slice(0, 8)}`,
      logLevel: "nothing",
      ...fetch,
    }),
    topics: [topic],
    commitPolicy: CommitPolicy.ONCE_PER_SECOND,
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        new RunTask(
          (_m: Message<KafkaPayload>) => {
            throw new MessageRejected();
          },
          new CommitOffsets(commit),
          { maxBackoffMs: stepBackoffMs },
        ),
    },
  });
  processor.run().catch((e) => console.error(e));
  return await measure(
    `Sluice StreamProcessor, step never has room${label}`,
    t0,
    () => processor.paused,
  );
}

/** Raw kafkajs with Sluice's default fetch sizes: pauses the topic in its first eachBatch. */
async function kafkajs(): Promise<Result> {
  const t0 = performance.now();
  const kafka = new Kafka({ brokers: brokers!.split(","), logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({
    groupId: `bench-bp-kjs-${crypto.randomUUID().slice(0, 8)}`,
    maxBytes: 10 * 1024 * 1024,
    maxBytesPerPartition: 1024 * 1024,
    maxWaitTimeInMs: 500,
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let paused = false;
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: 64,
    eachBatch: ({ batch }) => {
      // Nothing resolved: kafkajs fetches it again on resume.
      consumer.pause([{ topic: batch.topic }]);
      paused = true;
      return Promise.resolve();
    },
  });
  return await measure("raw kafkajs, paused in its first eachBatch", t0, () => paused);
}

/** A Deno process that only waits: the runtime's floor. */
function denoIdle(): Promise<Result> {
  return measure("Deno, idle (the runtime alone)", performance.now(), () => true);
}

const RUNS: Record<string, () => Promise<Result>> = {
  sluice: () => sluice(""),
  "sluice-young4": () => sluice(", --max-semi-space-size=4"),
  "sluice-step-3s": () => sluice(", the step's maxBackoffMs 3000 (sensitivity)", {}, 3000),
  "sluice-10m": () =>
    sluice(", maxBytes 10 MiB, maxBytesPerPartition 1 MiB (before)", {
      maxBytes: 10 * 1024 * 1024,
      maxBytesPerPartition: 1024 * 1024,
    }),
  kafkajs,
  "deno-idle": denoIdle,
};
const V8_FLAGS: Record<string, string[]> = {
  "sluice-young4": ["--v8-flags=--max-semi-space-size=4"],
};

if (RUN !== undefined) {
  const run = RUNS[RUN];
  if (run === undefined) throw new Error(`--run=${RUN}: use ${Object.keys(RUNS).join(", ")}`);
  console.log(JSON.stringify(await run()));
  Deno.exit(0); // no clean shutdown: the group is thrown away
}

const PYTHON = Deno.env.get("ARROYO_PYTHON") ?? "python3";

function runPythonArroyo(): Promise<Result> {
  return runKafkaPython<Result>(PYTHON, [
    "--mode",
    "arroyo-paused",
    "--brokers",
    brokers!,
    "--topic",
    topic,
    "--messages",
    String(MESSAGES),
    "--settle",
    String(SETTLE_S),
    "--hold",
    String(HOLD_S),
  ]);
}

async function runOne(name: string): Promise<Result> {
  if (name === "arroyo") return runPythonArroyo();
  const before = name === "sluice-before";
  const r = await runChildJson<Result>(
    before ? `${BEFORE}/bench/kafka_backpressure.ts` : new URL(import.meta.url),
    [
      `--run=${before ? "sluice" : name}`,
      `--topic=${topic}`,
      `--settle=${SETTLE_S}`,
      `--hold=${HOLD_S}`,
    ],
    { runtimeArgs: V8_FLAGS[name] ?? [], env: { KAFKA_BROKERS: brokers! } },
  );
  return before ? { ...r, name: `${r.name} (before: ${BEFORE})` } : r;
}

const kafka = new Kafka({ brokers: brokers.split(","), logLevel: logLevel.NOTHING });
const reuse = text("topic") !== undefined;
if (!reuse) await fillTopic(kafka, topic, PARTITIONS, MESSAGES, BYTES);
const results: { key: string; r: Result }[] = [];
try {
  let wanted = (text("only") ?? "sluice,kafkajs,arroyo").split(",");
  for (const w of wanted) {
    if (w === "sluice-before" && BEFORE === undefined) {
      throw new Error("--only=sluice-before needs --before=DIR (a checkout of the earlier Sluice)");
    }
    if (RUNS[w] === undefined && w !== "arroyo" && w !== "sluice-before") {
      throw new Error(
        `--only: use ${[...Object.keys(RUNS), "arroyo", "sluice-before"].join(", ")}`,
      );
    }
  }
  const missing = wanted.includes("arroyo") ? await pythonMissing(PYTHON) : null;
  if (missing !== null) {
    console.error(
      `skipping Python Arroyo: ${missing} (set ARROYO_PYTHON to a virtualenv's python with ` +
        "`pip install confluent-kafka sentry-arroyo`)",
    );
    wanted = wanted.filter((w) => w !== "arroyo");
  }
  for (let round = 0; round < ROUNDS; round++) {
    for (const key of round % 2 === 0 ? wanted : [...wanted].reverse()) {
      const r = await runOne(key);
      console.error(
        `  round ${round + 1}: ${key}: paused after ${r.pauseAfterS.toFixed(1)} s, ` +
          `${r.cpuPct.toFixed(2)} % CPU, RSS ${(r.rssMedian / 2 ** 20).toFixed(0)} MiB` +
          (r.heapUsed === undefined ? "" : ` (V8 heap ${(r.heapUsed / 2 ** 20).toFixed(0)} MiB, ` +
            `external ${((r.external ?? 0) / 2 ** 20).toFixed(0)} MiB)`),
      );
      results.push({ key, r });
    }
  }
} finally {
  if (Deno.args.includes("--keep-topic") || reuse) console.error(`kept topic ${topic}`);
  else await deleteTopic(kafka, topic);
}

const mib = (v: number) => (v / 2 ** 20).toFixed(0);
console.log(
  `\nKafka, fully backpressured: ${MESSAGES.toLocaleString("en")} x ${BYTES} B waiting ` +
    `(${PARTITIONS} partitions), measured ${HOLD_S} s from ${SETTLE_S} s after the pause, ` +
    `${ROUNDS} rounds, each run in its own process; medians (range)\n${machineNotes()}\n`,
);
console.log(
  "| consumer | pauses after s | CPU % of a core while paused | RSS MiB while paused | RSS MiB at the end | RSS peak MiB |",
);
console.log("|---|---:|---:|---:|---:|---:|");
const arroyoCpu = medianOf(results.filter((x) => x.key === "arroyo").map((x) => x.r.cpuPct));
for (const key of new Set(results.map((x) => x.key))) {
  const rs = results.filter((x) => x.key === key).map((x) => x.r);
  const span = (f: (r: Result) => number, fmt: (v: number) => string) => {
    const v = rs.map(f);
    return `${fmt(medianOf([...v]))} (${fmt(Math.min(...v))}–${fmt(Math.max(...v))})`;
  };
  console.log(
    `| ${rs[0].name} | ${span((r) => r.pauseAfterS, (v) => v.toFixed(1))} | ${
      span((r) => r.cpuPct, (v) => v.toFixed(2))
    } | ${span((r) => r.rssMedian, mib)} | ${span((r) => r.rssEnd, mib)} | ${
      span((r) => r.rssPeak, mib)
    } |`,
  );
}
if (Number.isFinite(arroyoCpu)) {
  const all = results.map((x) =>
    `${x.key} ${x.r.cpuPct.toFixed(2)} % (${(x.r.cpuPct / arroyoCpu).toFixed(2)}× Arroyo's median)`
  );
  console.log(`\nCPU while paused, per run: ${all.join(", ")}`);
}
