/**
 * Kafka throughput: Sluice (KafkaConsumer → StreamProcessor → RunTask → CommitOffsets)
 * against a hand-written kafkajs `eachBatch` consumer doing the same work, on the same
 * broker, topic and messages, in one run. Prints a table and the ratios.
 *
 * ```sh
 * deno task kafka:up                                   # local broker on 127.0.0.1:19092
 * deno run -A bench/kafka.ts                           # 1 M x 100 B, 4 partitions
 * deno run -A bench/kafka.ts --messages=200000 --rounds=3
 * ```
 *
 * Options: `--messages=N` (default 1 000 000), `--bytes=N` per message (default 100),
 * `--partitions=N` (default 4), `--rounds=N` (default 2; the order of the consumers is
 * reversed every other round), `--keep-topic`, `--topic=NAME` (reuse a kept topic),
 * `--only=LIST` (any of kafkajs, kafkajs-fixed, kafkajs-small, kafkajs1, poll, sluice,
 * sluice-kafkajs-decoder, sluice-10m, sluice-young4, sluice-lowmem, sluice-platformatic, sluice-platformatic-10m,
 * raw-platformatic, rdkafka, rdkafka-1s, arroyo, and `sluice-<M>k-<P>k`: Sluice with
 * `maxBytes` M KiB and `maxBytesPerPartition` P KiB, for a sweep of fetch sizes),
 * `--arroyo-messages=N` (default 300 000: Python Arroyo reads only the first N). Brokers:
 * `KAFKA_BROKERS`, else 127.0.0.1:19092.
 *
 * Every consumer run is a separate Deno process (started by this one with `--run=NAME`):
 * a fresh heap and fresh JIT state for each, and the hand-written `kafkajs` consumer runs
 * stock kafkajs 2.2.4 — its process never loads Sluice, so none of the kafkajs fixes the
 * Kafka backend applies on import (backends/kafka/kafkajs_patch.ts) reach it.
 * `kafkajs-fixed` is the same hand-written consumer with those fixes loaded: the gap
 * between it and Sluice is what the pipeline itself costs.
 *
 * The table shows each consumer's best and median rate, and the median process CPU time
 * per message (all threads, so V8's helper threads count): on a shared machine the rates
 * move by ±30% from run to run, the CPU time much less.
 *
 * All consumers use the same fetch settings, never auto-commit, and commit the processed
 * offsets once per second and at the end; the work per message is reading the value's
 * length. Each run is timed from its first message to its last (connecting, joining the
 * group and closing are left out).
 *
 * @module
 */
import { Kafka, logLevel } from "kafkajs";
import process from "node:process";
// Types only: a `kafkajs` run must not load Sluice (its Kafka backend patches kafkajs).
import type { Message, Partition } from "../mod.ts";
import type { KafkaPayload } from "../backends/kafka/mod.ts";
import { runChildJson } from "./lib.ts";
import {
  benchBrokers,
  deleteTopic,
  fillTopic,
  medianOf,
  numberFlag as flag,
  pythonMissing,
  runKafkaPython,
} from "./kafka_lib.ts";

const MESSAGES = flag("messages", 1_000_000);
const BYTES = flag("bytes", 100);
const PARTITIONS = flag("partitions", 4);
const ROUNDS = flag("rounds", 2);
/**
 * The fetch settings of the hand-written kafkajs consumer (kafkajs's own defaults) and of
 * `sluice-10m` (Sluice's defaults before issue 20). The `sluice` run passes only
 * `maxWaitTimeMs` and so measures Sluice's defaults (2 MiB responses, 512 KiB per partition).
 */
const FETCH = { maxWaitTimeMs: 100, maxBytes: 10 * 1024 * 1024, maxBytesPerPartition: 1024 * 1024 };
/** The fetch sizes of `kafkajs-small` (Sluice's defaults from the first pass of issue 20). */
const SMALL_FETCH = { ...FETCH, maxBytes: 512 * 1024, maxBytesPerPartition: 256 * 1024 };

// `--run=NAME`: this process is one consumer run, started by the driver below.
const RUN = Deno.args.find((a) => a.startsWith("--run="))?.slice("--run=".length);
const brokers = await benchBrokers(RUN !== undefined);
const kafka = new Kafka({
  clientId: "sluice-bench",
  brokers: brokers.split(","),
  logLevel: logLevel.NOTHING,
  retry: { initialRetryTime: 100, retries: 8 },
});
// --topic=NAME reuses a topic kept by an earlier run (--keep-topic) holding --messages messages.
const reuse = Deno.args.find((a) => a.startsWith("--topic="))?.slice("--topic=".length);
const topic = reuse ?? `sluice-bench-${crypto.randomUUID().slice(0, 8)}`;

async function setUp(): Promise<void> {
  if (reuse === undefined) await fillTopic(kafka, topic, PARTITIONS, MESSAGES, BYTES);
}

async function tearDown(): Promise<void> {
  if (Deno.args.includes("--keep-topic") || reuse !== undefined) {
    console.error(`kept topic ${topic}`);
    return;
  }
  await deleteTopic(kafka, topic);
}

interface Result {
  name: string;
  seconds: number;
  messages: number;
  /** Process CPU time (all threads, GC helpers included) per message over the timed span. */
  cpuNs: number;
  /** Peak resident set size of the process (kernel high-water mark), bytes. */
  rssPeak?: number;
  /** Median resident set size sampled every 100 ms over the timed span, bytes. */
  rssSteady?: number;
}

/** Process CPU time so far, in microseconds (user + system, all threads). */
function cpuMicros(): number {
  const u = process.cpuUsage();
  rssSampler.mark();
  return u.user + u.system;
}

/**
 * RSS over the timed span of a Deno consumer run. Every run reads {@link cpuMicros} exactly
 * twice, at its first and at its last message, so the first read starts sampling (every
 * 100 ms) and the second stops it: the runs themselves need no extra code.
 */
const rssSampler = {
  samples: [] as number[],
  timer: undefined as ReturnType<typeof setInterval> | undefined,
  marks: 0,
  mark(): void {
    if (++this.marks === 1) {
      this.timer = setInterval(() => this.samples.push(Deno.memoryUsage().rss), 100);
    } else if (this.marks === 2) {
      clearInterval(this.timer);
      this.samples.push(Deno.memoryUsage().rss);
    }
  },
  /** Peak (VmHWM) and the median sample. */
  read(): { rssPeak: number; rssSteady: number } {
    const hwm = Deno.readTextFileSync("/proc/self/status").match(/VmHWM:\s+(\d+) kB/);
    const v = [...this.samples].sort((a, b) => a - b);
    const m = v.length >> 1;
    const steady = v.length === 0 ? 0 : v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
    return { rssPeak: hwm ? Number(hwm[1]) * 1024 : 0, rssSteady: steady };
  },
};

/**
 * The hand-written kafkajs consumer: eachBatch, manual commits once per second.
 * `concurrency` is kafkajs's partitionsConsumedConcurrently (Sluice's KafkaConsumer uses 64).
 */
async function baseline(concurrency: number, fetch: typeof FETCH = FETCH): Promise<Result> {
  const consumer = kafka.consumer({
    groupId: `bench-kafkajs-${crypto.randomUUID().slice(0, 8)}`,
    maxWaitTimeInMs: fetch.maxWaitTimeMs,
    maxBytes: fetch.maxBytes,
    maxBytesPerPartition: fetch.maxBytesPerPartition,
    allowAutoTopicCreation: false,
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let count = 0;
  let bytes = 0;
  const resolved = new Map<number, string>();
  let lastCommit = performance.now();
  const commit = async () => {
    const offsets = [...resolved].map(([partition, offset]) => ({ topic, partition, offset }));
    resolved.clear();
    lastCommit = performance.now();
    if (offsets.length > 0) await consumer.commitOffsets(offsets);
  };
  let done!: () => void;
  const finished = new Promise<void>((r) => done = r);
  let started = 0;
  let ended = 0;
  let cpuStart = 0;
  let cpu = 0;
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: concurrency,
    eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
      const msgs = batch.messages;
      if (count === 0) {
        started = performance.now();
        cpuStart = cpuMicros();
      }
      for (let i = 0; i < msgs.length; i++) bytes += msgs[i].value?.length ?? 0;
      count += msgs.length;
      const last = msgs[msgs.length - 1].offset;
      resolveOffset(last);
      resolved.set(batch.partition, String(Number(last) + 1));
      if (performance.now() - lastCommit >= 1000) await commit();
      await heartbeat();
      if (count >= MESSAGES && ended === 0) {
        ended = performance.now();
        cpu = cpuMicros() - cpuStart;
        done();
      }
    },
  });
  await finished;
  await commit();
  const seconds = (ended - started) / 1000;
  await consumer.disconnect();
  if (bytes !== MESSAGES * BYTES) throw new Error(`baseline read ${bytes} bytes`);
  return {
    name: `kafkajs eachBatch, hand-written (partitionsConsumedConcurrently ${concurrency})${
      fetch === FETCH
        ? ""
        : `, maxBytes ${fetch.maxBytes >> 10} KiB, maxBytesPerPartition ${
          fetch.maxBytesPerPartition >> 10
        } KiB`
    }`,
    seconds,
    messages: count,
    cpuNs: cpu * 1000 / count,
  };
}

/** Sluice: KafkaConsumer → StreamProcessor → RunTask → CommitOffsets, commits once per second. */
async function sluice(
  fetch: Partial<typeof FETCH> = { maxWaitTimeMs: FETCH.maxWaitTimeMs },
  label = "",
): Promise<Result> {
  const { CommitOffsets, CommitPolicy, RunTask, StreamProcessor } = await import("../mod.ts");
  const { KafkaConsumer } = await import("../backends/kafka/mod.ts");
  let count = 0;
  let bytes = 0;
  let started = 0;
  let ended = 0;
  let cpuStart = 0;
  let cpu = 0;
  const processor = new StreamProcessor<KafkaPayload>({
    consumer: new KafkaConsumer({
      brokers: brokers!,
      group: `bench-sluice-${crypto.randomUUID().slice(0, 8)}`,
      ...fetch,
      logLevel: "nothing",
    }),
    topics: [topic],
    commitPolicy: CommitPolicy.ONCE_PER_SECOND,
    handleSignals: false,
    factory: {
      createWithPartitions: (commit) =>
        new RunTask((m: Message<KafkaPayload>) => {
          if (count === 0) {
            started = performance.now();
            cpuStart = cpuMicros();
          }
          bytes += m.payload.value?.length ?? 0;
          if (++count === MESSAGES) {
            ended = performance.now();
            cpu = cpuMicros() - cpuStart;
            processor.signalShutdown();
          }
          return null;
        }, new CommitOffsets(commit)),
    },
  });
  await processor.run(); // returns after the final commit and close
  const seconds = (ended - started) / 1000;
  if (bytes !== MESSAGES * BYTES) throw new Error(`sluice read ${bytes} bytes`);
  return {
    name: `Sluice StreamProcessor (RunTask → CommitOffsets)${label}`,
    seconds,
    messages: count,
    cpuNs: cpu * 1000 / count,
  };
}

/** Sluice on the platformatic backend: the same pipeline as `sluice`, PlatformaticConsumer. */
async function sluicePlatformatic(
  fetch: Partial<typeof FETCH> = { maxWaitTimeMs: FETCH.maxWaitTimeMs },
  label = "",
): Promise<Result> {
  const { CommitOffsets, CommitPolicy, RunTask, StreamProcessor } = await import("../mod.ts");
  const { PlatformaticConsumer } = await import("../backends/platformatic/mod.ts");
  let count = 0;
  let bytes = 0;
  let started = 0;
  let ended = 0;
  let cpuStart = 0;
  let cpu = 0;
  const processor = new StreamProcessor<KafkaPayload>({
    consumer: new PlatformaticConsumer({
      brokers: brokers!,
      group: `bench-plt-${crypto.randomUUID().slice(0, 8)}`,
      ...fetch,
      logLevel: "nothing",
    }),
    topics: [topic],
    commitPolicy: CommitPolicy.ONCE_PER_SECOND,
    handleSignals: false,
    factory: {
      incremental: true,
      createWithPartitions: (commit) =>
        new RunTask((m: Message<KafkaPayload>) => {
          if (count === 0) {
            started = performance.now();
            cpuStart = cpuMicros();
          }
          bytes += m.payload.value?.length ?? 0;
          if (++count === MESSAGES) {
            ended = performance.now();
            cpu = cpuMicros() - cpuStart;
            processor.signalShutdown();
          }
          return null;
        }, new CommitOffsets(commit)),
    },
  });
  await processor.run();
  if (bytes !== MESSAGES * BYTES) throw new Error(`sluice-platformatic read ${bytes} bytes`);
  return {
    name: `Sluice StreamProcessor on PlatformaticConsumer${label}`,
    seconds: (ended - started) / 1000,
    messages: count,
    cpuNs: cpu * 1000 / count,
  };
}

/**
 * Raw @platformatic/kafka: its MessagesStream (mode earliest, no autocommit), reading each
 * value's length and committing the highest offsets once per second.
 */
async function rawPlatformatic(): Promise<Result> {
  const { Consumer } = await import("@platformatic/kafka");
  const consumer = new Consumer({
    clientId: "bench-raw-plt",
    bootstrapBrokers: brokers!.split(","),
    groupId: `bench-rawplt-${crypto.randomUUID().slice(0, 8)}`,
    maxWaitTime: FETCH.maxWaitTimeMs,
    maxBytes: FETCH.maxBytes,
    maxBytesPerPartition: FETCH.maxBytesPerPartition,
  });
  const stream = await consumer.consume({ topics: [topic], mode: "earliest", autocommit: false });
  let count = 0;
  let bytes = 0;
  let started = 0;
  let cpuStart = 0;
  let lastCommit = performance.now();
  const highest = new Map<string, { topic: string; partition: number; offset: bigint }>();
  for await (const m of stream) {
    if (count === 0) {
      started = performance.now();
      cpuStart = cpuMicros();
    }
    bytes += m.value?.length ?? 0;
    highest.set(`${m.partition}`, {
      topic: m.topic,
      partition: m.partition,
      offset: m.offset + 1n,
    });
    if (++count === MESSAGES) break;
    if (performance.now() - lastCommit >= 1000) {
      lastCommit = performance.now();
      await consumer.commit({
        offsets: [...highest.values()].map((o) => ({ ...o, leaderEpoch: -1 })),
      });
    }
  }
  const ended = performance.now();
  const cpu = cpuMicros() - cpuStart;
  await consumer.commit({
    offsets: [...highest.values()].map((o) => ({ ...o, leaderEpoch: -1 })),
  }).catch(() => {});
  await stream.close();
  await consumer.close(true);
  if (bytes !== MESSAGES * BYTES) throw new Error(`raw platformatic read ${bytes} bytes`);
  return {
    name: "raw @platformatic/kafka MessagesStream",
    seconds: (ended - started) / 1000,
    messages: count,
    cpuNs: cpu * 1000 / count,
  };
}

/** The adapter alone: KafkaConsumer.poll() in a loop, no pipeline (shows where the cost is). */
async function pollLoop(): Promise<Result> {
  const { KafkaConsumer } = await import("../backends/kafka/mod.ts");
  const consumer = new KafkaConsumer({
    brokers: brokers!,
    group: `bench-poll-${crypto.randomUUID().slice(0, 8)}`,
    maxWaitTimeMs: FETCH.maxWaitTimeMs,
    logLevel: "nothing",
  });
  consumer.subscribe([topic]);
  let count = 0;
  let bytes = 0;
  let started = 0;
  let cpuStart = 0;
  let lastCommit = performance.now();
  const highest = new Map<Partition, number>();
  while (count < MESSAGES) {
    const batch = await consumer.poll(100);
    if (batch.length > 0 && count === 0) {
      started = performance.now();
      cpuStart = cpuMicros();
    }
    for (let i = 0; i < batch.length; i++) {
      const v = batch[i];
      bytes += v.payload.value?.length ?? 0;
      highest.set(v.partition, v.offset + 1);
    }
    count += batch.length;
    if (performance.now() - lastCommit >= 1000) {
      consumer.stageOffsets(highest);
      await consumer.commitOffsets();
      lastCommit = performance.now();
    }
  }
  const ended = performance.now();
  const cpu = cpuMicros() - cpuStart;
  consumer.stageOffsets(highest);
  await consumer.commitOffsets();
  await consumer.close();
  if (bytes !== MESSAGES * BYTES) throw new Error(`poll loop read ${bytes} bytes`);
  return {
    name: "Sluice KafkaConsumer.poll() loop, no pipeline",
    seconds: (ended - started) / 1000,
    messages: count,
    cpuNs: cpu * 1000 / count,
  };
}

/**
 * Sluice with the memory knobs (bench/README.md, "Kafka memory"): `sluice-young4` caps
 * V8's young generation (`--max-semi-space-size=4`, set on its process by `runChild`);
 * `sluice-lowmem` also fetches 256 KiB per partition and 1 MiB per response.
 */
const LOW_MEMORY_RUNS: Record<string, () => Promise<Result>> = {
  "sluice-young4": () => sluice(undefined, ", --max-semi-space-size=4"),
  "sluice-lowmem": () =>
    sluice(
      { ...FETCH, maxBytes: 1024 * 1024, maxBytesPerPartition: 256 * 1024 },
      ", --max-semi-space-size=4, maxBytes 1 MiB, maxBytesPerPartition 256 KiB",
    ),
};
/** V8 flags of the runs above. */
const LOW_MEMORY_V8 = "--v8-flags=--max-semi-space-size=4";

/** The consumer runs, by `--only` name. */
const RUNS: Record<string, () => Promise<Result>> = {
  kafkajs: () => baseline(64),
  "kafkajs-fixed": async () => {
    // The same hand-written consumer, with the kafkajs fixes Sluice's Kafka backend applies.
    await import("../backends/kafka/kafkajs_patch.ts");
    const r = await baseline(64);
    return { ...r, name: `${r.name} + Sluice's kafkajs fixes` };
  },
  "kafkajs-small": () => baseline(64, SMALL_FETCH),
  kafkajs1: () => baseline(1),
  poll: pollLoop,
  sluice: () => sluice(),
  "sluice-kafkajs-decoder": async () => {
    // Sluice with kafkajs's own Fetch decoder put back (the A/B of _fetch_decoder.ts).
    const { useSluiceFetchDecoder } = await import("../backends/kafka/_fetch_decoder.ts");
    useSluiceFetchDecoder(false);
    const r = await sluice();
    return { ...r, name: `${r.name}, kafkajs's record decoder (before)` };
  },
  "sluice-10m": () => sluice(FETCH, ", maxBytes 10 MiB, maxBytesPerPartition 1 MiB (before)"),
  ...LOW_MEMORY_RUNS,
  "sluice-platformatic": () => sluicePlatformatic(),
  "sluice-platformatic-10m": () =>
    sluicePlatformatic(FETCH, ", maxBytes 10 MiB, maxBytesPerPartition 1 MiB (before)"),
  "raw-platformatic": rawPlatformatic,
};
// `sluice-<M>k-<P>k`: Sluice with maxBytes M KiB and maxBytesPerPartition P KiB (a sweep).
for (const a of Deno.args.filter((a) => a.startsWith("--only=") || a.startsWith("--run="))) {
  for (const name of a.slice(a.indexOf("=") + 1).split(",")) {
    const m = /^sluice-(\d+)k-(\d+)k$/.exec(name);
    if (m === null) continue;
    const [max, part] = [Number(m[1]) * 1024, Number(m[2]) * 1024];
    RUNS[name] = () =>
      sluice(
        { maxWaitTimeMs: FETCH.maxWaitTimeMs, maxBytes: max, maxBytesPerPartition: part },
        `, maxBytes ${m[1]} KiB, maxBytesPerPartition ${m[2]} KiB`,
      );
  }
}

if (RUN !== undefined) {
  // A child: one run, its result as JSON on stdout.
  const run = RUNS[RUN];
  if (run === undefined) throw new Error(`--run=${RUN}: use ${Object.keys(RUNS).join(", ")}`);
  const result = await run();
  console.log(JSON.stringify({ ...result, ...rssSampler.read() }));
  Deno.exit(0);
}

/** Runs one consumer in a fresh Deno process. */
function runChild(name: string): Promise<Result> {
  return runChildJson<Result>(
    new URL(import.meta.url),
    [`--run=${name}`, `--topic=${topic}`, `--messages=${MESSAGES}`, `--bytes=${BYTES}`],
    {
      runtimeArgs: LOW_MEMORY_RUNS[name] !== undefined
        ? [LOW_MEMORY_V8]
        : Deno.args.filter((a) => a.startsWith("--v8-flags=")),
      env: { KAFKA_BROKERS: brokers! },
    },
  );
}

// ---------------------------------------------------------------------------------------
// Python baselines: librdkafka (confluent_kafka) and Python Arroyo, each in its own process
// (bench/kafka_python.py), interleaved with the Deno runs.

/** The Python runs, by `--only` name: their arguments to bench/kafka_python.py. */
const PYTHON_RUNS: Record<string, string[]> = {
  rdkafka: ["--mode", "rdkafka", "--backoff-ms", "10"],
  "rdkafka-1s": ["--mode", "rdkafka"],
  arroyo: ["--mode", "arroyo"],
};
const PYTHON = Deno.env.get("ARROYO_PYTHON") ?? "python3";
/** Python Arroyo polls one message at a time (~0.1 M msg/s): it reads the first N only. */
const ARROYO_MESSAGES = Math.min(MESSAGES, flag("arroyo-messages", 300_000));

/** Runs one Python baseline in a fresh process. */
async function runPython(name: string): Promise<Result> {
  const messages = name === "arroyo" ? ARROYO_MESSAGES : MESSAGES;
  return await runKafkaPython<Result>(PYTHON, [
    ...PYTHON_RUNS[name],
    "--brokers",
    brokers!,
    "--topic",
    topic,
    "--messages",
    String(messages),
    "--bytes",
    String(BYTES),
  ]);
}

await setUp();
const results: Result[] = [];
const byName = new Map<Result, string>();
try {
  const only = Deno.args.find((a) => a.startsWith("--only="))?.slice("--only=".length);
  let wanted = only === undefined
    ? ["kafkajs", "kafkajs-fixed", "poll", "sluice", ...Object.keys(PYTHON_RUNS)]
    : only.split(",");
  for (const w of wanted) {
    if (RUNS[w] === undefined && PYTHON_RUNS[w] === undefined) {
      const names = [...Object.keys(RUNS), ...Object.keys(PYTHON_RUNS)];
      throw new Error(`--only=${only}: use ${names.join(", ")}`);
    }
  }
  if (wanted.some((w) => PYTHON_RUNS[w] !== undefined)) {
    const missing = await pythonMissing(PYTHON);
    if (missing !== null) {
      console.error(
        `skipping the librdkafka and Python Arroyo baselines: ${missing}; ` +
          "set ARROYO_PYTHON to a virtualenv's python with " +
          "`pip install confluent-kafka sentry-arroyo` (see bench/README.md)",
      );
      wanted = wanted.filter((w) => PYTHON_RUNS[w] === undefined);
    }
  }
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? wanted : [...wanted].reverse();
    for (const name of order) {
      const res = PYTHON_RUNS[name] !== undefined ? await runPython(name) : await runChild(name);
      console.error(
        `  round ${r + 1}: ${res.name}: ${(res.messages / res.seconds / 1000).toFixed(0)} k msg/s`,
      );
      results.push(res);
      byName.set(res, name);
    }
  }
} finally {
  await tearDown();
}

const rate = (r: Result) => r.messages / r.seconds;
const names = [...new Set(results.map((r) => r.name))];
const best = names.map((name) =>
  results.filter((r) => r.name === name).reduce((a, b) => (a.seconds <= b.seconds ? a : b))
);
console.log(
  `\nKafka consume, ${MESSAGES.toLocaleString("en")} x ${BYTES} B, ${PARTITIONS} partitions, ` +
    `best and median of ${ROUNDS}, each run in its own process, broker ${brokers}, ` +
    `Deno ${Deno.version.deno}\n`,
);
// Medians: on a shared machine single runs move by ±30%, and the best run flatters.
const median = (name: string) => medianOf(results.filter((r) => r.name === name).map(rate));
const medianCpu = (name: string) =>
  medianOf(results.filter((r) => r.name === name).map((r) => r.cpuNs));
// The references: stock kafkajs (concurrency 64), and the same with Sluice's kafkajs fixes.
const refName = (key: string) => {
  const r = results.find((x) => byName.get(x) === key);
  return r?.name;
};
const stock = refName("kafkajs") ?? refName("kafkajs1");
const fixed = refName("kafkajs-fixed");
const pct = (a: number, b: number | undefined) =>
  b === undefined || !Number.isFinite(b) ? "—" : `${(100 * a / b).toFixed(1)}%`;
console.log(
  "| consumer | seconds (best) | msg/s (best) | msg/s (median) | vs stock kafkajs (medians) | vs kafkajs + fixes (medians) | CPU ns/msg (median) | peak RSS MiB (max) |",
);
console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
for (const r of best) {
  const m = median(r.name);
  console.log(
    `| ${r.name} | ${r.seconds.toFixed(2)} | ${Math.round(rate(r)).toLocaleString("en")} | ${
      Math.round(m).toLocaleString("en")
    } | ${pct(m, stock === undefined ? undefined : median(stock))} | ${
      pct(m, fixed === undefined ? undefined : median(fixed))
    } | ${Math.round(medianCpu(r.name))} | ${
      Math.round(
        Math.max(...results.filter((x) => x.name === r.name).map((x) => x.rssPeak ?? NaN)) /
          2 ** 20,
      )
    } |`,
  );
}
const all = results.map((r) =>
  `${byName.get(r)} ${Math.round(rate(r) / 1000)}k (${Math.round(r.cpuNs)} ns CPU)`
).join(", ");
console.log(`\nall runs (msg/s): ${all}`);

// Against librdkafka: rate and CPU ratios, and memory (a table of its own).
printAgainstLibrdkafka();

/** Each consumer against the librdkafka loop (backoff 10 ms) of this run, with its RSS. */
function printAgainstLibrdkafka(): void {
  const ref = refName("rdkafka");
  const mib = (v: number[]) =>
    v.length === 0
      ? "—"
      : `${(medianOf(v) / 1048576).toFixed(0)} (${(Math.max(...v) / 1048576).toFixed(0)})`;
  console.log(
    `\nAgainst librdkafka (${
      ref === undefined ? "not measured in this run" : "confluent_kafka, fetch.queue.backoff.ms 10"
    }); RSS in MiB, median of runs (highest run in brackets); load average ${
      Deno.loadavg().map((l) => l.toFixed(1)).join(" ")
    }\n`,
  );
  console.log(
    "| consumer | msg/s (median) | vs librdkafka (medians) | CPU ns/msg (median) | CPU vs librdkafka | RSS peak | RSS steady |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|");
  for (const r of best) {
    const runs = results.filter((x) => x.name === r.name);
    const m = median(r.name);
    const cpu = medianCpu(r.name);
    console.log(
      `| ${r.name} | ${Math.round(m).toLocaleString("en")} | ${
        pct(m, ref === undefined ? undefined : median(ref))
      } | ${Math.round(cpu)} | ${pct(cpu, ref === undefined ? undefined : medianCpu(ref))} | ${
        mib(runs.flatMap((x) => x.rssPeak === undefined ? [] : [x.rssPeak]))
      } | ${mib(runs.flatMap((x) => x.rssSteady === undefined ? [] : [x.rssSteady]))} |`,
    );
  }
}
