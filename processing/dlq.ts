/**
 * Dead-letter queue: invalid messages are routed aside, to a topic of your choice, without
 * blocking their partition and without ever committing past a message that went nowhere.
 *
 * A step (or your function) raises {@link InvalidMessage}; with a {@link DlqPolicy} on the
 * {@link StreamProcessor} the processor looks up the *raw* message it polled, produces it to
 * the dead-letter topic with headers saying where it came from and why, and lets commits
 * move past it only once the broker confirmed the delivery.
 *
 * @module
 */
import type { Producer } from "../backends/abstract.ts";
import { type BrokerValue, type InvalidMessage, type Partition, Topic } from "../types.ts";
import { ConfigurationError, SluiceError } from "../errors.ts";
import { requireNonNegative, requirePositiveInteger } from "../_validate.ts";

/**
 * Header names written on every dead-lettered message. Values are strings (decimal for
 * numbers; the timestamp is epoch milliseconds).
 *
 * @example Read a header name
 * ```ts
 * import { DLQ_HEADERS } from "@sluice/sluice/dlq";
 * console.log(DLQ_HEADERS.offset); // "sluice-original-offset"
 * ```
 */
export const DLQ_HEADERS: {
  readonly topic: "sluice-original-topic";
  readonly partition: "sluice-original-partition";
  readonly offset: "sluice-original-offset";
  readonly timestamp: "sluice-original-timestamp";
  readonly reason: "sluice-dlq-reason";
  readonly step: "sluice-dlq-step";
} = {
  topic: "sluice-original-topic",
  partition: "sluice-original-partition",
  offset: "sluice-original-offset",
  timestamp: "sluice-original-timestamp",
  reason: "sluice-dlq-reason",
  step: "sluice-dlq-step",
} as const;

/**
 * Longest `reason` header written, in characters (longer reasons are cut with "…").
 *
 * @example Keep your own reasons within the header's bound
 * ```ts
 * import { MAX_REASON_LENGTH } from "@sluice/sluice/dlq";
 * import { assertEquals } from "@std/assert";
 *
 * const reason = "schema mismatch: ".padEnd(5_000, "x");
 * const shown = reason.slice(0, MAX_REASON_LENGTH);
 * assertEquals(shown.length, 1000);
 * ```
 */
export const MAX_REASON_LENGTH = 1000;

/**
 * What the processor knows about a message it dead-letters: the second argument of
 * {@link DlqPolicyOptions.build}.
 *
 * @example Build a dead-letter payload from the info
 * ```ts
 * import type { BrokerValue } from "@sluice/sluice";
 * import { DlqPolicy, type DlqInfo } from "@sluice/sluice/dlq";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const dlq = new LocalBroker<string>();
 * dlq.createTopic("events-dlq", 1);
 * const policy = new DlqPolicy<string, string>({
 *   producer: dlq.getProducer(),
 *   topic: "events-dlq",
 *   build: (raw: BrokerValue<string>, info: DlqInfo) =>
 *     `${info.partition}@${info.offset} (${info.step}: ${info.reason}): ${raw.payload}`,
 * });
 * ```
 */
export interface DlqInfo {
  /** Where the message was read from. */
  readonly partition: Partition;
  /** Its offset there. */
  readonly offset: number;
  /** Its broker timestamp, epoch milliseconds. */
  readonly timestamp: number;
  /** Why it was rejected (`InvalidMessage.reason`). */
  readonly reason: string;
  /** The step that rejected it, or "unknown". */
  readonly step: string;
  /** The standard headers ({@link DLQ_HEADERS}) built from the fields above. */
  readonly headers: Readonly<Record<string, string>>;
}

/**
 * The default dead-letter payload: the raw payload, the standard headers and the original
 * timestamp. Use it when your DLQ producer can carry any value (the in-memory broker); for
 * Kafka pass a `build` function that returns the backend's payload type.
 *
 * @example Read a record from the dead-letter topic
 * ```ts
 * import { DLQ_HEADERS, type DlqRecord } from "@sluice/sluice/dlq";
 * import { assertEquals } from "@std/assert";
 *
 * const describe = (r: DlqRecord<string>) => `${r.headers[DLQ_HEADERS.reason]}: ${r.value}`;
 * const record: DlqRecord<string> = {
 *   value: "{not json",
 *   headers: { [DLQ_HEADERS.reason]: "payload is not JSON" },
 *   timestamp: 0,
 * };
 * assertEquals(describe(record), "payload is not JSON: {not json");
 * ```
 */
export interface DlqRecord<T> {
  /** The original payload, exactly as polled. */
  readonly value: T;
  /** {@link DLQ_HEADERS}. */
  readonly headers: Readonly<Record<string, string>>;
  /** The original broker timestamp, epoch milliseconds. */
  readonly timestamp: number;
}

/**
 * Limits on invalid messages, counted per partition since it was assigned. Going over a
 * limit stops the consumer with {@link DlqLimitExceeded}: a flood of invalid messages is an
 * incident, not something to dead-letter silently. The message that crossed the limit is
 * not dead-lettered and nothing is committed past it.
 *
 * @example Stop after 10 invalid messages in a row or above 5 % of a partition
 * ```ts
 * import { type DlqLimit, DlqPolicy, type DlqRecord } from "@sluice/sluice/dlq";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const dlq = new LocalBroker<DlqRecord<string>>();
 * dlq.createTopic("events-dlq", 1);
 * const limit: DlqLimit = { maxConsecutiveInvalid: 10, maxInvalidRatio: 0.05 };
 * const policy = new DlqPolicy<string>({ producer: dlq.getProducer(), topic: "events-dlq", limit });
 * ```
 */
export interface DlqLimit {
  /**
   * Most invalid messages in a row (consecutive offsets) before the consumer stops.
   * E.g. 10: the 11th invalid message in a row stops it.
   */
  maxConsecutiveInvalid?: number;
  /**
   * Highest fraction (0..1) of invalid messages among the messages of a partition seen
   * since assignment, checked once at least {@link DlqLimit.minMessagesForRatio} were seen.
   */
  maxInvalidRatio?: number;
  /**
   * Messages of a partition to see before `maxInvalidRatio` applies.
   * @default 100
   */
  minMessagesForRatio?: number;
}

/**
 * What happens when the DLQ producer fails to deliver (or the raw message is missing).
 *
 * @example Keep going when the dead-letter topic is unreachable
 * ```ts
 * import { type DlqFailureMode, DlqPolicy, type DlqRecord } from "@sluice/sluice/dlq";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const dlq = new LocalBroker<DlqRecord<string>>();
 * dlq.createTopic("events-dlq", 1);
 * const onDeliveryFailure: DlqFailureMode = "drop-and-count"; // counted in stats.dlqDropped
 * const policy = new DlqPolicy<string>({
 *   producer: dlq.getProducer(),
 *   topic: "events-dlq",
 *   onDeliveryFailure,
 * });
 * ```
 */
export type DlqFailureMode = "stop" | "drop-and-count";

/**
 * Options of a {@link DlqPolicy} with a `build` function turning raw messages into `P`.
 *
 * @example A typical options object, with a payload of your own
 * ```ts
 * import { DlqPolicy, type DlqPolicyOptions } from "@sluice/sluice/dlq";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * type Dead = { value: string; headers: Record<string, string> };
 * const dlq = new LocalBroker<Dead>();
 * dlq.createTopic("events-dlq", 1);
 * const options: DlqPolicyOptions<string, Dead> = {
 *   producer: dlq.getProducer(),
 *   topic: "events-dlq",
 *   build: (raw, info) => ({ value: raw.payload, headers: { ...info.headers } }),
 *   maxInFlight: 100,
 *   deliveryTimeoutMs: 10_000,
 * };
 * const policy = new DlqPolicy(options);
 * ```
 */
export interface DlqPolicyOptions<T, P> {
  /** Producer for the dead-letter topic. The policy does not close it; you do. */
  producer: Producer<P>;
  /** The dead-letter topic. */
  topic: Topic | string;
  /**
   * Builds the payload to produce from the raw message and the dead-letter info (which
   * carries the standard headers). Default: a {@link DlqRecord} (raw payload + headers).
   * May return a promise: it is awaited before the payload is produced.
   */
  build?: (raw: BrokerValue<T>, info: DlqInfo) => P | PromiseLike<P>;
  /** Limits on invalid messages; none by default. */
  limit?: DlqLimit;
  /**
   * Most raw messages kept per partition for a possible dead-lettering. Messages leave the
   * buffer once the pipeline has committed past them; past this bound the oldest is
   * evicted (counted in `stats.dlqBufferEvicted`).
   * @default 10000
   */
  maxBufferedPerPartition?: number;
  /**
   * Most deliveries awaiting confirmation; the processor waits when there are more.
   * @default 1000
   */
  maxInFlight?: number;
  /**
   * A delivery not confirmed within this many milliseconds has failed.
   * @default 30000
   */
  deliveryTimeoutMs?: number;
  /**
   * `"stop"` (default): a failed delivery stops the consumer with {@link DlqDeliveryError}
   * and nothing is committed past the message. `"drop-and-count"`: the message is dropped,
   * counted in `stats.dlqDropped`, and processing goes on.
   * @default "stop"
   */
  onDeliveryFailure?: DlqFailureMode;
}

/**
 * Where and how invalid messages are dead-lettered: pass it as `dlqPolicy` to the
 * {@link StreamProcessor}.
 *
 * @example Dead-letter invalid messages to a topic
 * ```ts
 * import { StreamProcessor } from "@sluice/sluice";
 * import { DlqPolicy, type DlqRecord } from "@sluice/sluice/dlq";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const dlqBroker = new LocalBroker<DlqRecord<string>>();
 * dlqBroker.createTopic("events-dlq", 1);
 * const dlqPolicy = new DlqPolicy<string>({
 *   producer: dlqBroker.getProducer(),
 *   topic: "events-dlq",
 *   limit: { maxConsecutiveInvalid: 10, maxInvalidRatio: 0.05 },
 * });
 * ```
 */
export class DlqPolicy<T, P = DlqRecord<T>> {
  /** The DLQ producer. */
  readonly producer: Producer<P>;
  /** The dead-letter topic. */
  readonly topic: Topic;
  /** Builds the produced payload. */
  readonly build: (raw: BrokerValue<T>, info: DlqInfo) => P | PromiseLike<P>;
  /** The limits (a copy, validated). */
  readonly limit: Readonly<Required<Pick<DlqLimit, "minMessagesForRatio">> & DlqLimit>;
  /** See {@link DlqPolicyOptions.maxBufferedPerPartition}. */
  readonly maxBufferedPerPartition: number;
  /** See {@link DlqPolicyOptions.maxInFlight}. */
  readonly maxInFlight: number;
  /** See {@link DlqPolicyOptions.deliveryTimeoutMs}. */
  readonly deliveryTimeoutMs: number;
  /** See {@link DlqPolicyOptions.onDeliveryFailure}. */
  readonly onDeliveryFailure: DlqFailureMode;

  /** Validates the options; throws {@link ConfigurationError} naming a bad one. */
  constructor(options: DlqPolicyOptions<T, P>) {
    if (!options || typeof options.producer?.produce !== "function") {
      throw new ConfigurationError(
        "DlqPolicy needs { producer, topic }: a Producer for the dead-letter topic",
      );
    }
    if (typeof options.topic !== "string" && !(options.topic instanceof Topic)) {
      throw new ConfigurationError(
        `DlqPolicy topic must be a topic name or Topic, got ${String(options.topic)}`,
      );
    }
    this.producer = options.producer;
    this.topic = typeof options.topic === "string" ? Topic.of(options.topic) : options.topic;
    if (options.build !== undefined && typeof options.build !== "function") {
      throw new ConfigurationError("DlqPolicy build must be a function (raw, info) => payload");
    }
    this.build = options.build ??
      ((raw, info) =>
        ({ value: raw.payload, headers: info.headers, timestamp: raw.timestamp }) as P);
    const limit = options.limit ?? {};
    if (limit.maxConsecutiveInvalid !== undefined) {
      requirePositiveInteger("DlqLimit.maxConsecutiveInvalid", limit.maxConsecutiveInvalid);
    }
    if (
      limit.maxInvalidRatio !== undefined &&
      !(typeof limit.maxInvalidRatio === "number" && limit.maxInvalidRatio >= 0 &&
        limit.maxInvalidRatio <= 1)
    ) {
      throw new ConfigurationError(
        `DlqLimit.maxInvalidRatio must be a number between 0 and 1 (a fraction of messages), ` +
          `got ${String(limit.maxInvalidRatio)}`,
      );
    }
    this.limit = {
      ...limit,
      minMessagesForRatio: requirePositiveInteger(
        "DlqLimit.minMessagesForRatio",
        limit.minMessagesForRatio ?? 100,
      ),
    };
    this.maxBufferedPerPartition = requirePositiveInteger(
      "DlqPolicy.maxBufferedPerPartition",
      options.maxBufferedPerPartition ?? 10_000,
    );
    this.maxInFlight = requirePositiveInteger("DlqPolicy.maxInFlight", options.maxInFlight ?? 1000);
    this.deliveryTimeoutMs = requireNonNegative(
      "DlqPolicy.deliveryTimeoutMs",
      options.deliveryTimeoutMs ?? 30_000,
    );
    if (this.deliveryTimeoutMs === 0) {
      throw new ConfigurationError(
        "DlqPolicy.deliveryTimeoutMs must be > 0 milliseconds (every delivery would time out)",
      );
    }
    const mode = options.onDeliveryFailure ?? "stop";
    if (mode !== "stop" && mode !== "drop-and-count") {
      throw new ConfigurationError(
        `DlqPolicy onDeliveryFailure must be "stop" or "drop-and-count", got ${
          JSON.stringify(mode)
        }`,
      );
    }
    this.onDeliveryFailure = mode;
  }
}

/**
 * A `build` function for payload types that carry their own headers (for example the
 * Kafka backend's `{ key, value, headers, timestamp }`): the raw payload with the
 * standard DLQ headers added to its headers.
 *
 * @example Keep your own headers next to the DLQ headers
 * ```ts
 * import { DlqPolicy, withDlqHeaders } from "@sluice/sluice/dlq";
 * import { LocalBroker } from "@sluice/sluice/local";
 * type Payload = { value: string; headers?: Record<string, string> };
 * const broker = new LocalBroker<Payload>();
 * broker.createTopic("dlq", 1);
 * const policy = new DlqPolicy<Payload, Payload>({
 *   producer: broker.getProducer(),
 *   topic: "dlq",
 *   build: withDlqHeaders,
 * });
 * ```
 */
export function withDlqHeaders<P extends { headers?: unknown }>(
  raw: BrokerValue<P>,
  info: DlqInfo,
): P {
  const own = raw.payload.headers;
  const headers = own && typeof own === "object" ? { ...own, ...info.headers } : {
    ...info.headers,
  };
  return { ...raw.payload, headers };
}

/**
 * The consumer stopped because invalid messages went over a {@link DlqLimit}.
 *
 * @example A run stopped by a flood of invalid messages
 * ```ts
 * import { CommitOffsets, InvalidMessage, RunTask, StreamProcessor } from "@sluice/sluice";
 * import { DlqLimitExceeded, DlqPolicy, type DlqRecord } from "@sluice/sluice/dlq";
 * import { LocalBroker } from "@sluice/sluice/local";
 * import { assertRejects } from "@std/assert";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 1);
 * for (const p of ["bad", "bad", "bad"]) broker.produce("events", p);
 * const dlq = new LocalBroker<DlqRecord<string>>();
 * dlq.createTopic("events-dlq", 1);
 * const processor = new StreamProcessor({
 *   consumer: broker.getConsumer("g"),
 *   topics: ["events"],
 *   factory: {
 *     createWithPartitions: (commit) =>
 *       new RunTask((m) => {
 *         throw new InvalidMessage(m.source.partition!, m.source.offset!, "bad input");
 *       }, new CommitOffsets(commit)),
 *   },
 *   dlqPolicy: new DlqPolicy<string>({
 *     producer: dlq.getProducer(),
 *     topic: "events-dlq",
 *     limit: { maxConsecutiveInvalid: 2 },
 *   }),
 *   handleSignals: false,
 * });
 * await assertRejects(() => processor.run({ untilCaughtUp: true }), DlqLimitExceeded);
 * ```
 */
export class DlqLimitExceeded extends SluiceError {
  /** The limit crossed: "maxConsecutiveInvalid" or "maxInvalidRatio". */
  readonly limit: "maxConsecutiveInvalid" | "maxInvalidRatio";
  /** The partition. */
  readonly partition: Partition;
  /** The invalid message that crossed the limit (not dead-lettered, not committed past). */
  readonly offset: number;

  /** Creates the error. */
  constructor(
    limit: "maxConsecutiveInvalid" | "maxInvalidRatio",
    partition: Partition,
    offset: number,
    detail: string,
    cause: InvalidMessage,
  ) {
    super(
      `dead-letter limit ${limit} exceeded on ${partition} at offset ${offset}: ${detail}. ` +
        `A flood of invalid messages is an incident: the consumer stopped and committed ` +
        `nothing at or past offset ${offset}. Fix the input or raise DlqLimit.${limit}. ` +
        `Last reason: ${cause.reason}`,
      { cause },
    );
    this.limit = limit;
    this.partition = partition;
    this.offset = offset;
  }
}

/**
 * A dead-letter delivery failed (or timed out) and the policy says "stop".
 *
 * @example Tell an unreachable dead-letter topic from other failures
 * ```ts
 * import { Partition, Topic } from "@sluice/sluice";
 * import { DlqDeliveryError } from "@sluice/sluice/dlq";
 * import { assertEquals } from "@std/assert";
 *
 * const whatToDo = (e: unknown) => e instanceof DlqDeliveryError ? "check the DLQ topic" : "rethrow";
 * const p = Partition.of("events", 0);
 * const failure = new DlqDeliveryError(p, 7, Topic.of("events-dlq"), new Error("timeout"));
 * assertEquals(whatToDo(failure), "check the DLQ topic");
 * ```
 */
export class DlqDeliveryError extends SluiceError {
  /** The partition of the message that could not be dead-lettered. */
  readonly partition: Partition;
  /** Its offset; nothing was committed at or past it. */
  readonly offset: number;

  /** Creates the error. */
  constructor(partition: Partition, offset: number, topic: Topic, cause: unknown) {
    super(
      `could not dead-letter ${partition}@${offset} to topic "${topic.name}": ${
        cause instanceof Error ? cause.message : String(cause)
      }. The consumer stopped and committed nothing at or past offset ${offset}; on restart ` +
        `it resumes from there. Fix the DLQ topic/producer, or set ` +
        `onDeliveryFailure: "drop-and-count" to drop such messages (counted in dlqDropped).`,
      { cause },
    );
    this.partition = partition;
    this.offset = offset;
  }
}

/**
 * An invalid message was reported but its raw message was not in the processor's DLQ
 * buffer (evicted because more than `maxBufferedPerPartition` messages of the partition
 * were in flight, or reported twice or for a message this consumer never polled).
 *
 * @example Recognise it after a run
 * ```ts
 * import { InvalidMessage, Partition } from "@sluice/sluice";
 * import { DlqMessageMissing } from "@sluice/sluice/dlq";
 * import { assertEquals } from "@std/assert";
 *
 * const p = Partition.of("events", 0);
 * const failure: unknown = new DlqMessageMissing(p, 3, true, new InvalidMessage(p, 3, "bad"));
 * if (failure instanceof DlqMessageMissing) {
 *   assertEquals(failure.offset, 3); // raise DlqPolicy.maxBufferedPerPartition
 * }
 * ```
 */
export class DlqMessageMissing extends SluiceError {
  /** The partition. */
  readonly partition: Partition;
  /** The offset reported invalid. */
  readonly offset: number;

  /** Creates the error. */
  constructor(partition: Partition, offset: number, evicted: boolean, cause: InvalidMessage) {
    super(
      `cannot dead-letter ${partition}@${offset}: the raw message is not in the DLQ buffer ` +
        (evicted
          ? `(it was evicted: more than maxBufferedPerPartition messages of the partition ` +
            `were in flight; raise DlqPolicy.maxBufferedPerPartition)`
          : `(it was never polled by this consumer, or was reported invalid twice)`) +
        `. The consumer stopped and committed nothing at or past offset ${offset}; set ` +
        `onDeliveryFailure: "drop-and-count" to drop such messages instead (counted).`,
      { cause },
    );
    this.partition = partition;
    this.offset = offset;
  }
}

/**
 * Counters the DLQ keeps in the processor's `stats`.
 *
 * @example Count what was dead-lettered
 * ```ts
 * import { CommitOffsets, InvalidMessage, RunTask, StreamProcessor } from "@sluice/sluice";
 * import { type DlqCounters, DlqPolicy, type DlqRecord } from "@sluice/sluice/dlq";
 * import { LocalBroker } from "@sluice/sluice/local";
 * import { assertEquals } from "@std/assert";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("events", 1);
 * broker.produce("events", "{not json");
 * const dlq = new LocalBroker<DlqRecord<string>>();
 * dlq.createTopic("events-dlq", 1);
 * const processor = new StreamProcessor({
 *   consumer: broker.getConsumer("g"),
 *   topics: ["events"],
 *   factory: {
 *     createWithPartitions: (commit) =>
 *       new RunTask((m) => {
 *         throw new InvalidMessage(m.source.partition!, m.source.offset!, "not JSON");
 *       }, new CommitOffsets(commit)),
 *   },
 *   dlqPolicy: new DlqPolicy<string>({ producer: dlq.getProducer(), topic: "events-dlq" }),
 *   handleSignals: false,
 * });
 * await processor.run({ untilCaughtUp: true });
 * const counters: DlqCounters = processor.stats;
 * assertEquals(counters.deadLettered, 1);
 * ```
 */
export interface DlqCounters {
  /** Messages whose dead-letter delivery was confirmed. */
  deadLettered: number;
  /** Invalid messages dropped (delivery failed or raw message missing, under "drop-and-count"). */
  dlqDropped: number;
  /** Raw messages evicted from the DLQ buffer because it was full. */
  dlqBufferEvicted: number;
}
