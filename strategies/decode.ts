/**
 * `Decode`: turns raw payloads into values with a codec you supply; payloads that fail to
 * decode become `InvalidMessage`s automatically (dead-lettered when the processor has a
 * `dlqPolicy`, otherwise they stop it).
 *
 * @module
 */
import { BrokerValue, InvalidMessage, type Message } from "../types.ts";
import { ConfigurationError, MessageRejected } from "../errors.ts";
import type { ProcessingStrategy } from "./abstract.ts";
import { HOLD, type StepOptions } from "./stream_step.ts";
import { MapStep, type TransformResult } from "./map_step.ts";
import { isThenable } from "./thenable.ts";

/**
 * Decodes raw payloads. `decode` throws (anything) for a payload it cannot decode.
 *
 * @example A CSV codec for a `Decode` step
 * ```ts
 * import { type Codec, Decode, Noop } from "@sluice/sluice";
 * import { assertEquals } from "@std/assert";
 *
 * const csv: Codec<string, string[]> = { decode: (raw) => raw.split(",") };
 * assertEquals(csv.decode("a,b"), ["a", "b"]);
 * new Decode(csv, new Noop()).terminate();
 * ```
 */
export interface Codec<TRaw, T> {
  /** Decodes one payload; throw to reject it as invalid. */
  decode(raw: TRaw): T;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A codec for JSON text, as a string or UTF-8 bytes. Invalid UTF-8 or invalid JSON is
 * rejected.
 *
 * @example Decode JSON text
 * ```ts
 * import { JSON_CODEC } from "@sluice/sluice";
 * console.log(JSON_CODEC.decode('{"a":1}')); // { a: 1 }
 * ```
 */
export const JSON_CODEC: Codec<string | Uint8Array, unknown> = {
  decode(raw: string | Uint8Array): unknown {
    return JSON.parse(typeof raw === "string" ? raw : utf8.decode(raw));
  },
};

/**
 * Decodes every payload with `codec` and forwards the decoded value. A payload whose
 * decoding throws becomes an `InvalidMessage` (reason "decode failed: …", step = this
 * step's name), so it is dead-lettered with its *raw* bytes when the processor has a
 * `dlqPolicy`. Filtered messages pass through. Decoding must happen before any batching:
 * only messages read from the broker can be dead-lettered (a batched value that fails
 * fails the step instead).
 *
 * The codec may also throw `MessageRejected` (hold and retry) or `InvalidMessage` itself.
 * It may be asynchronous (a schema-registry lookup, say): a promise is awaited in input
 * order before the next payload is decoded, and a rejection counts as a throw.
 *
 * @example Decode JSON before processing
 * ```ts
 * import {
 *   CommitOffsets,
 *   Decode,
 *   JSON_CODEC,
 *   type ProcessingStrategyFactory,
 *   RunTask,
 * } from "@sluice/sluice";
 * type Order = { id: string; amount: number };
 * const factory: ProcessingStrategyFactory<string> = {
 *   createWithPartitions: (commit) =>
 *     new Decode(
 *       (raw: string) => JSON_CODEC.decode(raw) as Order,
 *       new RunTask((m) => m.payload.amount, new CommitOffsets(commit)),
 *     ),
 * };
 * ```
 */
export class Decode<TRaw, T> extends MapStep<TRaw, T> {
  readonly #decode: (raw: TRaw) => T | PromiseLike<T>;
  /** Payloads that failed to decode so far. */
  failures = 0;

  /**
   * Creates the step around a codec or a decode function. Either may return a promise
   * (a schema-registry lookup, say): it is awaited in input order before the next payload
   * is decoded, and a rejection is a decode failure like a throw.
   */
  constructor(
    codec: Codec<TRaw, T | PromiseLike<T>> | ((raw: TRaw) => T | PromiseLike<T>),
    next: ProcessingStrategy<T>,
    options?: StepOptions,
  ) {
    super("decode", next, options);
    if (typeof codec === "function") this.#decode = codec;
    else if (codec && typeof codec.decode === "function") {
      this.#decode = (raw) => codec.decode(raw);
    } else {
      throw new ConfigurationError(
        "Decode needs a codec { decode(raw) } or a function (raw) => value",
      );
    }
  }

  /** Decodes one message; a decode failure becomes an `InvalidMessage`. */
  protected transform(m: Message<TRaw>): TransformResult<T> {
    if (m.filtered) return m as unknown as Message<T>;
    let out: T | PromiseLike<T>;
    try {
      out = this.#decode(m.payload);
    } catch (e) {
      return this.#failure(e, m);
    }
    if (isThenable(out)) {
      return this.settle(out, m, (v) => m.replacePayload(v), (e) => this.#failure(e, m));
    }
    return m.replacePayload(out);
  }

  #failure(e: unknown, m: Message<TRaw>): typeof HOLD | InvalidMessage {
    if (e instanceof MessageRejected) return HOLD;
    const v = m.source;
    if (e instanceof InvalidMessage) {
      this.failures++;
      return e;
    }
    if (v instanceof BrokerValue) {
      this.failures++;
      return new InvalidMessage(
        v.partition,
        v.offset,
        `decode failed: ${e instanceof Error ? e.message : String(e)}`,
        this.name,
        { cause: e },
      );
    }
    throw this.wrapError(e, m);
  }
}
