/**
 * The errors Sluice raises on purpose, all subclasses of {@link SluiceError}: bad
 * configuration, use after close, consumer and producer failures, an impossible state, and
 * `MessageRejected` (a step's "not now"). `InvalidMessage` and `StepError` carry the message
 * that failed, so they live beside `Message` in `types.ts`.
 *
 * @module
 */
/**
 * Base class of every error Sluice raises on purpose.
 *
 * @example Tell Sluice's errors from others
 * ```ts
 * import { RunTask, SluiceError } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * try {
 *   new RunTask((m) => m, { submit() {} } as never, { chunkSize: 0 });
 * } catch (e) {
 *   assertEquals(e instanceof SluiceError, true);
 * }
 * ```
 */
export class SluiceError extends Error {
  /** Creates an error with a message that says what was wrong and what to do. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A configuration value was invalid. The message names the option, the value given and
 * what is accepted.
 *
 * @example Catch a bad option
 * ```ts
 * import { ConfigurationError, RunTask } from "@sluice/sluice";
 * try {
 *   new RunTask((m) => m, { submit() {} } as never, { highWaterMark: -1 });
 * } catch (e) {
 *   console.log(e instanceof ConfigurationError); // true
 * }
 * ```
 */
export class ConfigurationError extends SluiceError {}

/**
 * A topic that does not exist was named.
 *
 * @example Catch a missing topic
 * ```ts
 * import { UnknownTopicError } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 * import { assertThrows } from "@std/assert";
 *
 * const broker = new LocalBroker<string>();
 * assertThrows(() => broker.partitions("missing"), UnknownTopicError);
 * ```
 */
export class UnknownTopicError extends ConfigurationError {}

/**
 * A method was called on a strategy, consumer or producer after it was closed.
 *
 * @example Submit after close
 * ```ts
 * import { BrokerValue, ClosedError, CommitOffsets, Partition } from "@sluice/sluice";
 * import { assertThrows } from "@std/assert";
 *
 * const step = new CommitOffsets(() => {});
 * step.close();
 * const m = new BrokerValue("a", Partition.of("t", 0), 0, 0);
 * assertThrows(() => step.submit(m), ClosedError);
 * ```
 */
export class ClosedError extends SluiceError {}

/**
 * A consumer operation failed (unassigned partition, invalid offset, commit rejected...).
 *
 * @example Seek a partition the consumer was not given
 * ```ts
 * import { ConsumerError, Partition } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 * import { assertThrows } from "@std/assert";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("t", 1);
 * const consumer = broker.getConsumer("g");
 * assertThrows(() => consumer.seek(new Map([[Partition.of("t", 0), 0]])), ConsumerError);
 * ```
 */
export class ConsumerError extends SluiceError {}

/**
 * A producer could not do its work (e.g. no connection to the broker within its timeout).
 *
 * @example Recognise a producer failure
 * ```ts
 * import { ProducerError } from "@sluice/sluice";
 * const e = new ProducerError("could not connect to Kafka at 127.0.0.1:9092");
 * console.log(e instanceof ProducerError, e.name);
 * ```
 */
export class ProducerError extends SluiceError {}

/**
 * The processor reached a state that should not be possible; it stops rather than lose data.
 *
 * @example Report it apart from ordinary failures
 * ```ts
 * import { InvalidStateError } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const failure: unknown = new InvalidStateError("offset went backwards");
 * const kind = failure instanceof InvalidStateError ? "bug: report it" : "retry";
 * assertEquals(kind, "bug: report it");
 * ```
 */
export class InvalidStateError extends SluiceError {}

/**
 * Thrown by `ProcessingStrategy.submit` when the step cannot take the message now. The
 * caller keeps the message and retries after `strategy.ready` resolves. A `RunTask`
 * function may throw it too, to hold a message back until an external condition clears.
 *
 * @example Hold messages back while paused
 * ```ts
 * import { MessageRejected } from "@sluice/sluice";
 * let paused = true;
 * const handle = (n: number) => {
 *   if (paused) throw new MessageRejected();
 *   return n * 2;
 * };
 * ```
 */
export class MessageRejected extends SluiceError {
  /** Creates the rejection signal; the message is optional and only for logs. */
  constructor(message = "message rejected: the step is full, retry after `ready` resolves") {
    super(message);
  }
}

/** Rejections carry no per-instance data, so the hot path can reuse one instance. */
export const MESSAGE_REJECTED: MessageRejected = new MessageRejected();
