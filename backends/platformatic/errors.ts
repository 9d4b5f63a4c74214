/**
 * Maps `@platformatic/kafka` connection failures to Sluice's typed errors: a SASL failure
 * becomes a {@link KafkaAuthenticationError}, a TLS failure a {@link KafkaTlsError}, as with
 * the kafkajs backend. The library wraps them in its own errors ("Cannot connect to any
 * broker", "joinGroup failed 3 times"), nested under `errors` and `cause`. Also what the
 * consumer makes of the library's other errors: a rebalance, or a passing failure.
 *
 * @module
 */
import {
  isTlsFailure,
  KafkaAuthenticationError,
  kafkaMechanismName,
  KafkaTlsError,
  type ResolvedSasl,
  saslFailedError,
  untrustedCertificateError,
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

/** `e` and every object nested in it (its `errors`, its `cause`), depth first. */
function flags(e: unknown, seen = new Set<unknown>()): Record<string, unknown>[] {
  if (e === null || typeof e !== "object" || seen.has(e)) return [];
  seen.add(e);
  const out: Record<string, unknown>[] = [e as Record<string, unknown>];
  const errors = (e as { errors?: unknown[] }).errors;
  if (Array.isArray(errors)) { for (const x of errors) out.push(...flags(x, seen)); }
  const cause = (e as { cause?: unknown }).cause;
  if (cause !== undefined) out.push(...flags(cause, seen));
  return out;
}

/** @internal Whether `e` says the group is rebalancing (this member must rejoin). */
export function isRebalanceError(e: unknown): boolean {
  return flags(e).some((x) => x.needsRejoin === true || x.rebalanceInProgress === true);
}

/** @internal Whether `e` says the request may succeed later (a broker away, stale metadata). */
export function isTransient(e: unknown): boolean {
  return flags(e).some((x) => x.canRetry === true || x.hasStaleMetadata === true);
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
      return saslFailedError(mechanism, o.sasl, brokers, c.message.replace(/\.$/, ""), e);
    }
    if (typeof c.code === "string" && c.code.startsWith("PLT_KFK")) continue;
    if (isTlsFailure(c) && !/before secure TLS/.test(c.message)) {
      return untrustedCertificateError(brokers, c, e);
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
