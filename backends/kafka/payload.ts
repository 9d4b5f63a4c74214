/**
 * The payload of a Kafka message, and the kafkajs client factory shared by the consumer
 * and the producer.
 *
 * @module
 */
import {
  type ISocketFactory,
  Kafka,
  type KafkaConfig,
  type logLevel as LogLevelEnum,
} from "kafkajs";
// @ts-ignore: internal kafkajs module without type declarations
// deno-lint-ignore no-import-prefix
import defaultSocketFactory from "npm:kafkajs@2.2.4/src/network/socketFactory.js";
import { kafkajsLogLevel, type ResolvedClientOptions } from "./config.ts";
import { ConnectionWatch, kafkajsSasl, kafkajsSsl } from "./security.ts";
import { KafkajsLog } from "./log.ts";

/** Header values as Kafka carries them (bytes; strings are accepted when producing). */
export type KafkaHeaders = Record<
  string,
  Uint8Array | string | (Uint8Array | string)[] | undefined
>;

/**
 * A Kafka record: key, value, headers and timestamp (epoch milliseconds).
 *
 * Consumed records carry bytes (`Uint8Array`, in fact Node `Buffer`s); when producing,
 * strings are accepted too and `timestamp` may be left out (the broker's clock is used).
 *
 * @example
 * ```ts
 * import type { KafkaPayload } from "@sluice/sluice/kafka";
 * const record: KafkaPayload = {
 *   key: "user-1",
 *   value: JSON.stringify({ clicks: 3 }),
 *   headers: { source: "web" },
 * };
 * const text = (p: KafkaPayload) =>
 *   typeof p.value === "string" ? p.value : new TextDecoder().decode(p.value ?? new Uint8Array());
 * console.log(text(record));
 * ```
 */
export interface KafkaPayload {
  /** The record key (null when absent). */
  readonly key: Uint8Array | string | null;
  /** The record value (null for a tombstone). */
  readonly value: Uint8Array | string | null;
  /** Record headers. */
  readonly headers?: KafkaHeaders;
  /** Record timestamp, epoch milliseconds. Always set on consumed records. */
  readonly timestamp?: number;
}

/**
 * @internal A kafkajs client whose log goes through `log` (a new {@link KafkajsLog} when
 * not given): no stacks, transient errors counted and rate-limited as warnings.
 */
export function createKafka(
  o: ResolvedClientOptions,
  log = new KafkajsLog(),
  watch?: ConnectionWatch,
  sockets?: Set<{ destroy(): void }>,
): Kafka {
  const level = kafkajsLogLevel(o.logLevel);
  const { socketFactory, ...extra } = o.kafkajs.client;
  return new Kafka({
    ...extra,
    ssl: kafkajsSsl(o.ssl),
    sasl: kafkajsSasl(o.sasl) as KafkaConfig["sasl"],
    socketFactory: (watch ?? new ConnectionWatch(o.ssl !== false)).socketFactory(
      sockets === undefined
        ? socketFactory
        : trackedSockets(sockets, socketFactory as ISocketFactory | undefined),
    ) as unknown as KafkaConfig["socketFactory"],
    clientId: o.clientId,
    brokers: o.brokers,
    connectionTimeout: Math.min(o.connectTimeoutMs, 3000),
    retry: { ...o.retry },
    logLevel: level as LogLevelEnum,
    logCreator: log.creator,
  });
}

/**
 * kafkajs's own socket factory, recording each socket in `sockets` until it closes, so
 * that a client's teardown can close what kafkajs left open (after a broker restart a
 * connection survived kafkajs's `disconnect()` and kept the process alive).
 */
function trackedSockets(
  sockets: Set<{ destroy(): void }>,
  inner?: ISocketFactory,
): ISocketFactory {
  const create = typeof inner === "function"
    ? inner
    : (defaultSocketFactory as () => ISocketFactory)();
  return (args) => {
    const socket = create(args);
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    return socket;
  };
}

/** @internal Races `p` against a timer; the timer is always cleared. */
export async function withTimeout<T>(
  p: Promise<T>,
  ms: number,
  onTimeout: () => Error,
): Promise<T> {
  let id: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    id = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(id);
  }
}

/** @internal A message of an error, with its kafkajs cause when there is one. */
export function describeError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = (e as { cause?: unknown }).cause;
  const inner = cause instanceof Error && cause.message !== e.message ? ` (${cause.message})` : "";
  return `${e.name}: ${e.message}${inner}`;
}
