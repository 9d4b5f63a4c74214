/**
 * Unknown option keys of the Kafka backend: a {@link ConfigurationError} listing the valid
 * ones, with "did you mean" for kafkajs's (and Kafka's) names of the same thing, and the
 * validation of the `kafkajs` escape hatch.
 *
 * @module
 */
import { ConfigurationError } from "../../errors.ts";

/** The option names of its interface in `config.ts`, checked complete there at compile time. */
export const CLIENT_KEYS = [
  "brokers",
  "clientId",
  "connectTimeoutMs",
  "retry",
  "logLevel",
  "ssl",
  "sasl",
  "kafkajs",
] as const;

/** The option names of its interface in `config.ts`, checked complete there at compile time. */
export const CONSUMER_KEYS = [
  ...CLIENT_KEYS,
  "group",
  "initialOffset",
  "sessionTimeoutMs",
  "heartbeatIntervalMs",
  "rebalanceTimeoutMs",
  "maxWaitTimeMs",
  "minBytes",
  "maxBytes",
  "maxBytesPerPartition",
  "maxPollMessages",
  "partitionsConsumedConcurrently",
] as const;

/** The option names of its interface in `config.ts`, checked complete there at compile time. */
export const PRODUCER_KEYS = [
  ...CLIENT_KEYS,
  "acks",
  "timeoutMs",
  "maxBatchMessages",
  "idempotent",
] as const;

/** kafkajs (and Kafka property) names → what to write in Sluice. */
const CLIENT_HINTS: Record<string, string> = {
  broker: "brokers",
  bootstrapServers: "brokers",
  "bootstrap.servers": "brokers",
  "client.id": "clientId",
  connectionTimeout: "connectTimeoutMs",
  connectTimeout: "connectTimeoutMs",
  requestTimeout: "kafkajs: { client: { requestTimeout } }",
  authenticationTimeout: "kafkajs: { client: { authenticationTimeout } }",
  reauthenticationThreshold: "kafkajs: { client: { reauthenticationThreshold } }",
  enforceRequestTimeout: "kafkajs: { client: { enforceRequestTimeout } }",
  socketFactory: "kafkajs: { client: { socketFactory } }",
  logCreator: "logLevel (kafkajs's logging goes through Sluice)",
  tls: "ssl",
  "security.protocol": "ssl and sasl",
  "sasl.mechanism": "sasl: { mechanism, username, password }",
  "sasl.jaas.config": "sasl: { mechanism, username, password }",
};

const CONSUMER_HINTS: Record<string, string> = {
  ...CLIENT_HINTS,
  groupId: "group",
  "group.id": "group",
  groupID: "group",
  fromBeginning: 'initialOffset: "earliest" (or "latest")',
  "auto.offset.reset": 'initialOffset: "earliest" (or "latest")',
  sessionTimeout: "sessionTimeoutMs",
  "session.timeout.ms": "sessionTimeoutMs",
  heartbeatInterval: "heartbeatIntervalMs",
  "heartbeat.interval.ms": "heartbeatIntervalMs",
  rebalanceTimeout: "rebalanceTimeoutMs",
  maxWaitTimeInMs: "maxWaitTimeMs",
  maxWaitTime: "maxWaitTimeMs",
  "fetch.max.wait.ms": "maxWaitTimeMs",
  "fetch.min.bytes": "minBytes",
  "fetch.max.bytes": "maxBytes",
  "max.partition.fetch.bytes": "maxBytesPerPartition",
  "max.poll.records": "maxPollMessages",
  maxPollRecords: "maxPollMessages",
  partitionsConsumedConcurrently: "partitionsConsumedConcurrently",
  autoCommit: "no auto-commit in Sluice: offsets are committed by CommitOffsets " +
    "(its CommitPolicy sets how often)",
  autoCommitInterval: "CommitOffsets's CommitPolicy (Sluice never auto-commits)",
  autoCommitThreshold: "CommitOffsets's CommitPolicy (Sluice never auto-commits)",
  "enable.auto.commit": "CommitOffsets (Sluice never auto-commits)",
  topic: "StreamProcessor's topics option (not the consumer's)",
  topics: "StreamProcessor's topics option (not the consumer's)",
  allowAutoTopicCreation: "no such option: Sluice never auto-creates topics; create them " +
    "with KafkaAdmin.createTopics",
  partitionAssigners: "kafkajs: { consumer: { partitionAssigners } }",
  metadataMaxAge: "kafkajs: { consumer: { metadataMaxAge } }",
  maxInFlightRequests: "kafkajs: { consumer: { maxInFlightRequests } }",
  readUncommitted: "kafkajs: { consumer: { readUncommitted } }",
  rackId: "kafkajs: { consumer: { rackId } }",
};

const PRODUCER_HINTS: Record<string, string> = {
  ...CLIENT_HINTS,
  timeout: "timeoutMs",
  "request.timeout.ms": "timeoutMs",
  "enable.idempotence": "idempotent",
  transactionalId: "no such option: the Sluice producer does not do transactions",
  createPartitioner: "no such option: Sluice uses kafkajs's default partitioner",
  allowAutoTopicCreation: "no such option: Sluice never auto-creates topics; create them " +
    "with KafkaAdmin.createTopics",
  compression: "no such option: compression is not supported yet",
  metadataMaxAge: "kafkajs: { producer: { metadataMaxAge } }",
  transactionTimeout: "no such option: the Sluice producer does not do transactions",
  maxInFlightRequests: "kafkajs: { producer: { maxInFlightRequests } }",
  group: "no such option on a producer (consumers have groups)",
  groupId: "no such option on a producer (consumers have groups)",
};

/** Levenshtein distance, capped: enough to catch typos such as `sesionTimeoutMs`. */
function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length];
}

function suggestion(
  key: string,
  valid: readonly string[],
  hints: Record<string, string>,
): string | undefined {
  if (Object.hasOwn(hints, key)) return hints[key];
  const lower = key.toLowerCase();
  const sameButCase = valid.find((v) => v.toLowerCase() === lower);
  if (sameButCase) return sameButCase;
  const hintCase = Object.keys(hints).find((h) => h.toLowerCase() === lower);
  if (hintCase) return hints[hintCase];
  let best: string | undefined;
  let bestD = 3;
  for (const v of valid) {
    const d = distance(lower, v.toLowerCase());
    if (d < bestD) [best, bestD] = [v, d];
  }
  return best;
}

/** @internal Throws a {@link ConfigurationError} for unknown keys of a client's options. */
export function checkOptionKeys(
  o: Record<string, unknown>,
  what: "KafkaConsumer" | "KafkaProducer" | "KafkaAdmin",
): void {
  const [valid, hints]: [readonly string[], Record<string, string>] = what === "KafkaConsumer"
    ? [CONSUMER_KEYS, CONSUMER_HINTS]
    : what === "KafkaProducer"
    ? [PRODUCER_KEYS, PRODUCER_HINTS]
    : [CLIENT_KEYS, CLIENT_HINTS];
  const unknown = Object.keys(o).filter((k) => !valid.includes(k));
  if (unknown.length === 0) return;
  const parts = unknown.map((k) => {
    const s = suggestion(k, valid, hints);
    return s ? `"${k}" (did you mean ${s}?)` : `"${k}"`;
  });
  throw new ConfigurationError(
    `${what} got unknown option${unknown.length > 1 ? "s" : ""} ${parts.join(", ")}. ` +
      `Valid options: ${valid.join(", ")}. Other kafkajs options go in kafkajs: ` +
      `{ client${
        what === "KafkaAdmin" ? "" : `, ${what === "KafkaConsumer" ? "consumer" : "producer"}`
      } }.`,
  );
}

/** kafkajs options Sluice sets itself: refused in the escape hatch, with what to use. */
const OWNED: Record<"client" | "consumer" | "producer", Record<string, string>> = {
  client: {
    brokers: "brokers",
    clientId: "clientId",
    ssl: "ssl",
    sasl: "sasl",
    logLevel: "logLevel",
    logCreator: "logLevel",
    retry: "retry",
    connectionTimeout: "connectTimeoutMs",
  },
  consumer: {
    groupId: "group",
    sessionTimeout: "sessionTimeoutMs",
    rebalanceTimeout: "rebalanceTimeoutMs",
    heartbeatInterval: "heartbeatIntervalMs",
    maxBytesPerPartition: "maxBytesPerPartition",
    minBytes: "minBytes",
    maxBytes: "maxBytes",
    maxWaitTimeInMs: "maxWaitTimeMs",
    allowAutoTopicCreation: "nothing: Sluice never auto-creates topics (KafkaAdmin.createTopics)",
    retry: "retry",
  },
  producer: {
    allowAutoTopicCreation: "nothing: Sluice never auto-creates topics (KafkaAdmin.createTopics)",
    createPartitioner: "nothing: Sluice uses kafkajs's default partitioner",
    retry: "retry",
    idempotent: "idempotent",
    transactionalId: "nothing: the Sluice producer does not do transactions",
  },
};

/** @internal Validates the `kafkajs` escape hatch (shallow copies of plain objects). */
export function resolveKafkajs(
  k: unknown,
  what: "KafkaConsumer" | "KafkaProducer" | "KafkaAdmin",
): {
  client: Record<string, unknown>;
  consumer: Record<string, unknown>;
  producer: Record<string, unknown>;
} {
  const out = { client: {}, consumer: {}, producer: {} };
  if (k === undefined) return out;
  const sections = what === "KafkaConsumer"
    ? ["client", "consumer"] as const
    : what === "KafkaProducer"
    ? ["client", "producer"] as const
    : ["client"] as const;
  if (k === null || typeof k !== "object" || Array.isArray(k)) {
    throw new ConfigurationError(
      `kafkajs must be an object { ${sections.join(", ")} } of kafkajs options, got ${typeof k}`,
    );
  }
  for (const section of Object.keys(k)) {
    if (!(sections as readonly string[]).includes(section)) {
      throw new ConfigurationError(
        `unknown kafkajs section "${section}" on ${what}; valid ones: ${sections.join(", ")}`,
      );
    }
  }
  for (const section of sections) {
    const v = (k as Record<string, unknown>)[section];
    if (v === undefined) continue;
    if (v === null || typeof v !== "object" || Array.isArray(v)) {
      throw new ConfigurationError(`kafkajs.${section} must be an object, got ${typeof v}`);
    }
    const owned = Object.keys(v).filter((key) => Object.hasOwn(OWNED[section], key));
    if (owned.length > 0) {
      throw new ConfigurationError(
        `kafkajs.${section} may not set ${owned.join(", ")}: Sluice sets ${
          owned.length > 1 ? "them" : "it"
        }; use ${owned.map((key) => OWNED[section][key]).join(", ")} instead`,
      );
    }
    out[section] = { ...v };
  }
  return out;
}
