/**
 * kafkajs errors (private to the kafkajs backend): what a kafkajs error means for the
 * consumer (a rebalance, a lost membership, a passing failure worth retrying) and the
 * errors the consumer throws back into kafkajs to steer its rejoin. Rust Arroyo keeps
 * the same in `backends/kafka/errors.rs`.
 *
 * @module
 */
import kafkajs from "kafkajs";

/** Error types a heartbeat or commit gets when the group is rebalancing: rejoin. */
const REBALANCE_TYPES = new Set([
  "REBALANCE_IN_PROGRESS",
  "ILLEGAL_GENERATION",
  "NOT_COORDINATOR_FOR_GROUP",
]);
/** The rebalance types, and UNKNOWN_MEMBER_ID: this member is no longer in the group. */
export const MEMBERSHIP_TYPES = new Set([...REBALANCE_TYPES, "UNKNOWN_MEMBER_ID"]);

/** `e`, then the error it wraps (`cause`), and so on: at most 10, stopping at a loop. */
function* causeChain(e: unknown): Generator<unknown> {
  let cur = e;
  for (let i = 0; i < 10; i++) {
    yield cur;
    const c = (cur as { cause?: unknown } | null)?.cause;
    if (c === undefined || c === null || c === cur) return;
    cur = c;
  }
}

/** The innermost error `e` wraps (`e` itself when it wraps none). */
function originalCause(e: unknown): unknown {
  let last: unknown;
  for (const c of causeChain(e)) last = c;
  return last;
}

/** The Kafka error type (`REBALANCE_IN_PROGRESS`, …) of `e`, or of the error it wraps. */
export function errorType(e: unknown): string | undefined {
  return (e as { type?: string } | null)?.type ??
    (originalCause(e) as { type?: string } | null)?.type;
}

/**
 * kafkajs errors after which the same request may succeed: the broker or coordinator was
 * unreachable, slow or moving.
 */
const TRANSIENT_NAMES = new Set([
  "KafkaJSConnectionError",
  "KafkaJSConnectionClosedError",
  "KafkaJSRequestTimeoutError",
  "KafkaJSGroupCoordinatorNotFound",
  "KafkaJSBrokerNotFound",
  "KafkaJSLockTimeout",
  "KafkaJSTimeout",
  "KafkaJSMetadataNotLoaded",
  "KafkaJSNoBrokerAvailableError",
]);

/**
 * Whether `e`, or an error it wraps, says a kafkajs request may succeed later: a
 * connection or timeout error, or a protocol error Kafka marks retriable (e.g.
 * COORDINATOR_LOAD_IN_PROGRESS after a broker restart), however kafkajs wrapped it (its
 * retries running out, or its retrier giving up on a connection error). A commit
 * that fails this way is kept for the next commit instead of stopping the processor.
 *
 * @example A refused connection is worth retrying
 * ```ts ignore
 * import kafkajs from "kafkajs";
 * isTransientKafkaError(new kafkajs.KafkaJSConnectionError("connect ECONNREFUSED")); // true
 * ```
 */
export function isTransientKafkaError(e: unknown): boolean {
  for (const c of causeChain(e)) {
    const err = c as { name?: unknown; retriable?: boolean } | null | undefined;
    if (typeof err?.name !== "string") continue;
    if (TRANSIENT_NAMES.has(err.name)) return true;
    if (err.name === "KafkaJSProtocolError" && err.retriable === true) return true;
  }
  return false;
}

/** Whether `e` itself is a kafkajs error telling of a rebalance (`REBALANCE_TYPES`). */
export function isRebalanceError(e: unknown): boolean {
  const t = (e as { type?: string } | null)?.type;
  return t !== undefined && REBALANCE_TYPES.has(t);
}

/** Thrown from our REBALANCING listener to make kafkajs retry (and so wait) before rejoining. */
export class RevokeInProgress extends Error {
  constructor() {
    super("sluice: onRevoke has not finished; rejoin held back until its commit is done");
    this.name = "SluiceRevokeInProgress";
  }
}

/** An error kafkajs's runner treats as "rebalancing": it rejoins the group at once. */
export function rebalanceSignal(): Error {
  const e = new kafkajs.KafkaJSError("sluice: partitions revoked, rejoining the group", {
    retriable: true,
  });
  (e as unknown as { type: string }).type = "REBALANCE_IN_PROGRESS";
  return e;
}
