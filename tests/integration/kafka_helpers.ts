/**
 * Shared set-up for the Kafka integration tests (not a test file itself): broker
 * discovery and gating, unique topics, bulk producing, reading committed and end offsets.
 */
import { Kafka, logLevel, type Producer } from "kafkajs";
// Test set-up clients get the same kafkajs timer fix as the backend (see kafkajs_patch.ts).
import "../../backends/kafka/kafkajs_patch.ts";
import { kafkaAvailability } from "../../scripts/kafka_env.ts";

export const { brokers: BROKERS, reason: BROKER_REASON } = await kafkaAvailability();

/**
 * Registers a Kafka test. Without a broker: under CI a failing test with the reason (a
 * skipped Kafka suite is a failure there), otherwise an ignored test and a loud warning.
 */
export function kafkaTest(
  name: string,
  fn: (brokers: string) => Promise<void>,
  options: { sanitizeOps?: boolean; sanitizeResources?: boolean } = {},
): void {
  if (BROKERS !== null) {
    Deno.test({ name, fn: () => fn(BROKERS!), ...options });
    return;
  }
  if (Deno.env.get("CI") === "true") {
    Deno.test(name, () => {
      throw new Error(`no Kafka broker under CI: ${BROKER_REASON}`);
    });
    return;
  }
  warnSkipped();
  Deno.test({ name, ignore: true, fn: () => {} });
}

let warned = false;
function warnSkipped(): void {
  if (warned) return;
  warned = true;
  console.warn("KAFKA INTEGRATION TESTS SKIPPED: " + BROKER_REASON);
}

/** A unique name: `prefix-<random>`. */
export function unique(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

/** A kafkajs client for test set-up and checks. */
export function testKafka(brokers: string): Kafka {
  return new Kafka({
    clientId: "sluice-test",
    brokers: brokers.split(","),
    logLevel: logLevel.NOTHING,
    retry: { initialRetryTime: 100, retries: 8 },
  });
}

/**
 * A kafkajs producer for test set-up: idempotent, one request at a time. A request that
 * is retried (the broker is slow under a parallel test run, CI saw 720 extra records in
 * a 20 000-record set-up) must not write its records twice, or every count check is off.
 * Retries are bounded (~40 s at most) so a dead broker fails the test instead of hanging it.
 */
export function testProducer(kafka: Kafka): Producer {
  return kafka.producer({
    allowAutoTopicCreation: false,
    idempotent: true,
    maxInFlightRequests: 1,
    retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 20 },
  });
}

/** Creates `topic` with `partitions` partitions and waits for leaders. */
export async function createTopic(kafka: Kafka, topic: string, partitions: number): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      topics: [{ topic, numPartitions: partitions }],
      waitForLeaders: false,
    });
    // Not kafkajs's waitForLeaders: it does not retry the UNKNOWN_TOPIC_OR_PARTITION a
    // KRaft broker may answer right after the creation (seen under a parallel run).
    await eventually(
      async () => {
        try {
          const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
          return topics[0]?.partitions.length === partitions &&
            topics[0].partitions.every((p) => p.leader >= 0);
        } catch {
          return false;
        }
      },
      `leaders for the partitions of ${topic}`,
      30_000,
      100,
    );
  } finally {
    await admin.disconnect();
  }
}

/** Deletes topics (best effort). */
export async function deleteTopics(kafka: Kafka, topics: string[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await admin.deleteTopics({ topics, timeout: 5000 }).catch(() => {});
  } finally {
    await admin.disconnect();
  }
}

/**
 * Produces `n` messages with values `"<i>"` (keys `k<i>`) spread over all partitions,
 * `batch` per request.
 */
export async function produceNumbers(
  kafka: Kafka,
  topic: string,
  n: number,
  from = 0,
  batch = 1000,
): Promise<void> {
  const producer = testProducer(kafka);
  await producer.connect();
  try {
    for (let i = from; i < from + n; i += batch) {
      const messages = [];
      for (let j = i; j < Math.min(from + n, i + batch); j++) {
        messages.push({ key: `k${j}`, value: String(j) });
      }
      await producer.send({ topic, messages, acks: -1 });
    }
  } finally {
    await producer.disconnect();
  }
}

/** End offsets (next offset to be written) per partition index. */
export async function endOffsets(kafka: Kafka, topic: string): Promise<Map<number, number>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offs = await admin.fetchTopicOffsets(topic);
    return new Map(offs.map((o) => [o.partition, Number(o.high)]));
  } finally {
    await admin.disconnect();
  }
}

/** Committed offsets of `group` per partition index (-1 when none). */
export async function committedOffsets(
  kafka: Kafka,
  group: string,
  topic: string,
): Promise<Map<number, number>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const res = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    return new Map(res[0].partitions.map((p) => [p.partition, Number(p.offset)]));
  } finally {
    await admin.disconnect();
  }
}

/**
 * Awaits `condition()` (sync or async), checking every `everyMs`, failing after `ms`;
 * `detail()` (when given) describes the state in the timeout's message.
 */
export async function eventually(
  condition: () => boolean | Promise<boolean>,
  what: string,
  ms: number,
  everyMs = 50,
  detail?: () => string,
): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await condition())) {
    if (performance.now() > deadline) {
      throw new Error(
        `timed out after ${ms} ms waiting for ${what}${detail ? `; ${detail()}` : ""}`,
      );
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Awaits the committed offsets of `group` reaching `ends` (partition index → end offset). */
export function committedToEnd(
  kafka: Kafka,
  group: string,
  topic: string,
  ends: Map<number, number>,
  ms = 10_000,
  everyMs = 200,
): Promise<void> {
  return eventually(
    async () => {
      const c = await committedOffsets(kafka, group, topic);
      return [...ends].every(([p, end]) => c.get(p) === end);
    },
    "committed offsets equal to the end offsets",
    ms,
    everyMs,
  );
}

/** Process CPU time (user + system) in milliseconds, from /proc/self/stat. */
export function processCpuMs(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After the command name: state is field 3, utime 14, stime 15 (1-based) -> 11, 12 here.
  const ticks = Number(fields[11]) + Number(fields[12]);
  return ticks * 10; // USER_HZ is 100 on Linux
}

/** Test consumer settings: short sessions and fetch waits so rebalances are quick. */
export const FAST = {
  sessionTimeoutMs: 6000,
  heartbeatIntervalMs: 500,
  rebalanceTimeoutMs: 10_000,
  maxWaitTimeMs: 100,
  retry: { initialRetryTimeMs: 100, retries: 10, maxRetryTimeMs: 2000 },
  logLevel: "nothing" as const,
};

/** The development broker's SASL_SSL listener: address and the CA (PEM) to trust. */
export interface SecureBroker {
  brokers: string;
  ca: string;
  /** Read the PEM files next to the CA (`client.pem`, `client-key.pem`, `rogue.pem`...). */
  pem(name: string): Promise<string>;
}

/**
 * The SASL_SSL listener to test against: `KAFKA_SECURE_BROKERS` + `KAFKA_SECURE_CA` (set
 * by `deno task test`), else the one of a broker started by `deno task kafka:up` here.
 */
async function secureAvailability(): Promise<SecureBroker | null> {
  const env = (name: string) => Deno.env.get(name)?.trim() || undefined;
  let brokers = env("KAFKA_SECURE_BROKERS");
  let caPath = env("KAFKA_SECURE_CA");
  if (brokers === undefined) {
    const root = new URL("../../.kafka/", import.meta.url).pathname;
    try {
      const state = JSON.parse(await Deno.readTextFile(`${root}run/broker.json`));
      if (typeof state.securePort === "number" && BROKERS?.endsWith(`:${state.port}`)) {
        brokers = `127.0.0.1:${state.securePort}`;
        caPath = `${root}certs/ca.pem`;
      }
    } catch {
      // No local broker state: no secured listener known.
    }
  }
  if (brokers === undefined || caPath === undefined) return null;
  try {
    const dir = caPath.replace(/[^/]*$/, "");
    return {
      brokers,
      ca: await Deno.readTextFile(caPath),
      pem: (name) => Deno.readTextFile(`${dir}${name}`),
    };
  } catch {
    return null;
  }
}

export const SECURE = await secureAvailability();

/** Registers a test against the SASL_SSL listener; gated like {@link kafkaTest}. */
export function secureTest(
  name: string,
  fn: (secure: SecureBroker) => Promise<void>,
  options: { sanitizeOps?: boolean; sanitizeResources?: boolean } = {},
): void {
  if (SECURE !== null) {
    Deno.test({ name, fn: () => fn(SECURE!), ...options });
    return;
  }
  if (Deno.env.get("CI") === "true") {
    Deno.test(name, () => {
      throw new Error(
        "no SASL_SSL Kafka listener under CI: set KAFKA_SECURE_BROKERS and KAFKA_SECURE_CA " +
          "(deno task test sets them when it starts the broker)",
      );
    });
    return;
  }
  console.warn(`KAFKA SECURITY TEST SKIPPED (no SASL_SSL listener known): ${name}`);
  Deno.test({ name, ignore: true, fn: () => {} });
}
