/**
 * Core value types of Sluice: topics, partitions, messages, and the two errors that carry a
 * message through a pipeline (`InvalidMessage`, `StepError`). The other errors are in
 * `errors.ts`.
 *
 * @module
 */
import { ConfigurationError, SluiceError } from "./errors.ts";

const topics = new Map<string, Topic>();

/**
 * A topic name, interned: `Topic.of("a") === Topic.of("a")`, so topics are safe `Map` keys.
 *
 * @example Topics are interned
 * ```ts
 * import { Topic } from "@sluice/sluice";
 * const t = Topic.of("events");
 * console.log(t === Topic.of("events")); // true
 * ```
 */
export class Topic {
  /** The topic's name. */
  readonly name: string;
  /** @ignore Partitions of this topic, interned by index. */
  readonly partitions: Partition[] = [];

  private constructor(name: string) {
    this.name = name;
  }

  /** Returns the interned topic for `name`; throws {@link ConfigurationError} on an empty name. */
  static of(name: string): Topic {
    let t = topics.get(name);
    if (t === undefined) {
      if (typeof name !== "string" || name.length === 0) {
        throw new ConfigurationError(
          `topic name must be a non-empty string, got ${JSON.stringify(name)}`,
        );
      }
      t = new Topic(name);
      topics.set(name, t);
    }
    return t;
  }

  /** The topic's name. */
  toString(): string {
    return this.name;
  }

  /** The topic's name, so a message or partition serialises to JSON without a cycle. */
  toJSON(): string {
    return this.name;
  }
}

/**
 * One partition of a topic, interned: `Partition.of(t, 0) === Partition.of(t, 0)`.
 *
 * @example Name a partition
 * ```ts
 * import { Partition, Topic } from "@sluice/sluice";
 * const p = Partition.of(Topic.of("events"), 3);
 * console.log(`${p}`); // "events/3"
 * ```
 */
export class Partition {
  /** The topic this partition belongs to. */
  readonly topic: Topic;
  /** The partition's index within the topic, from 0. */
  readonly index: number;

  private constructor(topic: Topic, index: number) {
    this.topic = topic;
    this.index = index;
  }

  /** Returns the interned partition; `topic` may be a name. */
  static of(topic: Topic | string, index: number): Partition {
    const t = typeof topic === "string" ? Topic.of(topic) : topic;
    const p = t.partitions[index];
    if (p !== undefined) return p;
    if (!Number.isInteger(index) || index < 0) {
      throw new ConfigurationError(
        `partition index must be an integer >= 0, got ${String(index)} for topic "${t.name}"`,
      );
    }
    return (t.partitions[index] = new Partition(t, index));
  }

  /** `topic/index`, as used in logs and error messages. */
  toString(): string {
    return `${this.topic.name}/${this.index}`;
  }

  /** `topic/index`: a `BrokerValue` serialises to JSON as `{ payload, partition, offset }`. */
  toJSON(): string {
    return this.toString();
  }
}

/**
 * The payload of a message that was filtered or consumed by a step: it carries only
 * offsets forward so they can still be committed. User functions never see it.
 *
 * @example Recognise a filtered marker in a custom step
 * ```ts
 * import { FilteredPayload, type Message, Partition, Value } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const isFiltered = (m: Message<unknown>) => m.payload instanceof FilteredPayload;
 * const marker = new Value(FilteredPayload.INSTANCE, new Map([[Partition.of("t", 0), 1]]));
 * assertEquals(isFiltered(marker), true);
 * ```
 */
export class FilteredPayload {
  private constructor() {}
  /** The single instance. */
  static readonly INSTANCE: FilteredPayload = new FilteredPayload();
  /** A short description for logs. */
  toString(): string {
    return "FilteredPayload";
  }
}

/**
 * The sentinel payload of filtered messages.
 *
 * @example Hand on a dropped message's offset as a filtered marker
 * ```ts
 * import { BrokerValue, FILTERED_PAYLOAD, Partition } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const m = new BrokerValue("spam", Partition.of("t", 0), 7, 0);
 * const marker = m.replacePayload(FILTERED_PAYLOAD); // still commits offset 8
 * assertEquals(marker.payload === FILTERED_PAYLOAD, true);
 * assertEquals(marker.committable.get(Partition.of("t", 0)), 8);
 * ```
 */
export const FILTERED_PAYLOAD: FilteredPayload = FilteredPayload.INSTANCE;

/**
 * Offsets to commit: partition → *next* offset to read (last processed + 1).
 *
 * @example Read what a message makes committable
 * ```ts
 * import { BrokerValue, type Committable, Partition } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const p = Partition.of("events", 0);
 * const offsets: Committable = new BrokerValue("a", p, 41, 0).committable;
 * assertEquals(offsets.get(p), 42);
 * ```
 */
export type Committable = ReadonlyMap<Partition, number>;

/** The empty committable, shared. */
export const EMPTY_COMMITTABLE: Committable = new Map();

// Message internals live under module-private symbols rather than `#private` fields: V8
// builds a subclass instance (BrokerValue, Value) whose base class has `#private` fields
// about three times slower, and these are built once per message.
const SOURCE: unique symbol = Symbol("sluice.source");
const VALUE: unique symbol = Symbol("sluice.value");
const TIMESTAMP: unique symbol = Symbol("sluice.timestamp");
const COMMITTABLE: unique symbol = Symbol("sluice.committable");
// Passed by BrokerValue and Value to Message's constructor: "this message is its own source".
const OWN_SOURCE: unique symbol = Symbol("sluice.ownSource");
// Passed by replacePayload to Message's constructor, with the payload and the source as
// the constructor's two undeclared arguments (one allocation, no field written twice, and
// no young object stored into a long-lived one, which would cost a write barrier).
const REPLACING: unique symbol = Symbol("sluice.replacing");

interface MessageInternals {
  payload: unknown;
  [SOURCE]: BrokerValue<unknown> | Value<unknown>;
  [VALUE]: BrokerValue<unknown> | Value<unknown> | undefined;
  [TIMESTAMP]: number | undefined;
  [COMMITTABLE]: Committable | undefined;
}

function internals(m: Message<unknown>): MessageInternals {
  return m as unknown as MessageInternals;
}

/**
 * The unit that flows through a pipeline: a payload plus the offsets it makes committable.
 *
 * A {@link BrokerValue} (a message as read from the broker) and a {@link Value} (a batch, a
 * reduced result, a filtered marker) are messages themselves, so the processor submits
 * what it polled as it is and a step hands a `Value` on without wrapping it.
 * `replacePayload` makes a plain `Message` that points at the broker value or value it
 * came from (its {@link Message.source}).
 *
 * @example Replace a payload, keep the offsets
 * ```ts
 * import { BrokerValue, Partition } from "@sluice/sluice";
 * const m = new BrokerValue("a", Partition.of("events", 0), 0, Date.now());
 * const upper = m.replacePayload(m.payload.toUpperCase());
 * console.log(upper.payload, upper.committable.get(Partition.of("events", 0))); // "A" 1
 * console.log(upper.source === m); // true
 * ```
 */
export class Message<T> {
  /** The payload. */
  declare readonly payload: T;

  /**
   * Creates a message with the payload, offsets and timestamp of a broker value or value.
   * Rarely needed: a `BrokerValue` or a `Value` is a message already.
   */
  constructor(value: BrokerValue<T> | Value<T>);
  // The implementation's two extra arguments are module-private: `replacePayload` passes
  // REPLACING, the payload and the source; BrokerValue and Value pass OWN_SOURCE and the payload.
  constructor(
    value: BrokerValue<T> | Value<T>,
    payload?: T,
    source?: BrokerValue<unknown> | Value<unknown>,
  ) {
    const self = internals(this);
    if ((value as unknown) === REPLACING) {
      // replacePayload: the same three fields in the same order (one hidden class).
      self.payload = payload;
      self[SOURCE] = source!;
      self[VALUE] = undefined;
    } else if ((value as unknown) === OWN_SOURCE) {
      // A BrokerValue or Value being built.
      self.payload = payload;
      self[SOURCE] = this as unknown as BrokerValue<unknown>;
      self[VALUE] = this as unknown as BrokerValue<unknown>;
    } else {
      self.payload = value.payload;
      self[SOURCE] = value;
      self[VALUE] = value;
    }
  }

  /** The broker value or value of this message (with this message's payload). */
  get value(): BrokerValue<T> | Value<T> {
    const self = internals(this);
    return (self[VALUE] ??= self[SOURCE].replace(this.payload)) as BrokerValue<T> | Value<T>;
  }

  /**
   * The broker value or value this message was made from: the same partition, offset,
   * committable and timestamp as {@link value}, but its payload may be an earlier one. Read
   * offsets from here in a step: unlike `value`, it never allocates. For a `BrokerValue` or
   * a `Value` it is the message itself.
   *
   * `m.source.partition` and `m.source.offset` type-check on every message: they are the
   * broker message's for a message read from the broker (or made from one with
   * `replacePayload`), and `undefined` for a `Value` (a batch, a reduced result), whose
   * offsets are in `committable`.
   *
   * @example Find where a message came from
   * ```ts
   * import { BrokerValue, type Message, Partition } from "@sluice/sluice";
   * const where = (m: Message<unknown>): string =>
   *   m.source.offset === undefined ? "a batch" : `${m.source.partition}@${m.source.offset}`;
   * const m = new BrokerValue("x", Partition.of("events", 0), 7, Date.now()).replacePayload(1);
   * console.log(where(m)); // "events/0@7"
   * ```
   */
  get source(): BrokerValue<unknown> | Value<unknown> {
    return internals(this)[SOURCE];
  }

  /** Offsets to commit once this message is processed. */
  get committable(): Committable {
    return internals(this)[SOURCE].committable;
  }

  /** Timestamp in epoch milliseconds, if known. */
  get timestamp(): number | undefined {
    return internals(this)[SOURCE].timestamp;
  }

  /** True when the payload is the {@link FilteredPayload} sentinel. */
  get filtered(): boolean {
    return this.payload === FILTERED_PAYLOAD as unknown;
  }

  /** A message with another payload and the same committable and timestamp. */
  replacePayload<U>(payload: U): Message<U> {
    return new (Message as unknown as new (
      token: typeof REPLACING,
      payload: U,
      source: BrokerValue<unknown> | Value<unknown>,
    ) => Message<U>)(REPLACING, payload, internals(this)[SOURCE]);
  }

  /** Where the message came from, for errors and logs. */
  toString(): string {
    return String(internals(this)[SOURCE]);
  }
}

/**
 * A message as it came from the broker (or from a producer after delivery): payload,
 * partition, offset and timestamp (epoch milliseconds). It is a {@link Message}: the
 * processor submits what the consumer polled without wrapping it.
 *
 * @example A message as read from the broker
 * ```ts
 * import { BrokerValue, Partition } from "@sluice/sluice";
 * const v = new BrokerValue("hello", Partition.of("events", 0), 41, Date.now());
 * console.log(v.nextOffset, v.source === v); // 42 true
 * ```
 */
export class BrokerValue<T> extends Message<T> {
  /** Where it was read from. */
  declare readonly partition: Partition;
  /** Its offset in the partition. */
  declare readonly offset: number;

  /** Creates a broker value. */
  constructor(payload: T, partition: Partition, offset: number, timestamp: number) {
    // @ts-expect-error: the payload is the implementation's module-private second argument
    super(OWN_SOURCE as never, payload);
    const self = internals(this);
    (this as { partition: Partition }).partition = partition;
    (this as { offset: number }).offset = offset;
    self[TIMESTAMP] = timestamp;
    self[COMMITTABLE] = undefined;
  }

  /** Broker timestamp, epoch milliseconds. */
  override get timestamp(): number {
    return internals(this)[TIMESTAMP]!;
  }

  /** The offset to commit once this message is processed: `offset + 1`. */
  get nextOffset(): number {
    return this.offset + 1;
  }

  /** `{ partition → offset + 1 }`. */
  override get committable(): Committable {
    return internals(this)[COMMITTABLE] ??= new Map([[this.partition, this.offset + 1]]);
  }

  /** The same partition, offset and timestamp with another payload. */
  replace<U>(payload: U): BrokerValue<U> {
    return new BrokerValue(payload, this.partition, this.offset, this.timestamp);
  }

  /** `topic/partition@offset`, for logs and errors. */
  override toString(): string {
    return `${this.partition}@${this.offset}`;
  }
}

/**
 * Any value that does not map 1:1 to a broker message: a batch, a reduced result, a
 * filtered sentinel. It carries the offsets it makes committable, and is a
 * {@link Message} a step hands on as it is.
 *
 * @example A batch that commits three offsets
 * ```ts
 * import { Partition, Value } from "@sluice/sluice";
 * const batch = new Value([1, 2, 3], new Map([[Partition.of("events", 0), 3]]));
 * console.log(batch.committable.get(Partition.of("events", 0))); // 3
 * ```
 */
export class Value<T> extends Message<T> {
  /**
   * Always `undefined`: a value maps to no single broker message. Declared so that
   * `message.source.partition` type-checks on any message (`Partition | undefined`).
   */
  declare readonly partition?: undefined;
  /**
   * Always `undefined`: a value maps to no single broker message. Declared so that
   * `message.source.offset` type-checks on any message (`number | undefined`).
   */
  declare readonly offset?: undefined;

  /**
   * Creates a value with the offsets it makes committable once processed and an optional
   * timestamp, epoch milliseconds (for example the newest message folded in).
   */
  constructor(payload: T, committable: Committable, timestamp?: number) {
    // @ts-expect-error: the payload is the implementation's module-private second argument
    super(OWN_SOURCE as never, payload);
    const self = internals(this);
    self[TIMESTAMP] = timestamp;
    self[COMMITTABLE] = committable;
  }

  /** Offsets this value makes committable once processed. */
  override get committable(): Committable {
    return internals(this)[COMMITTABLE]!;
  }

  /** Optional timestamp, epoch milliseconds. */
  override get timestamp(): number | undefined {
    return internals(this)[TIMESTAMP];
  }

  /** The same committable and timestamp with another payload. */
  replace<U>(payload: U): Value<U> {
    return new Value(payload, this.committable, this.timestamp);
  }

  /** A short description for logs. */
  override toString(): string {
    return `Value(${[...this.committable].map(([p, o]) => `${p}@${o - 1}`).join(",")})`;
  }
}

/**
 * Raised by a step (or a user function) for a message that can never be processed. The
 * processor routes it to the dead-letter queue when one is configured; without one it
 * stops with this error rather than commit past the message.
 *
 * @example Reject a payload that is not JSON
 * ```ts
 * import { BrokerValue, InvalidMessage, type Message, Noop, RunTask } from "@sluice/sluice";
 *
 * const parse = new RunTask((m: Message<string>) => {
 *   try {
 *     return JSON.parse(m.payload) as unknown;
 *   } catch (e) {
 *     // A message straight from the broker (before any batching step) knows where it was read.
 *     if (m.source instanceof BrokerValue) {
 *       throw InvalidMessage.fromValue(m.source, `payload is not JSON: ${e}`);
 *     }
 *     throw e;
 *   }
 * }, new Noop());
 * parse.terminate();
 * ```
 */
export class InvalidMessage extends SluiceError {
  /** The partition of the invalid message. */
  readonly partition: Partition;
  /** Its offset. */
  readonly offset: number;
  /** Why it is invalid. */
  readonly reason: string;
  /** The step that rejected it, when known. */
  step?: string;

  /** Creates the error for the message at `partition`/`offset`. */
  constructor(
    partition: Partition,
    offset: number,
    reason = "invalid message",
    step?: string,
    options?: ErrorOptions,
  ) {
    super(
      `invalid message at ${partition}@${offset}: ${reason}` +
        (step ? ` (step "${step}")` : "") +
        "; configure a dlqPolicy to route such messages aside instead of stopping",
      options,
    );
    this.partition = partition;
    this.offset = offset;
    this.reason = reason;
    this.step = step;
  }

  /** Builds the error for a message read from the broker. */
  static fromValue(value: BrokerValue<unknown>, reason?: string, step?: string): InvalidMessage {
    return new InvalidMessage(value.partition, value.offset, reason, step);
  }
}

/**
 * A user function or step failed on a message. The message is identified so the
 * operator can find it; `cause` holds the original error.
 *
 * @example Identify the message a step failed on
 * ```ts
 * import { BrokerValue, Message, Partition, StepError } from "@sluice/sluice";
 * const m = new Message(new BrokerValue("x", Partition.of("events", 2), 17, Date.now()));
 * const e = new StepError("parse", m, new SyntaxError("bad JSON"));
 * console.log(e.partition?.toString(), e.offset); // events/2 17
 * ```
 */
export class StepError extends SluiceError {
  /** The step's name. */
  readonly step: string;
  /** The message being processed, as `topic/partition@offset` or a value description. */
  readonly messageRef: string;
  /** The failed message's partition, when it maps to one broker message. */
  readonly partition?: Partition;
  /** The failed message's offset, when it maps to one broker message. */
  readonly offset?: number;
  /** Offsets the failed message would have made committable, when known. */
  readonly committable?: Committable;

  /** Creates the error for `message` (a message, or a description of what failed). */
  constructor(step: string, message: Message<unknown> | string, cause: unknown) {
    const ref = String(message);
    super(
      `step "${step}" failed on message ${ref}: ${
        cause instanceof Error ? cause.message : String(cause)
      }`,
      { cause },
    );
    this.step = step;
    this.messageRef = ref;
    if (message instanceof Message) {
      const source = message.source;
      this.committable = source.committable;
      if (source instanceof BrokerValue) {
        this.partition = source.partition;
        this.offset = source.offset;
      }
    }
  }
}
