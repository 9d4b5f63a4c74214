/**
 * Options of the `@platformatic/kafka` backend: the kafkajs backend's vocabulary (validated
 * by the same code, with its did-you-mean), plus the group protocol and assignor.
 *
 * @module
 */
import type { ConnectionOptions, SASLOptions } from "@platformatic/kafka";
import { ConfigurationError } from "../../errors.ts";
import {
  type FetchDefaults,
  type KafkaConsumerOptions,
  type KafkaProducerOptions,
  resolveConsumerOptions,
  type ResolvedClientOptions,
  type ResolvedConsumerOptions,
  type ResolvedProducerOptions,
  resolveProducerOptions,
} from "../kafka/config.ts";
import { kafkajsSsl, type ResolvedSasl, type ResolvedTls } from "../kafka/security.ts";

/**
 * Options of a {@link PlatformaticConsumer}: those of the kafkajs backend's
 * `KafkaConsumer` (brokers, group, TLS, SASL, timeouts, fetch sizes; not the `kafkajs`
 * escape hatch, nor `partitionsConsumedConcurrently`), plus how the group rebalances.
 *
 * @example A consumer on KIP-848's consumer protocol
 * ```ts
 * import type { PlatformaticConsumerOptions } from "@sluice/sluice/platformatic";
 * const options: PlatformaticConsumerOptions = {
 *   brokers: "127.0.0.1:9092",
 *   group: "billing",
 *   groupProtocol: "consumer", // KIP-848, Kafka 4.x
 * };
 * ```
 */
export interface PlatformaticConsumerOptions
  extends Omit<KafkaConsumerOptions, "kafkajs" | "partitionsConsumedConcurrently"> {
  /**
   * The group protocol. `"classic"` (every Kafka version) rebalances through JoinGroup and
   * SyncGroup with the client-side `assignor`; `"consumer"` is KIP-848's protocol (Kafka 4.0
   * and later): the broker assigns, and only partitions that move are revoked.
   * @default "classic"
   */
  groupProtocol?: "classic" | "consumer";
  /**
   * Classic protocol only: the client-side assignor. `"cooperative-sticky"` moves only the
   * partitions that must move (incremental rebalancing); `"roundrobin"` is eager: every
   * rebalance revokes every partition of every member, as with kafkajs.
   * @default "cooperative-sticky"
   */
  assignor?: "cooperative-sticky" | "roundrobin";
  /**
   * Consumer protocol only: the broker-side assignor (`"uniform"` or `"range"`); the
   * broker's default when not set.
   * @default undefined
   */
  remoteAssignor?: string;
}

/**
 * Options of a {@link PlatformaticProducer}: those of the kafkajs backend's
 * `KafkaProducer`, without the `kafkajs` escape hatch.
 *
 * @example A producer that waits for every in-sync replica
 * ```ts
 * import type { PlatformaticProducerOptions } from "@sluice/sluice/platformatic";
 * const options: PlatformaticProducerOptions = { brokers: "127.0.0.1:9092", acks: -1 };
 * ```
 */
export type PlatformaticProducerOptions = Omit<KafkaProducerOptions, "kafkajs">;

/** @internal */
export interface ResolvedPlatformaticConsumerOptions extends ResolvedConsumerOptions {
  groupProtocol: "classic" | "consumer";
  assignor: "cooperative-sticky" | "roundrobin";
  remoteAssignor: string | undefined;
}

const OWN_KEYS = ["groupProtocol", "assignor", "remoteAssignor"];

function refuseKafkajs(o: object, what: string): void {
  for (const k of ["kafkajs", "partitionsConsumedConcurrently"]) {
    if (k in o) {
      throw new ConfigurationError(
        `${what} does not take \`${k}\` (it is an option of the kafkajs backend, ` +
          `@sluice/sluice/kafka); remove it`,
      );
    }
  }
}

/**
 * The platformatic backend's default fetch sizes: kafkajs's smaller ones lowered its RSS (342 →
 * 222 MiB) but cost a fifth of its throughput in the issue-20 run (bench/README.md), so it keeps
 * 10 MiB responses and 1 MiB per partition; set `maxBytes` to trade speed for memory.
 */
const PLATFORMATIC_FETCH_DEFAULTS: FetchDefaults = {
  maxBytes: 10 * 1024 * 1024,
  maxBytesPerPartition: 1024 * 1024,
};

/** @internal Validates consumer options; throws {@link ConfigurationError} naming the bad one. */
export function resolvePlatformaticConsumerOptions(
  o: PlatformaticConsumerOptions,
): ResolvedPlatformaticConsumerOptions {
  if (o === null || typeof o !== "object") {
    throw new ConfigurationError(
      'PlatformaticConsumer needs an options object, e.g. { brokers: "127.0.0.1:9092", group: "g" }',
    );
  }
  refuseKafkajs(o, "PlatformaticConsumer");
  const rest: Record<string, unknown> = { ...o };
  for (const k of OWN_KEYS) delete rest[k];
  const base = resolveConsumerOptions(
    rest as unknown as KafkaConsumerOptions,
    PLATFORMATIC_FETCH_DEFAULTS,
  );
  const groupProtocol = o.groupProtocol ?? "classic";
  if (groupProtocol !== "classic" && groupProtocol !== "consumer") {
    throw new ConfigurationError(
      `groupProtocol must be "classic" or "consumer" (KIP-848, Kafka 4.x), got ${
        JSON.stringify(groupProtocol)
      }`,
    );
  }
  const assignor = o.assignor ?? "cooperative-sticky";
  if (assignor !== "cooperative-sticky" && assignor !== "roundrobin") {
    throw new ConfigurationError(
      `assignor must be "cooperative-sticky" or "roundrobin", got ${JSON.stringify(assignor)}`,
    );
  }
  if (o.assignor !== undefined && groupProtocol === "consumer") {
    throw new ConfigurationError(
      'assignor applies to groupProtocol "classic"; with "consumer" the broker assigns ' +
        "(choose its assignor with remoteAssignor)",
    );
  }
  if (o.remoteAssignor !== undefined && groupProtocol !== "consumer") {
    throw new ConfigurationError('remoteAssignor needs groupProtocol: "consumer"');
  }
  return { ...base, groupProtocol, assignor, remoteAssignor: o.remoteAssignor };
}

/** @internal Validates producer options. */
export function resolvePlatformaticProducerOptions(
  o: PlatformaticProducerOptions,
): ResolvedProducerOptions {
  if (o !== null && typeof o === "object") refuseKafkajs(o, "PlatformaticProducer");
  return resolveProducerOptions(o as KafkaProducerOptions);
}

/**
 * @internal What every @platformatic/kafka client (consumer, producer) takes from Sluice's
 * client options: its id, the brokers, the connection (TLS, SASL, timeout) and retries.
 */
export function clientOptions(o: ResolvedClientOptions): ConnectionOptions & {
  clientId: string;
  bootstrapBrokers: string[];
  retries: number;
  retryDelay: number;
} {
  return {
    clientId: o.clientId,
    bootstrapBrokers: o.brokers,
    ...connectionOptions(o),
    retries: o.retry.retries,
    retryDelay: o.retry.initialRetryTime,
  };
}

/** The connection options (TLS, SASL, timeouts) for @platformatic/kafka. */
function connectionOptions(
  o: { ssl: false | true | ResolvedTls; sasl: ResolvedSasl | undefined; connectTimeoutMs: number },
): ConnectionOptions {
  const out: ConnectionOptions = { connectTimeout: o.connectTimeoutMs };
  const tls = kafkajsSsl(o.ssl);
  if (tls !== false) out.tls = tls === true ? {} : tls;
  if (o.sasl !== undefined) out.sasl = platformaticSasl(o.sasl);
  return out;
}

function platformaticSasl(sasl: ResolvedSasl): SASLOptions {
  if (sasl.mechanism === "oauthbearer") {
    const provider = sasl.oauthBearerProvider;
    return { mechanism: "OAUTHBEARER", token: async () => (await provider()).value };
  }
  const mechanism = sasl.mechanism === "plain"
    ? "PLAIN"
    : sasl.mechanism === "scram-sha-256"
    ? "SCRAM-SHA-256"
    : "SCRAM-SHA-512";
  const password = sasl.password;
  return { mechanism, username: sasl.username, password: () => password.reveal() };
}
