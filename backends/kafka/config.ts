/**
 * Typed, validated configuration of the Kafka backend.
 *
 * @module
 */
import { logLevel as KafkajsLevel } from "kafkajs";
import { ConfigurationError } from "../../errors.ts";
import { requirePositiveInteger } from "../../_validate.ts";
import {
  type KafkaSaslOptions,
  type KafkaTlsOptions,
  type ResolvedSasl,
  type ResolvedTls,
  resolveSasl,
  resolveTls,
} from "./security.ts";
import {
  checkOptionKeys,
  type CLIENT_KEYS,
  type CONSUMER_KEYS,
  type PRODUCER_KEYS,
  resolveKafkajs,
} from "./option_keys.ts";

/**
 * How much kafkajs logs (to stderr). Default `"error"`.
 *
 * @example More logging while debugging a connection
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import type { KafkaConsumerOptions, KafkaLogLevel } from "@sluice/sluice/kafka";
 *
 * const logLevel: KafkaLogLevel = Deno.env.get("KAFKA_DEBUG") ? "debug" : "warn";
 * const options: KafkaConsumerOptions = { brokers: "127.0.0.1:9092", group: "g", logLevel };
 * assertEquals(options.logLevel === "debug" || options.logLevel === "warn", true);
 * ```
 */
export type KafkaLogLevel = "nothing" | "error" | "warn" | "info" | "debug";

/**
 * Options shared by {@link KafkaConsumerOptions} and {@link KafkaProducerOptions}.
 *
 * @example One connection setup for a consumer and a producer (nothing connects yet)
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { type KafkaClientOptions, KafkaConsumer, KafkaProducer } from "@sluice/sluice/kafka";
 *
 * const client: KafkaClientOptions = {
 *   brokers: ["10.0.0.1:9093", "10.0.0.2:9093"],
 *   clientId: "orders-service",
 *   connectTimeoutMs: 5_000,
 *   ssl: true,
 *   sasl: { mechanism: "SCRAM-SHA-512", username: "svc", password: "secret" },
 * };
 * const consumer = new KafkaConsumer({ ...client, group: "orders" });
 * const producer = new KafkaProducer(client);
 * assertEquals([consumer.closed, consumer.clientId], [false, "orders-service"]);
 * ```
 */
export interface KafkaClientOptions {
  /**
   * Bootstrap brokers: `"host:port"`, a comma-separated list, or an array. Prefer
   * `127.0.0.1` over `localhost` (which may resolve to IPv6 first).
   */
  brokers: string | readonly string[];
  /**
   * Client id sent to the broker.
   * @default "sluice"
   */
  clientId?: string;
  /**
   * Longest wait for the first connection to the brokers. After it, `poll()` / `produce()`
   * fail with a {@link ConsumerError} (consumer) or a {@link ProducerError} (producer) naming
   * the brokers. In milliseconds.
   * @default 10000
   */
  connectTimeoutMs?: number;
  /**
   * kafkajs's retry policy for requests (reconnects after a broker restart included).
   * @default { initialRetryTimeMs: 300, retries: 10, maxRetryTimeMs: 10000 }
   */
  retry?: { initialRetryTimeMs?: number; retries?: number; maxRetryTimeMs?: number };
  /**
   * How much kafkajs logs.
   * @default "error"
   */
  logLevel?: KafkaLogLevel;
  /**
   * TLS: `true` (trust the system's CAs) or {@link KafkaTlsOptions} (CA, client
   * certificate and key, server name, `rejectUnauthorized`).
   * @default false
   */
  ssl?: boolean | KafkaTlsOptions;
  /** SASL: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER. Left out: no SASL. */
  sasl?: KafkaSaslOptions;
  /**
   * Escape hatch: kafkajs options Sluice does not model, passed to kafkajs as they are
   * (`client` to `new Kafka()`, `consumer` to `kafka.consumer()`, `producer` to
   * `kafka.producer()`), e.g. `{ client: { requestTimeout: 60_000 }, consumer: {
   * rackId: "eu-1a" } }`. Options Sluice models or must own (`groupId`, `ssl`, `retry`,
   * `allowAutoTopicCreation`...) are refused with the Sluice option to use instead. Not
   * covered by Sluice's guarantees: you are talking to kafkajs directly.
   */
  kafkajs?: KafkajsOptions;
}

/**
 * kafkajs options passed through as they are; see {@link KafkaClientOptions.kafkajs}.
 *
 * @example A longer request timeout and a rack id, straight to kafkajs
 * ```ts
 * import type { KafkajsOptions } from "@sluice/sluice/kafka";
 * const kafkajs: KafkajsOptions = {
 *   client: { requestTimeout: 60_000 },
 *   consumer: { rackId: "eu-west-1a" },
 * };
 * ```
 */
export interface KafkajsOptions {
  /**
   * Extra options of `new Kafka(...)` (kafkajs's `KafkaConfig`, e.g. `requestTimeout`,
   * `authenticationTimeout`). Passed through as given: kafkajs checks them, Sluice does not.
   */
  client?: Readonly<Record<string, unknown>> & {
    /** kafkajs's `socketFactory`: opens the socket for one broker connection. */
    socketFactory?: (args: {
      host: string;
      port: number;
      ssl: unknown;
      onConnect: () => void;
    }) => unknown;
  };
  /**
   * Extra options of `kafka.consumer(...)` (kafkajs's `ConsumerConfig`, e.g. `rackId`,
   * `partitionAssigners`); consumer only.
   */
  consumer?: Readonly<Record<string, unknown>>;
  /**
   * Extra options of `kafka.producer(...)` (kafkajs's `ProducerConfig`, e.g.
   * `metadataMaxAge`); producer only.
   */
  producer?: Readonly<Record<string, unknown>>;
}

/**
 * Options of a {@link KafkaConsumer}.
 *
 * @example A typical consumer (constructing it does not connect: the first `poll()` does)
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { KafkaConsumer, type KafkaConsumerOptions } from "@sluice/sluice/kafka";
 *
 * const options: KafkaConsumerOptions = {
 *   brokers: Deno.env.get("KAFKA_BROKERS") ?? "127.0.0.1:9092",
 *   group: "billing",
 *   initialOffset: "latest",
 *   sessionTimeoutMs: 45_000,
 *   maxPollMessages: 1000,
 * };
 * const consumer = new KafkaConsumer(options);
 * assertEquals(consumer.group, "billing");
 * ```
 */
export interface KafkaConsumerOptions extends KafkaClientOptions {
  /** Consumer group id. Required. */
  group: string;
  /**
   * Where a partition with no committed offset starts.
   * @default "earliest"
   */
  initialOffset?: "earliest" | "latest";
  /**
   * The broker removes this member when it has not heartbeated for this long. Sluice
   * heartbeats while the pipeline is backpressured, so this does not bound processing
   * time. In milliseconds; the broker's `group.min/max.session.timeout.ms` apply.
   * @default 30000
   */
  sessionTimeoutMs?: number;
  /**
   * Heartbeat period in milliseconds; must be below `sessionTimeoutMs` (a third is usual).
   * Left out: 3000, or a third of a `sessionTimeoutMs` below 9000.
   * @default 3000
   */
  heartbeatIntervalMs?: number;
  /**
   * Longest time the group waits for members to rejoin during a rebalance, which bounds
   * how long `onRevoke` (close, join, commit) may take. In milliseconds.
   * @default 60000
   */
  rebalanceTimeoutMs?: number;
  /**
   * Longest time a fetch waits on the broker for `minBytes`, in milliseconds.
   * @default 500
   */
  maxWaitTimeMs?: number;
  /**
   * Minimum bytes a fetch waits for.
   * @default 1
   */
  minBytes?: number;
  /**
   * Maximum bytes of one fetch response (all partitions). The consumer holds at most two
   * responses per broker (one being handed out, the next one fetched meanwhile), as bytes:
   * records are decoded only when `poll()` takes them. The default, 2 MiB (or
   * `maxBytesPerPartition` when that is larger), measured fastest while keeping RSS under
   * 150 MiB (bench/README.md, issue 20). Raise it for a broker far away, where one fetch
   * round trip takes longer than handing out a response.
   * @default 2097152
   */
  maxBytes?: number;
  /**
   * Maximum bytes per partition in one fetch: 512 KiB, or `maxBytes` when that is smaller.
   * @default 524288
   */
  maxBytesPerPartition?: number;
  /**
   * Most messages one `poll()` returns.
   * @default 5000
   */
  maxPollMessages?: number;
  /**
   * Partition batches kafkajs hands over at once (per fetch).
   * @default 64
   */
  partitionsConsumedConcurrently?: number;
}

/**
 * Options of a {@link KafkaProducer}.
 *
 * @example A producer that waits for every in-sync replica (constructing it does not connect)
 * ```ts
 * import { assertEquals } from "@std/assert";
 * import { KafkaProducer, type KafkaProducerOptions } from "@sluice/sluice/kafka";
 *
 * const options: KafkaProducerOptions = {
 *   brokers: "127.0.0.1:9092",
 *   acks: -1,
 *   idempotent: true,
 *   maxBatchMessages: 2_000,
 * };
 * const producer = new KafkaProducer(options);
 * assertEquals(producer instanceof KafkaProducer, true);
 * ```
 */
export interface KafkaProducerOptions extends KafkaClientOptions {
  /**
   * Acknowledgements: -1 (all in-sync replicas), 0 or 1.
   * @default -1
   */
  acks?: -1 | 0 | 1;
  /**
   * Broker-side request timeout, in milliseconds.
   * @default 30000
   */
  timeoutMs?: number;
  /**
   * Most messages sent in one request (messages produced in the same turn are batched).
   * @default 10000
   */
  maxBatchMessages?: number;
  /**
   * Idempotent delivery: the broker drops a record it already wrote when a request is
   * retried (a lost response, a reconnect), so retries never duplicate records in the
   * topic. Needs `acks: -1`. Requests go one at a time (kafkajs numbers records per
   * partition only when a request succeeds), so records produced meanwhile wait and go in
   * the next request. Off by default, as in kafkajs, where it is marked experimental.
   * @default false
   */
  idempotent?: boolean;
}

/** @internal The validated common options. */
export interface ResolvedClientOptions {
  brokers: string[];
  clientId: string;
  connectTimeoutMs: number;
  retry: { initialRetryTime: number; retries: number; maxRetryTime: number };
  logLevel: KafkaLogLevel;
  ssl: false | true | ResolvedTls;
  sasl: ResolvedSasl | undefined;
  kafkajs: {
    client: Record<string, unknown>;
    consumer: Record<string, unknown>;
    producer: Record<string, unknown>;
  };
}

/** @internal The validated consumer options. */
export interface ResolvedConsumerOptions extends ResolvedClientOptions {
  group: string;
  initialOffset: "earliest" | "latest";
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  rebalanceTimeoutMs: number;
  maxWaitTimeMs: number;
  minBytes: number;
  maxBytes: number;
  maxBytesPerPartition: number;
  maxPollMessages: number;
  partitionsConsumedConcurrently: number;
}

/** @internal The validated producer options. */
export interface ResolvedProducerOptions extends ResolvedClientOptions {
  acks: -1 | 0 | 1;
  timeoutMs: number;
  maxBatchMessages: number;
  idempotent: boolean;
}

const LOG_LEVELS: Record<KafkaLogLevel, KafkaLogLevel> = {
  nothing: "nothing",
  error: "error",
  warn: "warn",
  info: "info",
  debug: "debug",
};

/** @internal Maps our level names to kafkajs's enum. */
export function kafkajsLogLevel(level: KafkaLogLevel): number {
  switch (level) {
    case "nothing":
      return KafkajsLevel.NOTHING;
    case "error":
      return KafkajsLevel.ERROR;
    case "warn":
      return KafkajsLevel.WARN;
    case "info":
      return KafkajsLevel.INFO;
    case "debug":
      return KafkajsLevel.DEBUG;
  }
}

/** A backend's default fetch sizes, used where the options leave them out. */
export interface FetchDefaults {
  /** Default `maxBytes`: one fetch response. */
  maxBytes: number;
  /** Default `maxBytesPerPartition`. */
  maxBytesPerPartition: number;
}

/**
 * The kafkajs backend's fetch sizes (see the note in {@link resolveConsumerOptions}).
 */
export const KAFKAJS_FETCH_DEFAULTS: FetchDefaults = {
  maxBytes: 2 * 1024 * 1024,
  maxBytesPerPartition: 512 * 1024,
};

function optionalPositive(name: string, value: number | undefined, dflt: number): number {
  return value === undefined ? dflt : requirePositiveInteger(name, value);
}

function optionalNonNegativeInteger(name: string, value: number | undefined, dflt: number): number {
  if (value === undefined) return dflt;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new ConfigurationError(
      `${name} must be an integer >= 0, got ${String(value)}; pass a whole number`,
    );
  }
  return value;
}

/** @internal Parses `brokers` into a non-empty list of `host:port`. */
export function parseBrokers(brokers: unknown): string[] {
  let list: unknown[];
  if (typeof brokers === "string") list = brokers.split(",");
  else if (Array.isArray(brokers)) list = brokers;
  else {
    throw new ConfigurationError(
      `brokers must be "host:port", a comma-separated list or an array of them, got ${
        JSON.stringify(brokers)
      }; e.g. brokers: "127.0.0.1:9092"`,
    );
  }
  const out: string[] = [];
  for (const b of list) {
    const s = typeof b === "string" ? b.trim() : "";
    const m = /^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$/.exec(s);
    if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) {
      throw new ConfigurationError(
        `invalid broker address ${JSON.stringify(b)}: expected "host:port" with a port in ` +
          `1..65535, e.g. "127.0.0.1:9092"`,
      );
    }
    out.push(s);
  }
  if (out.length === 0) {
    throw new ConfigurationError(`brokers is empty; give at least one "host:port"`);
  }
  return out;
}

/** @internal Validates the options every Kafka client takes (`what` names the class). */
export function resolveClient(
  o: KafkaClientOptions,
  what: "KafkaConsumer" | "KafkaProducer" | "KafkaAdmin",
): ResolvedClientOptions {
  if (o === null || typeof o !== "object") {
    throw new ConfigurationError(
      `${what} needs an options object, e.g. { brokers: "127.0.0.1:9092" }`,
    );
  }
  checkOptionKeys(o as unknown as Record<string, unknown>, what);
  if (o.brokers === undefined) {
    throw new ConfigurationError(
      `${what} needs brokers, e.g. { brokers: "127.0.0.1:9092" } (or Deno.env.get("KAFKA_BROKERS"))`,
    );
  }
  const brokers = parseBrokers(o.brokers);
  const clientId = o.clientId ?? "sluice";
  if (typeof clientId !== "string" || clientId.length === 0) {
    throw new ConfigurationError(
      `clientId must be a non-empty string, got ${JSON.stringify(clientId)}`,
    );
  }
  const logLevel = o.logLevel ?? "error";
  if (!(logLevel in LOG_LEVELS)) {
    throw new ConfigurationError(
      `logLevel must be one of ${Object.keys(LOG_LEVELS).join(", ")}, got ${
        JSON.stringify(logLevel)
      }`,
    );
  }
  const r = o.retry ?? {};
  return {
    brokers,
    clientId,
    connectTimeoutMs: optionalPositive("connectTimeoutMs", o.connectTimeoutMs, 10_000),
    retry: {
      initialRetryTime: optionalPositive("retry.initialRetryTimeMs", r.initialRetryTimeMs, 300),
      retries: optionalNonNegativeInteger("retry.retries", r.retries, 10),
      maxRetryTime: optionalPositive("retry.maxRetryTimeMs", r.maxRetryTimeMs, 10_000),
    },
    logLevel,
    ssl: resolveTls(o.ssl),
    sasl: resolveSasl(o.sasl),
    kafkajs: resolveKafkajs(o.kafkajs, what),
  };
}

/** @internal Validates consumer options; throws {@link ConfigurationError} naming the bad one. */
export function resolveConsumerOptions(
  o: KafkaConsumerOptions,
  fetchDefaults: FetchDefaults = KAFKAJS_FETCH_DEFAULTS,
): ResolvedConsumerOptions {
  const base = resolveClient(o, "KafkaConsumer");
  if (typeof o.group !== "string" || o.group.length === 0) {
    throw new ConfigurationError(
      `group must be a non-empty string (the consumer group id), got ${JSON.stringify(o.group)}`,
    );
  }
  const initialOffset = o.initialOffset ?? "earliest";
  if (initialOffset !== "earliest" && initialOffset !== "latest") {
    throw new ConfigurationError(
      `initialOffset must be "earliest" or "latest", got ${JSON.stringify(initialOffset)}`,
    );
  }
  const sessionTimeoutMs = optionalPositive("sessionTimeoutMs", o.sessionTimeoutMs, 30_000);
  const heartbeatIntervalMs = optionalPositive(
    "heartbeatIntervalMs",
    o.heartbeatIntervalMs,
    Math.min(3000, Math.floor(sessionTimeoutMs / 3)) || 1,
  );
  if (heartbeatIntervalMs >= sessionTimeoutMs) {
    throw new ConfigurationError(
      `heartbeatIntervalMs (${heartbeatIntervalMs}) must be lower than sessionTimeoutMs ` +
        `(${sessionTimeoutMs}); about a third of it is usual`,
    );
  }
  // Fetch sizes (bench/README.md, issue 20): the kafkajs backend decodes records only when
  // poll() takes them (_fetch_decoder.ts), so a queued response costs its bytes, not objects;
  // 2 MiB / 512 KiB measured fastest with RSS under 150 MiB at full speed (10 MiB / 1 MiB:
  // ~205 MiB). Whichever of the two is given raises the other's default so that they stay
  // consistent.
  const maxBytes = optionalPositive(
    "maxBytes",
    o.maxBytes,
    Math.max(fetchDefaults.maxBytes, o.maxBytesPerPartition ?? 0),
  );
  const maxBytesPerPartition = optionalPositive(
    "maxBytesPerPartition",
    o.maxBytesPerPartition,
    Math.min(fetchDefaults.maxBytesPerPartition, maxBytes),
  );
  if (maxBytesPerPartition > maxBytes) {
    throw new ConfigurationError(
      `maxBytesPerPartition (${maxBytesPerPartition}) must not exceed maxBytes (${maxBytes})`,
    );
  }
  return {
    ...base,
    group: o.group,
    initialOffset,
    sessionTimeoutMs,
    heartbeatIntervalMs,
    rebalanceTimeoutMs: optionalPositive("rebalanceTimeoutMs", o.rebalanceTimeoutMs, 60_000),
    maxWaitTimeMs: optionalNonNegativeInteger("maxWaitTimeMs", o.maxWaitTimeMs, 500),
    minBytes: optionalPositive("minBytes", o.minBytes, 1),
    maxBytes,
    maxBytesPerPartition,
    maxPollMessages: optionalPositive("maxPollMessages", o.maxPollMessages, 5000),
    partitionsConsumedConcurrently: optionalPositive(
      "partitionsConsumedConcurrently",
      o.partitionsConsumedConcurrently,
      64,
    ),
  };
}

/** @internal Validates producer options; throws {@link ConfigurationError} naming the bad one. */
export function resolveProducerOptions(o: KafkaProducerOptions): ResolvedProducerOptions {
  const base = resolveClient(o, "KafkaProducer");
  const acks = o.acks ?? -1;
  if (acks !== -1 && acks !== 0 && acks !== 1) {
    throw new ConfigurationError(`acks must be -1 (all), 0 or 1, got ${JSON.stringify(acks)}`);
  }
  const idempotent = o.idempotent ?? false;
  if (typeof idempotent !== "boolean") {
    throw new ConfigurationError(
      `idempotent must be true or false, got ${JSON.stringify(idempotent)}`,
    );
  }
  if (idempotent && acks !== -1) {
    throw new ConfigurationError(
      `idempotent needs acks: -1 (all in-sync replicas), got acks: ${acks}; ` +
        "drop acks or set it to -1",
    );
  }
  return {
    ...base,
    acks,
    timeoutMs: optionalPositive("timeoutMs", o.timeoutMs, 30_000),
    maxBatchMessages: optionalPositive("maxBatchMessages", o.maxBatchMessages, 10_000),
    idempotent,
  };
}

// Compile-time guard: an option added to an interface but not to its list above fails
// `deno check` here (the list is what unknown keys are checked against).
type Missing<T, L extends readonly string[]> = Exclude<keyof T, L[number]>;
const _consumerKeysComplete: [Missing<KafkaConsumerOptions, typeof CONSUMER_KEYS>] extends [never]
  ? true
  : Missing<KafkaConsumerOptions, typeof CONSUMER_KEYS> = true;
const _producerKeysComplete: [Missing<KafkaProducerOptions, typeof PRODUCER_KEYS>] extends [never]
  ? true
  : Missing<KafkaProducerOptions, typeof PRODUCER_KEYS> = true;
const _clientKeysComplete: [Missing<KafkaClientOptions, typeof CLIENT_KEYS>] extends [never] ? true
  : Missing<KafkaClientOptions, typeof CLIENT_KEYS> = true;
void _consumerKeysComplete, _producerKeysComplete, _clientKeysComplete;
