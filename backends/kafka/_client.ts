/**
 * The kafkajs client set-up shared by the consumer, the producer and the admin helper
 * (private to the kafkajs backend): the client factory, connecting with typed errors, and
 * the description of an error in messages.
 *
 * @module
 */
import { Kafka, type KafkaConfig, type logLevel as LogLevelEnum } from "kafkajs";
import { ConsumerError, type SluiceError, UnknownTopicError } from "../../errors.ts";
import { kafkajsLogLevel, type ResolvedClientOptions } from "./config.ts";
import { KafkajsLog } from "./log.ts";
import { decodeIntoRuns } from "./_fetch_decoder.ts";
import {
  chain,
  ConnectionWatch,
  connectSecurityError,
  KafkaAuthenticationError,
  kafkajsSasl,
  kafkajsSsl,
  KafkaTlsError,
  type ResolvedSasl,
  type SocketFactory,
} from "./security.ts";

/** @internal The error class a client fails with when it cannot connect. */
export type ClientErrorClass = new (message: string, options?: ErrorOptions) => SluiceError;

/** @internal What {@link createKafka} wires into the kafkajs client besides the options. */
export interface KafkaClientWiring {
  /** Classifies connection failures (TLS, SASL, plaintext at a TLS listener). */
  watch?: ConnectionWatch;
  /** Where kafkajs's log goes (a new {@link KafkajsLog} when not given). */
  log?: KafkajsLog;
  /** Records every open socket, so a teardown can close what kafkajs left open. */
  sockets?: Set<{ destroy(): void }>;
  /**
   * Fetches decoded into record runs (`_fetch_decoder.ts`): only for the client of a
   * Sluice `KafkaConsumer`, whose hand-off queue reads them.
   */
  recordRuns?: boolean;
}

/**
 * @internal A kafkajs client whose log goes through `wiring.log`: no stacks, transient
 * errors counted and rate-limited as warnings. Its sockets go through the connection watch
 * (typed TLS/SASL failures) and, when `wiring.sockets` is given, are tracked.
 */
export function createKafka(o: ResolvedClientOptions, wiring: KafkaClientWiring = {}): Kafka {
  const level = kafkajsLogLevel(o.logLevel);
  const { socketFactory, ...extra } = o.kafkajs.client;
  const sockets = trackedSockets(
    (wiring.watch ?? new ConnectionWatch(o.ssl !== false)).socketFactory(socketFactory),
    wiring.sockets,
  );
  return new Kafka({
    ...extra,
    ssl: kafkajsSsl(o.ssl),
    sasl: kafkajsSasl(o.sasl) as KafkaConfig["sasl"],
    // A function of this client's own: it marks the client whose fetches come as runs.
    socketFactory: (wiring.recordRuns
      ? decodeIntoRuns<SocketFactory>((args) =>
        sockets(args)
      )
      : sockets) as unknown as KafkaConfig["socketFactory"],
    clientId: o.clientId,
    brokers: o.brokers,
    connectionTimeout: Math.min(o.connectTimeoutMs, 3000),
    retry: { ...o.retry },
    logLevel: level as LogLevelEnum,
    logCreator: (wiring.log ?? new KafkajsLog()).creator,
  });
}

/**
 * `create`, recording each socket it opens in `sockets` until it closes, so that a
 * client's teardown can close what kafkajs left open (after a broker restart a connection
 * survived kafkajs's `disconnect()` and kept the process alive).
 */
function trackedSockets(
  create: SocketFactory,
  sockets: Set<{ destroy(): void }> | undefined,
): SocketFactory {
  if (sockets === undefined) return create;
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

/**
 * @internal Connects kafkajs clients (`connects`), failing with a typed error: a
 * {@link KafkaAuthenticationError}, a {@link KafkaTlsError}, or a `fail` (the client's own
 * error class: `ConsumerError`, `ProducerError`) naming the brokers and the last connection
 * error once `connectTimeoutMs` has passed.
 */
export async function connect(
  connects: Promise<unknown>[],
  watch: ConnectionWatch,
  o: { brokers: string[]; connectTimeoutMs: number; sasl?: ResolvedSasl },
  fail: ClientErrorClass,
): Promise<void> {
  const brokers = o.brokers.join(",");
  try {
    await withTimeout(
      Promise.race([Promise.all(connects), watch.fatal]),
      o.connectTimeoutMs,
      () => {
        const last = watch.last;
        const closedHint = last === undefined ? "" : ` (last connection error: ${last.message})`;
        const tlsHint =
          watch.tlsEnabled && last && /before secure TLS|ECONNRESET/.test(last.message)
            ? "; ssl is set: does this listener use TLS (SSL or SASL_SSL)?"
            : "";
        return new fail(
          `could not connect to Kafka at ${brokers} within ${o.connectTimeoutMs} ms` +
            `${closedHint}${tlsHint}; check that the broker runs and that \`brokers\` ` +
            "(e.g. KAFKA_BROKERS) names it (use 127.0.0.1, not localhost)",
          last ? { cause: last } : undefined,
        );
      },
    );
  } catch (e) {
    throw classifyConnectError(e, brokers, o.sasl, fail);
  }
}

/**
 * @internal Maps a kafkajs connect failure to a typed Sluice error (no secrets in it): a
 * SASL or TLS failure to its own type, anything else to a `fail` naming the brokers.
 */
export function classifyConnectError(
  e: unknown,
  brokers: string,
  sasl: ResolvedSasl | undefined,
  fail: ClientErrorClass = ConsumerError,
): Error {
  if (e instanceof fail || e instanceof KafkaAuthenticationError || e instanceof KafkaTlsError) {
    return e; // already typed (the timeout, or a TLS failure the connection watch saw)
  }
  const security = connectSecurityError(e, brokers, sasl);
  if (security !== undefined) return security;
  const last = [...chain(e)].at(-1);
  return new fail(
    `could not connect to Kafka at ${brokers}: ${e instanceof Error ? e.name : ""}: ${
      last?.message ?? String(e)
    }; check that the broker runs and that \`brokers\` (e.g. KAFKA_BROKERS) names it`,
    { cause: e },
  );
}

/**
 * @internal The error for `topics` missing on the cluster at `brokers`: Sluice never creates
 * topics, so it says how to.
 */
export function unknownTopicError(topics: readonly string[], brokers: string): UnknownTopicError {
  const many = topics.length > 1;
  return new UnknownTopicError(
    `topic${many ? "s" : ""} ${topics.map((t) => `"${t}"`).join(", ")} ` +
      `do${many ? "" : "es"} not exist on ${brokers}; create ${many ? "them" : "it"} ` +
      "first (KafkaAdmin.createTopics, or kafka-topics.sh --create): Sluice never auto-creates " +
      "topics",
  );
}
