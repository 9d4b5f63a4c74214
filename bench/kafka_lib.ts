/**
 * Helpers shared by the Kafka benchmarks (bench/kafka.ts, bench/kafka_backpressure.ts): their
 * `--name=value` options, creating, filling and deleting a topic, the median of their tables,
 * and running the Python baselines (bench/kafka_python.py).
 *
 * @module
 */
import type { Kafka } from "kafkajs";
import { kafkaAvailability } from "../scripts/kafka_env.ts";

/** Creates `topic` with `partitions` partitions and produces `messages` values of `bytes` bytes. */
export async function fillTopic(
  kafka: Kafka,
  topic: string,
  partitions: number,
  messages: number,
  bytes: number,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({
    topics: [{ topic, numPartitions: partitions }],
    waitForLeaders: true,
  });
  await admin.disconnect();
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const value = "x".repeat(bytes);
  const started = performance.now();
  const batch = 5000;
  const inFlight: Promise<unknown>[] = [];
  for (let i = 0; i < messages; i += batch) {
    const n = Math.min(batch, messages - i);
    const msgs = Array.from({ length: n }, (_, j) => ({ value, partition: (i + j) % partitions }));
    inFlight.push(producer.send({ topic, messages: msgs, acks: 1 }));
    if (inFlight.length >= 8) await inFlight.shift();
  }
  await Promise.all(inFlight);
  await producer.disconnect();
  const s = (performance.now() - started) / 1000;
  console.error(
    `produced ${messages} x ${bytes} B to ${topic} (${partitions} partitions) in ${s.toFixed(1)} s`,
  );
}

/** Deletes `topic`, ignoring failures (a benchmark's clean-up). */
export async function deleteTopic(kafka: Kafka, topic: string): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic], timeout: 10_000 }).catch(() => {});
  await admin.disconnect();
}

/** Median of `v` (sorted in place); NaN when empty. */
export function medianOf(v: number[]): number {
  if (v.length === 0) return NaN;
  v.sort((a, b) => a - b);
  return v.length % 2 === 1 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
}

/** The value of `--name=value` among this process's arguments, or undefined. */
export function textFlag(name: string): string | undefined {
  return Deno.args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

/** `--name=N` (underscores allowed: 1_000_000), a positive number (an integer unless `fractional`). */
export function numberFlag(name: string, dflt: number, fractional = false): number {
  const a = textFlag(name);
  if (a === undefined) return dflt;
  const n = Number(a.replaceAll("_", ""));
  if (!(n > 0) || !Number.isFinite(n) || (!fractional && !Number.isInteger(n))) {
    throw new Error(`--${name} must be a positive ${fractional ? "number" : "integer"}`);
  }
  return n;
}

/** Why `python` cannot run the Python baselines, or null when it can. */
export async function pythonMissing(python: string): Promise<string | null> {
  try {
    const out = await new Deno.Command(python, {
      args: ["-c", "import confluent_kafka, arroyo"],
      stdout: "null",
      stderr: "piped",
    }).output();
    if (out.success) return null;
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").pop();
    return `${python} cannot import confluent_kafka and arroyo (${err})`;
  } catch (e) {
    return `${python} not runnable (${(e as Error).message})`;
  }
}

/** Runs bench/kafka_python.py with `args` in a fresh process; the JSON on its last line. */
export async function runKafkaPython<T>(python: string, args: string[]): Promise<T> {
  const script = new URL("./kafka_python.py", import.meta.url).pathname;
  const out = await new Deno.Command(python, {
    args: [script, ...args],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`${script} ${args.join(" ")} failed (exit ${out.code})`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as T;
}

/**
 * The brokers to measure against: `KAFKA_BROKERS` in a `--run` child (its driver sets it),
 * else `KAFKA_BROKERS` or the development broker; exits with a message when there is none.
 */
export async function benchBrokers(child: boolean): Promise<string> {
  const { brokers, reason } = child
    ? { brokers: Deno.env.get("KAFKA_BROKERS") ?? null, reason: "KAFKA_BROKERS not set" }
    : await kafkaAvailability();
  if (brokers === null) {
    console.error(`no Kafka broker: ${reason}`);
    Deno.exit(1);
  }
  return brokers;
}
