/**
 * Promise detection for user callbacks: Sluice never hands on, commits past or drops a
 * promise a user function returned. A step either awaits it or, where awaiting makes no
 * sense (a size, a key, a notification), fails with a typed error at the first one.
 *
 * @module
 */
import { ConfigurationError } from "../errors.ts";

/**
 * True when `value` is a promise or another thenable.
 *
 * @example Tell a promise from a value
 * ```ts
 * import { isThenable } from "./thenable.ts";
 * console.log(isThenable(Promise.resolve(1)), isThenable(1)); // true false
 * ```
 */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function";
}

/**
 * Returns `value`, or throws a {@link ConfigurationError} when it is a promise: `callback`
 * of step `step` must return `expected` synchronously, and `instead` says what to do.
 * A rejection of the promise is handled (it is reported by this error, never unhandled).
 *
 * @example Insist on a synchronous result
 * ```ts
 * import { requireSync } from "./thenable.ts";
 * const key = requireSync("orders", "key", "a string or number", "read the key from the payload", "a1");
 * ```
 */
export function requireSync<T>(
  step: string,
  callback: string,
  expected: string,
  instead: string,
  value: T,
): T {
  if (!isThenable(value)) return value;
  value.then(undefined, () => {});
  throw new ConfigurationError(
    `step "${step}": ${callback} returned a promise; it must return ${expected} ` +
      `synchronously (Sluice does not await it). ${instead}`,
  );
}
