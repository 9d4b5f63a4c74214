/**
 * Maps `@platformatic/kafka` connection failures to Sluice's typed errors: a SASL failure
 * becomes a {@link KafkaAuthenticationError}, a TLS failure a {@link KafkaTlsError}, as with
 * the kafkajs backend. The library wraps them in its own errors ("Cannot connect to any
 * broker", "joinGroup failed 3 times"), nested under `errors` and `cause`.
 *
 * @module
 */
import {
  isTlsFailure,
  KafkaAuthenticationError,
  kafkaMechanismName,
  KafkaTlsError,
  type ResolvedSasl,
} from "../kafka/security.ts";

/** Every error nested in `e` (itself, its `errors`, its `cause`), depth first. */
function* nested(e: unknown, seen = new Set<unknown>()): Generator<Error & { code?: unknown }> {
  if (!(e instanceof Error) || seen.has(e) || seen.size > 100) return;
  seen.add(e);
  yield e;
  const errors = (e as { errors?: unknown[] }).errors;
  if (Array.isArray(errors)) { for (const x of errors) yield* nested(x, seen); }
  yield* nested((e as { cause?: unknown }).cause, seen);
}

/**
 * @internal The typed error for a connection failure nested in `e` (SASL or TLS), or
 * undefined when `e` is no such failure. No secret is in the message.
 */
export function securityError(
  e: unknown,
  o: { brokers: readonly string[]; sasl: ResolvedSasl | undefined },
): KafkaAuthenticationError | KafkaTlsError | undefined {
  if (e instanceof KafkaAuthenticationError || e instanceof KafkaTlsError) return e;
  const brokers = o.brokers.join(",");
  for (const c of nested(e)) {
    if (c.code === "PLT_KFK_AUTHENTICATION") {
      const mechanism = o.sasl ? kafkaMechanismName(o.sasl.mechanism) : "SASL";
      const who = o.sasl && "username" in o.sasl ? ` as user "${o.sasl.username}"` : "";
      return new KafkaAuthenticationError(
        `SASL ${mechanism} authentication${who} at ${brokers} failed (${
          c.message.replace(/\.$/, "")
        }); check the credentials and that the cluster enables this mechanism for them`,
        mechanism,
        { cause: e },
      );
    }
    if (typeof c.code === "string" && c.code.startsWith("PLT_KFK")) continue;
    if (isTlsFailure(c) && !/before secure TLS/.test(c.message)) {
      return new KafkaTlsError(
        `TLS connection to Kafka at ${brokers} failed: ${c.message}` +
          `${typeof c.code === "string" ? ` (${c.code})` : ""}; the broker's certificate is ` +
          "not trusted: give its CA as ssl: { ca: <PEM text> } (the system's CAs are used " +
          "otherwise), and check that its certificate names the host you connect to " +
          "(ssl.servername)",
        { cause: e },
      );
    }
  }
  return undefined;
}

type PerformWithRetry = (
  operationId: string,
  operation: unknown,
  callback: unknown,
  attempt?: number,
  errors?: unknown[],
  shouldSkipRetry?: (error: unknown) => boolean,
  retryLimit?: number,
) => unknown;

/**
 * @internal Makes `client` (a `@platformatic/kafka` client) give up at once on a SASL or
 * TLS failure: the library would retry it (its network error is retriable, whatever caused
 * it), and its retries nest (a group join retries a coordinator lookup that retries the
 * connection), so a wrong password took about a minute to surface with 10 retries.
 */
export function failFastOnSecurityErrors(
  client: object,
  o: { brokers: readonly string[]; sasl: ResolvedSasl | undefined },
): void {
  let key: symbol | undefined;
  for (
    let p: object | null = client;
    p !== null && key === undefined;
    p = Object.getPrototypeOf(p)
  ) {
    key = Object.getOwnPropertySymbols(p).find((s) =>
      s.description === "plt.kafka.base.performWithRetry"
    );
  }
  if (key === undefined) return; // another library version: it retries as it does
  const target = client as Record<symbol, PerformWithRetry>;
  const original = target[key].bind(client);
  target[key] = (operationId, operation, callback, attempt, errors, shouldSkipRetry, limit) =>
    original(
      operationId,
      operation,
      callback,
      attempt,
      errors,
      (e) => securityError(e, o) !== undefined || shouldSkipRetry?.(e) === true,
      limit,
    );
}
