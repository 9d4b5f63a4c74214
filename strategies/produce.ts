/**
 * `Produce`: sends every payload to a topic through a `Producer` and forwards a message
 * only once its delivery is confirmed.
 *
 * @module
 */
import type { Producer } from "../backends/abstract.ts";
import { Partition, Topic } from "../types.ts";
import { ConfigurationError } from "../errors.ts";
import { requirePositiveInteger } from "../_validate.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import type { StepOptions } from "./stream_step.ts";
import { RunTaskAsync } from "./run_task_async.ts";

/**
 * Options of a {@link Produce}.
 *
 * @example At most 500 deliveries in flight
 * ```ts
 * import { CommitOffsets, Produce, type ProduceOptions } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("out", 1);
 * const options: ProduceOptions = { maxInFlight: 500, name: "to-out" };
 * const step = new Produce(broker.getProducer(), "out", new CommitOffsets(() => {}), options);
 * step.terminate();
 * ```
 */
export interface ProduceOptions extends StepOptions {
  /**
   * Most deliveries sent and not yet handed on (unconfirmed, or confirmed but waiting
   * behind an earlier unconfirmed one). When they are all in use the step stops taking
   * messages from its queue, the queue fills and `submit` rejects.
   * @default 1000
   */
  maxInFlight?: number;
}

/** Default {@link ProduceOptions.maxInFlight}. */
export const DEFAULT_MAX_IN_FLIGHT = 1000;

/**
 * Produces each message's payload to `destination` (a topic, or one partition) and hands
 * the message on to the next step, usually `CommitOffsets`, once the producer confirmed
 * the delivery, **in input order**: the source offset of a message is never committed
 * before its copy (and every copy before it) is safely in the destination topic.
 *
 * - At most `maxInFlight` deliveries are outstanding; then `submit` rejects once the
 *   input queue (`highWaterMark`) is full too.
 * - A delivery failure fails the step: `poll()` throws a `StepError` naming the message,
 *   and nothing after it is handed on (so nothing past it is committed).
 * - A producer that rejects with `MessageRejected` (its local buffer is full) is retried
 *   after a backoff (10 ms doubling up to `maxBackoffMs`), in place.
 * - Filtered messages are not produced; they pass through so their offsets are committed.
 * - `join` waits for outstanding deliveries within its timeout; the message handed on
 *   keeps its payload and its source offsets.
 *
 * @example Forward messages to another topic
 * ```ts
 * import { CommitOffsets, Produce } from "@sluice/sluice";
 * import { LocalBroker } from "@sluice/sluice/local";
 *
 * const broker = new LocalBroker<string>();
 * broker.createTopic("out", 1);
 * const step = new Produce(broker.getProducer(), "out", new CommitOffsets(() => {}), {
 *   maxInFlight: 500,
 * });
 * ```
 */
export class Produce<T> extends RunTaskAsync<T, T> {
  /** Where payloads are sent. */
  readonly destination: Topic | Partition;

  /** Creates the step. */
  constructor(
    producer: Producer<T>,
    destination: Topic | Partition | string,
    next: ProcessingStrategy<T>,
    options: ProduceOptions = {},
  ) {
    if (!producer || typeof producer.produce !== "function") {
      throw new ConfigurationError(
        "Produce needs a Producer (an object with produce(destination, payload)); " +
          "for example broker.getProducer()",
      );
    }
    const dest = typeof destination === "string" ? Topic.of(destination) : destination;
    if (!(dest instanceof Topic) && !(dest instanceof Partition)) {
      throw new ConfigurationError(
        `Produce destination must be a topic name, a Topic or a Partition, got ${
          String(destination)
        }`,
      );
    }
    const maxInFlight = requirePositiveInteger(
      `step "${options.name ?? "produce"}": maxInFlight`,
      options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT,
    );
    super(
      async (m) => {
        await producer.produce(dest, m.payload);
        return m.payload;
      },
      next,
      {
        ...options,
        name: options.name ?? "produce",
        concurrency: maxInFlight,
        maxPending: maxInFlight,
      },
    );
    this.destination = dest;
  }
}
